"""Every conf/experiment file, and the overrides that shrink any of them to seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys

from PIL import Image

from medvqa.run import CONF_DIR, ROOT_DIR

EXPERIMENTS = sorted((CONF_DIR / "experiment").glob("*.yaml"))
# fast settings for every stage: tiny model on the synthetic set (also for experiments that name a hub
# model and a real dataset), 60 images, 2 steps with one validation, 8 test questions
TINY = ["model=tiny_qwen2_vl", "data=synthetic", "trainer=cpu", "precision=fp32", "peft=lora_tiny",
        "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "data.eval_batch_size=8", "trainer.val_check_interval=2", "stage.max_new_tokens=4",
        "data.limit={val: 4, test: 8}", "callbacks.progress_bar=null", "eval_untrained=false"]  # fmt: skip
FAST = [*TINY, "trainer.max_steps=2"]


def multirun(sweep_dir, data_dir, *sweep_args, base=FAST) -> subprocess.CompletedProcess:
    """`python -m medvqa.run -m base ... sweep_args` in a subprocess, jobs under sweep_dir; must exit 0."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT_DIR)}
    cmd = [sys.executable, "-m", "medvqa.run", "-m", *base, f"paths.data_dir={data_dir}",
           f"hydra.sweep.dir={sweep_dir}", *sweep_args]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def png_size(path) -> tuple[int, int]:
    """(width, height) of a file that must be a PNG that decodes."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as image:
        image.load()
        return image.size
