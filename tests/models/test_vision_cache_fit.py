"""The vision cache through `trainer.fit` (SFT, DPO, GRPO), evaluate and predict: the shared path gives the
unshared path's losses, weights and answers (model.share_vision=true vs false, same seed)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from medvqa.callbacks.vision_cache import VisionCacheLog
from medvqa.evaluate import compose_evaluate, evaluate
from medvqa.inference.predictor import Item, Predictor
from medvqa.models import vision_cache
from medvqa.run import build, compose_config, make_trainer

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "++data.limit={train: 8, val: 4, test: 4}", "stage.max_new_tokens=2",
        "callbacks=none", "trainer.val_check_interval=null", "++trainer.limit_val_batches=0",
        "trainer.max_steps=3", "data.group_by_image=true", "trainer.log_every_n_steps=1"]  # fmt: skip
STAGES = {"sft": [], "dpo": ["stage=dpo"],
          "grpo": ["stage=grpo", "stage.num_generations=2", "stage.max_completion_length=3", "stage.scheduler=null"]}  # fmt: skip


class Losses(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def _fit(overrides, out, share: bool):
    cfg = compose_config([*overrides, f"model.share_vision={str(share).lower()}"], output_dir=out)
    L.seed_everything(0, workers=True)
    model, datamodule, module = build(cfg)
    losses, log = Losses(), VisionCacheLog()
    trainer = make_trainer(cfg, logger=False, enable_progress_bar=False, enable_model_summary=False,
                           callbacks=[losses, log])  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return losses.losses, weights, trainer, vision_cache.find_vision_cache(model)


# the tower trains (adapters on it; its in-batch gradients are also checked fast in test_vision_cache.py) / frozen
@pytest.mark.parametrize("peft", [pytest.param("lora_tiny", marks=pytest.mark.slow), "lora"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_fit_losses_and_weights_equal_the_unshared_path(stage, peft, tmp_path, data_dir):
    overrides = [*TINY, f"paths.data_dir={data_dir}", f"peft={peft}", *STAGES[stage]]
    shared_losses, shared, trainer, cache = _fit(overrides, tmp_path / "a", True)
    plain_losses, plain, _, none = _fit(overrides, tmp_path / "b", False)
    assert none is None and len(shared_losses) == len(plain_losses) == 3
    assert max(abs(a - b) for a, b in zip(shared_losses, plain_losses, strict=True)) <= 1e-5
    assert shared.keys() == plain.keys()
    for name in shared:
        assert torch.allclose(shared[name], plain[name], atol=1e-5, rtol=0), name
    s = cache.stats()
    assert s["batch_hits"] + s["cache_hits"] > 0 and "train/vision_cache_hit_rate" in trainer.callback_metrics
    # across calls only with the tower frozen: DPO's and GRPO's reference passes, SFT's second epoch
    assert (s["cache_hits"] > 0) == (peft == "lora")


def test_augmentation_switches_reuse_across_batches_off_for_training(tmp_path, data_dir, caplog):
    import logging

    overrides = [*TINY, f"paths.data_dir={data_dir}", "peft=lora", "augment=light", "trainer.max_steps=4"]
    with caplog.at_level(logging.INFO, logger="medvqa.models.vision_cache"):
        _, _, _, cache = _fit(overrides, tmp_path, True)
    assert cache.stats()["cache_hits"] == 0 and "the training split is augmented" in caplog.text
    assert cache.off_reason is None  # evaluation after fit is never augmented


QUICK = ["eval.text_metrics=[]", "callbacks.progress_bar=null"]


def test_evaluate_scores_and_predictions_equal_the_unshared_path(tiny_run_dir, tmp_path, monkeypatch):
    made = []
    real = vision_cache.share_image_features
    monkeypatch.setattr(
        vision_cache, "share_image_features", lambda *a, **k: made.append(real(*a, **k)) or made[-1]
    )
    records = {}
    for share in ("true", "false"):
        out = tmp_path / share
        records[share] = evaluate(
            compose_evaluate([*QUICK, f"run={tiny_run_dir}", f"model.share_vision={share}"], out)
        )
        records[share]["rows"] = (out / "predictions.jsonl").read_text().splitlines()
    assert len(made) == 1 and made[0].stats()["batch_hits"] > 0  # the test split repeats its images
    assert records["true"]["test"] == records["false"]["test"]
    assert [json.loads(r)["prediction"] for r in records["true"]["rows"]] == [
        json.loads(r)["prediction"] for r in records["false"]["rows"]
    ]


def test_predict_answers_equal_the_unshared_path(tiny_run_dir):
    import numpy as np
    from omegaconf import OmegaConf
    from PIL import Image

    cfg = OmegaConf.load(tiny_run_dir / "config.yaml")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(2)]
    items = [Item(images[i], q, str(k)) for k, (i, q) in
             enumerate((i, q) for q in ("Is there a lesion?", "Which organ is shown?", "Is this a CT image?") for i in (0, 1))]  # fmt: skip
    answers = {}
    for share in (True, False):
        model_cfg = OmegaConf.merge(cfg.model, {"share_vision": share})
        predictor = Predictor.from_config({"model": model_cfg, "adapter": str(tiny_run_dir / "adapter"),
                                           "data": cfg.data, "stage": cfg.stage})  # fmt: skip
        answers[share] = [a.to_row() for a in predictor.answer_many(items, batch_size=6, progress=False)]
        cache = vision_cache.find_vision_cache(predictor.stage.model)
        assert (cache is not None) == share
        if share:  # generation and the option scoring each encode the 2 pictures once for their 6 rows
            s = cache.stats()
            assert 2 <= s["computed"] <= s["images"] / 3
    assert answers[True] == answers[False]


@pytest.mark.slow
def test_a_default_sized_tiny_run_writes_the_same_metrics_json_shared_or_not(tmp_path, data_dir):
    """`python -m medvqa.run` at its defaults (tiny Qwen2-VL, peft=lora_tiny, the synthetic set), only the
    data folder moved: model.share_vision=true and =false give byte-identical metrics.json."""
    from medvqa.run import train

    texts = []
    for share in ("true", "false"):
        out = tmp_path / share
        train(compose_config([f"paths.data_dir={data_dir}", f"model.share_vision={share}",
                              "callbacks.progress_bar=null"], output_dir=out))  # fmt: skip
        texts.append((out / "metrics.json").read_text())
    assert texts[0] == texts[1]
