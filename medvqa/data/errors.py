"""Bad input: a clear error naming the file and row, or (data.on_bad_sample=skip) skipped and counted."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

OnBad = Literal["error", "skip"]
log = logging.getLogger(__name__)


class DataError(ValueError):
    """A dataset file or row that cannot be used; the message names the file, row and the fix."""


class BadSamples:
    """Applies `data.on_bad_sample`: raise at the first bad row, or skip it and count why."""

    def __init__(self, mode: OnBad = "error"):
        if mode not in ("error", "skip"):
            raise ValueError(f"data.on_bad_sample={mode!r}; use 'error' or 'skip'")
        self.mode = mode
        self.skipped: Counter[str] = Counter()

    def known(self, where: str, reason: str, release: str) -> None:
        """A row `release` is known to ship broken: skipped and counted in either mode (the user cannot fix
        it), under the key 'known release quirk: <reason>', and named in one log line."""
        log.warning("%s: %s, a known quirk of %s: skipped and counted", where, reason, release)
        self.skipped[f"known release quirk: {reason}"] += 1

    def report(self, where: str, reason: str, fix: str = "") -> None:
        """Raise (mode=error) or count (mode=skip). `reason` is short and stable: it is the count's key."""
        if self.mode == "error":
            hint = f" {fix}" if fix else ""
            raise DataError(
                f"{where}: {reason}.{hint} (Or set data.on_bad_sample=skip to skip and count such rows.)"
            )
        self.skipped[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def resolve_inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing any path that escapes `root` (e.g. '../../etc/passwd' or an absolute path).

    The check is on the path as written: a symlink the user placed under data.root (a dataset folder
    linked in from another disk) is followed, a '..' or absolute path in an annotation file is not."""
    root = Path(os.path.abspath(root))
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(root):
        raise DataError(f"image path {relative!r} escapes data.root={root}; image paths must stay inside it")
    return path
