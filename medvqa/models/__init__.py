"""Vision-language models: hub checkpoints (builders.py), tiny offline ones (tiny.py), a run's model again
(runs.py: `load_base`, `load_run`)."""

from medvqa.models.runs import load_base, load_run

__all__ = ["load_base", "load_run"]
