"""Loggers: csv + tensorboard + wandb at once; wandb offline, and records only with log_samples=true."""

from pathlib import Path

from hydra.utils import instantiate

from medvqa.run import compose_config as compose_cfg

QUESTION = "Is there a mass in patient 7788-XYZ's liver?"


def _wandb_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_several_loggers_at_once(tmp_path):
    cfg = compose_cfg(["logger=[csv,tensorboard,wandb]"], tmp_path)
    names = [type(instantiate(c)).__name__ for c in cfg.logger.values()]
    assert names == ["CSVLogger", "TensorBoardLogger", "WandbLogger"]


def test_wandb_is_offline_and_sends_records_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    rows = [
        {"id": "p7788-1", "question": QUESTION, "answer": "yes", "prediction": "no", "answer_type": "closed"}
    ]
    for flag in (False, True):
        cfg = compose_cfg(["logger=wandb", f"logger.wandb.log_samples={flag}"], tmp_path / str(flag))
        logger = instantiate(cfg.logger.wandb)
        assert logger.experiment.settings.mode == "offline"
        logger.log_metrics({"val/closed_acc": 0.5}, step=1)
        assert logger.log_predictions(rows) is flag
        logger.finalize("success")
        logger.experiment.finish()
        assert (QUESTION.encode() in _wandb_bytes(tmp_path / str(flag))) is flag
