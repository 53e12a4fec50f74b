"""Hydra finds launchers only in the `hydra_plugins` package: this names medvqa's SLURM launcher there
(conf/hydra/launcher/slurm.yaml `_target_`); the code is medvqa/slurm.py. Hydra imports every plugin module
at start-up, so without the `slurm` extra (hydra-submitit-launcher) this module defines nothing rather than
printing an import warning on every run; hydra/launcher=slurm then names the missing submitit_slurm config."""

try:
    from medvqa.slurm import SlurmLauncher
except ImportError:  # pip install -e ".[slurm]" not done
    pass
else:

    class MedvqaSlurmLauncher(SlurmLauncher):
        pass
