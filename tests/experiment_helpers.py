"""Every conf/experiment file, and the overrides that shrink any of them to seconds on a CPU."""

from __future__ import annotations

from medvqa.run import CONF_DIR

EXPERIMENTS = sorted((CONF_DIR / "experiment").glob("*.yaml"))
# fast settings for every stage: tiny model on the synthetic set (also for experiments that name a hub
# model and a real dataset), 60 images, 2 steps with one validation, 8 test questions
TINY = ["model=tiny_qwen2_vl", "data=synthetic", "trainer=cpu", "precision=fp32", "peft=lora_tiny",
        "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "data.eval_batch_size=8", "trainer.val_check_interval=2", "stage.max_new_tokens=4",
        "data.limit={val: 4, test: 8}", "callbacks.progress_bar=null", "eval_untrained=false"]  # fmt: skip
