"""A finished run's own data, read back without ever creating any: what the guard (the app, `predict
guard=`, `evaluate guard=`) and export read of a run.

    datamodule = run_datamodule(run_config(run_dir))   # set up: splits as the run made them

Training writes `data.root` as an absolute path into config.yaml (medvqa/run.py `absolute_paths`). A run
from before that stores a relative one, which names a different folder from wherever the app is started,
and the built-in synthetic reader would generate a fresh dataset there (once, 1,202 files in the app's
working folder): such a run, or a missing folder, is a one-line error here instead.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict


def run_datamodule(cfg: DictConfig, **overrides):
    """The run's datamodule (`cfg`: a run's config.yaml), set up; `overrides` go to its constructor."""
    root = str(cfg.data.root)
    if not os.path.isabs(root):
        raise FileNotFoundError(
            f"the run's config.yaml stores a relative data.root={root}, which would be read (or generated) "
            "under the current folder; set data.root in the run's config.yaml to the absolute folder it was "
            "trained on (runs made now store absolute paths)"
        )
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"the run's data.root={root} is not a folder: its data was moved or deleted; put it back or set "
            "data.root in the run's config.yaml to where it is now"
        )
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    target = OmegaConf.select(cfg, "data.reader._target_")
    if target and "generate" in inspect.signature(get_method(target)).parameters:
        with open_dict(cfg):
            cfg.data.reader.generate = False  # read what the run used, never create a new copy
    datamodule = instantiate(cfg.data, **overrides)
    datamodule.setup()
    return datamodule
