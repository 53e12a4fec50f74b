"""A mixture of releases (`data=mix`): each source read by its own reader from a folder under data.root.

    data.reader.sources:
      vqa_rad: {root: vqa_rad, reader: {_target_: medvqa.data.formats.vqa_rad.read, _partial_: true}}
      slake:   {root: Slake1.0, reader: {_target_: medvqa.data.formats.slake.read, _partial_: true}}

Every sample keeps its source's name in `source` (filters, per-source splits and `data.sampling_weights`
use it) and its id is prefixed `name/`. A source set to null is left out. Source folders must lie inside
data.root: image paths are checked against it like any other reader's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples, DataError, resolve_inside
from medvqa.data.formats.common import existing_root
from medvqa.data.sample import VQASample


def read(
    root: str | Path, bad: BadSamples | None = None, sources: Mapping[str, Any] | None = None
) -> list[VQASample]:
    root, bad = (
        existing_root(Path(root), "set data.root to the folder holding the sources' folders"),
        bad or BadSamples(),
    )
    active = {name: spec for name, spec in (sources or {}).items() if spec is not None}
    if not active:
        raise DataError("data.reader.sources is empty; name at least one {name: {root, reader}} to mix")
    samples = []
    for name, spec in active.items():
        reader: Callable[..., list[VQASample]] | None = spec.get("reader")
        if not callable(reader):
            raise DataError(f"data.reader.sources.{name}.reader: give a reader, e.g. "
                            "{_target_: medvqa.data.formats.slake.read, _partial_: true}")  # fmt: skip
        folder = resolve_inside(root, str(spec.get("root", name)))
        if not folder.is_dir():
            raise DataError(
                f"data.reader.sources.{name}.root: {folder} is not a folder under data.root={root}"
            )
        prefix = folder.relative_to(os.path.abspath(root)).as_posix()
        for s in reader(folder, bad):
            s.image = f"{prefix}/{s.image}" if prefix != "." else s.image
            s.id, s.source = f"{name}/{s.id}", name
            samples.append(s)
    return samples
