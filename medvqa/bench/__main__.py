"""`python -m medvqa.bench <name> [key=value ...]`: run one benchmark and print its JSON result."""

from __future__ import annotations

import importlib
import inspect
import json
import sys

from medvqa.bench import BENCHES
from medvqa.cli import user_errors


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m medvqa.bench {{{'|'.join(BENCHES)}}} [key=value ...]", file=sys.stderr)
        return 2
    options = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    bench = importlib.import_module(BENCHES[argv[0]]).run
    wrong = option_errors(bench, options) + [f"{a!r} is not key=value" for a in argv[1:] if "=" not in a]
    if wrong:
        print(f"Error: python -m medvqa.bench {argv[0]}: {'; '.join(wrong)}", file=sys.stderr)
        return 2
    with user_errors():  # a wrong run= or data path: its one line and exit 1, as every command
        result = bench(**options)
    print(json.dumps(result, indent=2))
    return 0


def option_errors(bench, options: dict[str, str]) -> list[str]:
    """What is wrong with `options` for the bench function `bench`: required keys missing, unknown keys
    (unless it takes **overrides)."""
    params = inspect.signature(bench).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [f"{p.name}= is required" for p in params if p.name in named and p.default is p.empty
               and p.name not in options]  # fmt: skip
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return missing
    return missing + [
        f"unknown option {k}= (known: {', '.join(sorted(named))})" for k in options if k not in named
    ]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
