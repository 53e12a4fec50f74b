"""The guard/ config group: each option builds Guard.for_run as a partial with the documented defaults."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_method, instantiate

from medvqa.run import CONF_DIR


@pytest.mark.parametrize(
    ("option", "mode"), [("patient", "patient"), ("research", "research"), ("off", "off")]
)
def test_guard_options(option, mode):
    with initialize_config_dir(config_dir=str(CONF_DIR / "guard"), version_base="1.3"):
        cfg = compose(option)
    assert cfg.mode == mode and cfg.target_precision == 0.95 and cfg.min_similarity == 0.5
    assert callable(get_method(cfg._target_))
    build = instantiate(cfg)
    assert build.func.__name__ == "for_run" and build.keywords["mode"] == mode
