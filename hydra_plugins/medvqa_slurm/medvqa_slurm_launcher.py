"""Hydra finds launchers only in the `hydra_plugins` package: this names medvqa's SLURM launcher there
(conf/hydra/launcher/slurm.yaml `_target_`); the code is medvqa/slurm.py."""

from medvqa.slurm import SlurmLauncher


class MedvqaSlurmLauncher(SlurmLauncher):
    pass
