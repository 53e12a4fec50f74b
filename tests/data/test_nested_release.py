"""A release that ships inside one folder (a git clone, an unpacked zip) is read from the outer folder too:
`data.root=<clone of MedPix-2.0>` finds `MedPix-2-0/`, and image paths still resolve against data.root."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytest

from medvqa.data import fixtures
from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.errors import DataError
from medvqa.data.formats import medpix, pmc_vqa, slake, vqa_rad
from medvqa.run import train
from tests.conftest import compose_cfg
from tests.data.test_readers_run import FAST

# (fixture, reader, the folder the release nests its files in)
NESTED = [
    ("medpix", medpix.read, "MedPix-2-0"),
    ("vqa_rad", vqa_rad.read, "VQA_RAD"),
    ("slake", slake.read, "Slake1.0"),
    ("pmc_vqa", pmc_vqa.read, "PMC-VQA"),
]


def medpix_clone(root: Path) -> Path:
    """The CHILab1/MedPix-2.0 repository as cloned: the data in MedPix-2-0/, code folders beside it."""
    fixtures.write("medpix", root / "MedPix-2-0")
    (root / "README.md").write_text("# MedPix 2.0\n")
    for folder in ("MongoDB-UI", "code-DRMinerva", "code-KG"):
        (root / folder).mkdir()
        (root / folder / "README.md").write_text("code\n")
    return root


@pytest.mark.parametrize(("name", "reader", "inner"), NESTED, ids=[n for n, _, _ in NESTED])
def test_the_outer_folder_reads_like_the_release_folder(tmp_path, caplog, name, reader, inner):
    fixtures.write(name, tmp_path / "outer" / inner)
    (tmp_path / "outer" / "README.md").write_text("downloaded\n")
    with caplog.at_level(logging.INFO):
        outer = MedVQADataModule(partial(reader), str(tmp_path / "outer"))
        outer.setup()
    direct = MedVQADataModule(partial(reader), str(tmp_path / "outer" / inner))
    direct.setup()
    assert {k: [(s.id, s.image) for s in v] for k, v in outer.splits.items()} == {
        k: [(s.id, s.image) for s in v] for k, v in direct.splits.items()
    }
    assert all(Path(s.image).is_file() for s in outer.splits["train"])
    assert f"reading the release in {tmp_path / 'outer' / inner}" in caplog.text


def test_two_candidate_folders_are_an_error_naming_both(tmp_path):
    fixtures.write("slake", tmp_path / "a")
    fixtures.write("slake", tmp_path / "b")
    with pytest.raises(DataError, match=r"data.root=.* has no train.json.*\ba\b.*\bb\b"):
        slake.read(tmp_path)


def test_medpix_from_the_cloned_repository_trains_two_steps(tmp_path):
    repo = medpix_clone(tmp_path / "MedPix-2.0")
    cfg = compose_cfg(["data=medpix", f"data.root={repo}", "trainer.max_steps=2", *FAST], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test"]["test/loss"] > 0
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["samples"]["train"] > 0 and info["samples"]["test"] == 2
