"""Stop on a signal without losing the steps trained since the last validation.

- SIGTERM (what `kill`, Kubernetes and SLURM's end of a job send): Lightning's own handler stops training
  after the current step (it raises SIGTERMException, a SystemExit with status 0, and saves nothing); this
  callback then saves `checkpoints/last.ckpt`, prints the command that resumes the run (`ckpt_path=last`),
  and makes the exit status 143 (128 + SIGTERM, as a shell reports a process killed by it), so a scheduler
  or script sees that the run did not finish.
- In a SLURM job, the warning signals too: USR1 (`scancel --signal=USR1 <job>`, Lightning's convention) and
  USR2 (what submitit asks SLURM to send `signal_delay_s` before the time limit: `--signal=USR2@120`). They
  stop and save the same way, then `scontrol requeue` the job; the requeued job (SLURM_RESTART_COUNT > 0)
  resumes from that checkpoint (medvqa/run.py `resume_path`).

This callback is the one owner of those signals during `fit`: Lightning's SLURM auto-requeue (which saves an
`hpc_ckpt_*.ckpt` from inside the signal handler, at whatever point of a step the signal lands) stays off,
because Lightning registers its USR1 handler only when none is set; submitit's USR2 handler is set aside
during fit and put back after. Saving at a step boundary keeps the resume exact (callbacks.resume_state):
the resumed run ends with the metrics of an unbroken one.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("medvqa")
TERM_EXIT = 128 + signal.SIGTERM  # 143


def slurm_job_id() -> str | None:
    """This job's id as scontrol takes it (`<array job>_<task>` for an array task), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def resume_command(out: Path) -> str:
    """The command that continues this run: the same overrides, its folder, ckpt_path=last."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [
            o for o in HydraConfig.get().overrides.task if not o.startswith(("hydra.run.dir=", "ckpt_path="))
        ]
    except ValueError:  # not under @hydra.main (a test, a notebook)
        overrides = ["<the same overrides>"]
    return "python -m medvqa.run " + shlex.join([*overrides, f"hydra.run.dir={out}", "ckpt_path=last"])


class Preemption(L.Callback):
    def __init__(self, requeue_signals: tuple[str, ...] = ("SIGUSR1", "SIGUSR2"), exit_code: int = TERM_EXIT):
        self.requeue_signals = [getattr(signal, name) for name in requeue_signals]
        self.exit_code = exit_code
        self.requeue = False
        self._previous: dict[int, object] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before Lightning registers its handlers (Trainer._run), so its SLURM USR1 handler is not set
        if stage != "fit" or slurm_job_id() is None:
            return
        for signum in self.requeue_signals:
            self._previous[signum] = signal.signal(signum, self._warned)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _warned(self, signum: int, frame) -> None:
        log.info("%s received: stopping after this step to save a checkpoint and requeue the job",
                 signal.Signals(signum).name)  # fmt: skip
        self.requeue = True
        signal.raise_signal(
            signal.SIGTERM
        )  # Lightning's SIGTERM path stops the loop at the next step boundary

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        exception.code = self.exit_code  # the same exception is re-raised by Lightning: exit 143, not 0
        if trainer.state.fn != "fit":
            return  # validate/test after fit: last.ckpt already holds the trained weights
        out = Path(trainer.default_root_dir)
        ckpt = out / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(ckpt)  # every rank takes part; rank 0 writes (atomically)
        if not trainer.is_global_zero:
            return
        job = slurm_job_id()
        if self.requeue and job:
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if done.returncode == 0:
                log.warning("stopped at step %d: saved %s and requeued SLURM job %s; it resumes from there",
                            trainer.global_step, ckpt, job)  # fmt: skip
                return
            log.error("scontrol requeue %s failed: %s", job, done.stderr.strip())
        requeued = (
            "\n(a SLURM job requeued by scontrol or preemption resumes from it by itself)" if job else ""
        )
        log.warning("stopped by a signal at step %d of %d: saved %s\nresume with: %s%s",
                    trainer.global_step, trainer.max_steps, ckpt, resume_command(out), requeued)  # fmt: skip
