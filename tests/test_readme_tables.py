"""The README's `data` knobs table states the composed defaults: shared (vqa_rad base) and synthetic's own."""

from __future__ import annotations

import re

import pytest

from medvqa.run import ROOT_DIR as ROOT
from medvqa.run import compose_config as compose_cfg


def _data_table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### `data` knobs") : text.index("### `stage=sft` knobs")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`data."):
            rows[cells[0]] = cells[1]
    return rows


def _shared_and_synthetic(cell: str) -> tuple[str, str]:
    """'8 / 16 (16 / 64)' -> ('8 / 16', '16 / 64'); a cell without parentheses is the same for both."""
    m = re.match(r"^(.*?)\s*\((.*)\)$", cell)
    return (m.group(1), m.group(2)) if m else (cell, cell)


@pytest.mark.parametrize(
    "row, keys",
    [("`data.batch_size` / `data.eval_batch_size`", ["batch_size", "eval_batch_size"]),
     ("`data.num_workers`", ["num_workers"]), ("`data.split_by`", ["split_by"]),
     ("`data.on_bad_sample`", ["on_bad_sample"]), ("`data.max_image_side`", ["max_image_side"])],
)  # fmt: skip
def test_readme_data_defaults_match_the_configs(row, keys):
    shared, synthetic = _shared_and_synthetic(_data_table()[row])
    for cell, data in ((shared, "vqa_rad"), (synthetic, "synthetic")):
        cfg = compose_cfg([f"data={data}"])
        assert cell.replace("`", "") == " / ".join(str(cfg.data[k]) for k in keys), (row, data)


def test_readme_max_pixels_row():
    shared, synthetic = _shared_and_synthetic(_data_table()["`data.min_pixels` / `data.max_pixels`"])
    assert str(compose_cfg(["data=vqa_rad"]).data.max_pixels) in shared
    assert compose_cfg(["data=synthetic"]).data.max_pixels is None and synthetic == "null"
