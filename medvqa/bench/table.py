"""`python -m medvqa.bench.table RESULT.json [...]`: one README-ready markdown table of `train_step` results.

One row per measured run (stage x checkpointing) of each JSON file `python -m medvqa.bench train_step
bench.out=...` wrote, headed by the date and GPU the figures came from; runs that failed (out of memory)
are listed with their error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

GB = 1024**3
HEADER = ("| stage | precision | peft | checkpointing | batch | s/step | samples/s | text tok/s | image tok/s "
          "| TFLOP/s | MFU | peak GB | estimate GB | estimate error | generation share |")  # fmt: skip


def _peft(overrides: list[str]) -> str:
    found = [o.split("=", 1)[1] for o in overrides if re.match(r"^peft=", o)]
    return found[-1] if found else "default"


def rows(result: dict[str, Any]) -> list[str]:
    """The table rows of one train_step result."""
    out = []
    peft = _peft(result.get("overrides", []))
    for r in result["runs"]:
        if "error" in r:
            out.append(f"| {r['stage']} | {result['precision']} | {peft} | {r['gradient_checkpointing']} | | "
                       f"{r['error'][:60]} |" + " |" * 9)  # fmt: skip
            continue
        memory = r["memory"]
        estimate = memory["estimate_bytes"].get("total")
        error = memory.get("estimate_error")
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        share = r.get("time_share", {}).get("generation")
        cells = [r["stage"], r["precision"], peft, str(r["gradient_checkpointing"]).lower(), r["batch_size"],
                 f"{r['step_seconds']:.3f}", f"{r['samples_per_s']:.2f}", f"{r['tokens_per_s']['text']:.0f}",
                 f"{r['tokens_per_s']['image']:.0f}", f"{r['achieved_tflops']:.1f}", mfu,
                 f"{memory['peak_bytes'] / GB:.1f}", f"{estimate / GB:.1f}" if estimate else "",
                 f"{error:+.0%}" if error is not None else "", f"{share:.0%}" if share is not None else ""]  # fmt: skip
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: a heading line per (date, device, model) and the rows of every result under one header."""
    heads = sorted({f"{r['date']}, {r['device']}, {r['model']}" for r in results})
    lines = [f"Measured {'; '.join(heads)} (torch {results[0]['torch']}):", "", HEADER,
             "|" + "---|" * HEADER.count(" | ") + "---|"]  # fmt: skip
    for result in results:
        lines += rows(result)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m medvqa.bench.table RESULT.json [...]", file=sys.stderr)
        return 2
    print(table([json.loads(Path(p).read_text()) for p in argv]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
