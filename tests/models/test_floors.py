"""models/ is the floor below the stages: it builds and loads models and imports nothing from the floors
above it (stages/, inference/), so merge / export / model card live in inference/ (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "medvqa" / "models"
ABOVE = ("medvqa.stages", "medvqa.inference", "medvqa.guard", "medvqa.app", "medvqa.export")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_models_import_nothing_from_the_floors_above():
    upward = {f"{p.name}: {name}" for p in MODELS.glob("*.py") for name in imported(p)
              if name.startswith(ABOVE)}  # fmt: skip
    assert upward == set()


def test_merge_export_and_model_card_live_above_the_stages():
    assert not {"export.py", "merge.py", "model_card.py"} & {p.name for p in MODELS.glob("*.py")}
