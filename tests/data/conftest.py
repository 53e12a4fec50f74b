"""Release-format fixtures, written once per session (tests that change files copy them first)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medvqa.data import fixtures


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """release(name, **options) -> the folder holding that release's fixture (shared: do not modify)."""
    made: dict[tuple, Path] = {}

    def get(name: str, **options) -> Path:
        key = (name, tuple(sorted(options.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(name)
            made[key] = fixtures.write(name, folder, **options)
        return made[key]

    return get


@pytest.fixture
def release_copy(release, tmp_path):
    """release_copy(name, **options) -> a private copy the test may break."""

    def get(name: str, **options) -> Path:
        return Path(shutil.copytree(release(name, **options), tmp_path / name))

    return get
