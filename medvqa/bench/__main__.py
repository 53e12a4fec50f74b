"""`python -m medvqa.bench <name> [key=value ...]`: run one benchmark and print its JSON result."""

from __future__ import annotations

import importlib
import json
import sys

from medvqa.bench import BENCHES


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m medvqa.bench {{{'|'.join(BENCHES)}}} [key=value ...]", file=sys.stderr)
        return 2
    options = dict(a.split("=", 1) for a in argv[1:])
    result = importlib.import_module(BENCHES[argv[0]]).run(**options)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
