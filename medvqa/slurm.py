"""`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): hydra-submitit-launcher's SLURM launcher, plus
what medvqa's runs need from it:

- a sweep's jobs are one array job; when it ends, a summary names every failed job (its failed.json error)
  and its log file, instead of the sweep only saying it finished;
- a pipeline (a config with `pipeline.stages`) is one job per stage, each submitted with
  `--dependency=afterok:<previous stage's job>` and `--kill-on-invalid-dep=yes`, as hand-written sbatch chains
  do: a failed stage cancels the later ones, and submitting again (same `hydra.sweep.dir`) starts at the
  first stage without metrics.json. Stage job k runs the pipeline with `pipeline.until_stage=k`
  (medvqa/pipeline.py): the stages before it are finished and skipped, the last job writes the summary;
- `trainer.accelerator=cpu` asks for no GPUs (`gpus_per_node` follows `trainer.devices` only on GPUs);
- on a cluster without an accounting database (sacct answers "accounting storage is disabled", as on the
  test cluster, scripts/slurm_test_cluster.sh) job states are read with `squeue --states=all` instead of
  sacct, so state polling neither fails nor floods the log.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("medvqa")


def accounting_disabled() -> bool:
    """True when this cluster keeps no job accounting (sacct cannot answer)."""
    try:
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "accounting_storage/none" in config


def use_squeue_states() -> None:
    """Read job states with squeue on a cluster without accounting (submitit polls sacct by default)."""
    from submitit.slurm import slurm

    class SqueueInfoWatcher(slurm.SlurmInfoWatcher):
        def _make_command(self):
            to_check = {x.split("_")[0] for x in self._registered - self._finished}
            if not to_check:
                return None
            # slurmctld keeps finished jobs MinJobAge seconds; --states=all lists them with their end state
            return [
                "squeue",
                "--states=all",
                "--array",
                "--noheader",
                "-o",
                "%i|%T|%N",
                "-j",
                ",".join(to_check),
            ]

        def read_info(self, string):
            text = string if isinstance(string, str) else string.decode()
            return super().read_info("JobID|State|NodeList\n" + text)

    if not isinstance(slurm.SlurmJob.watcher, SqueueInfoWatcher):
        slurm.SlurmJob.watcher = SqueueInfoWatcher(delay_s=10)
        log.info("SLURM accounting is off on this cluster: job states read with squeue")


class SlurmLauncher(SubmititSlurmLauncher):
    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if OmegaConf.select(config, "trainer.accelerator") == "cpu":
            self.params["gpus_per_node"] = None  # a CPU run asks the cluster for no GPUs

    def __call__(self, sweep_overrides: list[str], *args) -> JobReturn:
        """Runs one job on the node (submitit unpickles the launcher there). Hydra's run_job keeps a job's
        exception in its JobReturn, so the job would exit 0; a chained stage's must not: raised here, it exits
        non-zero and SLURM cancels the stages waiting on it (afterok)."""
        job_return = super().__call__(sweep_overrides, *args)
        chained = any(o.startswith("++pipeline.until_stage=") for o in sweep_overrides)
        if chained and job_return.status == JobStatus.FAILED:
            raise job_return._return_value
        return job_return

    def _executor(self, dependency: str | None = None):
        """submitit's executor with this launcher's parameters (as hydra-submitit-launcher builds it), and an
        afterok dependency on the job `dependency` when given."""
        import submitit

        params = dict(self.params)
        folder, max_num_timeout = params.pop("submitit_folder"), params.pop("max_num_timeout", 0)
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=folder, slurm_max_num_timeout=max_num_timeout
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {k if k in base else f"slurm_{k}": v for k, v in params.items()}
        if dependency:
            extra = dict(params.get("slurm_additional_parameters") or {})
            params["slurm_additional_parameters"] = extra | {
                "dependency": f"afterok:{dependency}",
                "kill-on-invalid-dep": "yes",
            }
        executor.update_parameters(**params)
        return executor

    def _job_config(self, overrides: list[str], idx: int) -> DictConfig:
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config.hydra.job):
            config.hydra.job.num = idx
        return config

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        if accounting_disabled():
            use_squeue_states()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("SLURM sweep output dir: %s", sweep_dir)
        singles, chains = [], []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            config = self._job_config(overrides, idx)
            out = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            (chains if config.get("pipeline") else singles).append((idx, list(overrides), out, config))
        returns: dict[int, JobReturn] = {}
        if singles:
            returns |= self._run_array(singles)
        for idx, overrides, out, config in chains:
            returns[idx] = self._run_chain(idx, overrides, out, config)
        return [returns[initial_job_idx + i] for i in range(len(job_overrides))]

    def _args(self, overrides: list[str], idx: int) -> tuple:
        return (overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())

    def _run_array(self, singles: list[tuple]) -> dict[int, JobReturn]:
        """Every job one array task; wait for all, then name the failed ones and their logs."""
        columns = zip(
            *(self._args(o, idx) for idx, o, _, _ in singles), strict=True
        )  # map_array takes columns
        jobs = self._executor().map_array(self, *columns)
        returns, failed = {}, []
        for (idx, overrides, out, _), job in zip(singles, jobs, strict=True):
            try:
                returns[idx] = job.results()[0]
            except Exception as e:  # the job died outside medvqa's own error handling (killed, out of memory)
                returns[idx] = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=e)
            error = _failure(out, returns[idx])
            if error:
                failed.append(f"  #{idx} ({' '.join(filter_overrides(overrides))}) job {job.job_id}: {error}\n"
                              f"      log: {job.paths.stdout}  (stderr: {job.paths.stderr})")  # fmt: skip
        log.info("SLURM sweep: %d of %d jobs finished", len(singles) - len(failed), len(singles))
        if failed:
            log.error("SLURM sweep: %d job(s) failed:\n%s", len(failed), "\n".join(failed))
        return returns

    def _run_chain(self, idx: int, overrides: list[str], out: Path, config: DictConfig) -> JobReturn:
        """One job per unfinished stage, chained by afterok; wait for the last one."""
        from medvqa.pipeline import stage_plan

        plan = stage_plan(config)
        done = [(out / s["dir"] / "metrics.json").is_file() for s in plan]
        start = done.index(False) if False in done else len(plan) - 1  # all done: the last job re-summarises
        if start:
            log.info("pipeline #%d: stages 1-%d already finished in %s; submitting from stage %d (%s)",
                     idx, start, out, start + 1, plan[start]["name"])  # fmt: skip
        (out / "failed.json").unlink(missing_ok=True)  # an earlier attempt's error; this one writes its own
        jobs, previous = [], None
        for k in range(start, len(plan)):
            job = self._executor(previous).submit(
                self, *self._args([*overrides, f"++pipeline.until_stage={k + 1}"], idx)
            )
            log.info("pipeline #%d: stage %d (%s) is job %s%s", idx, k + 1, plan[k]["name"], job.job_id,
                     f", after {previous} succeeds" if previous else "")  # fmt: skip
            jobs.append(job)
            previous = job.job_id
        try:
            result = jobs[-1].results()[0]
        except Exception:
            message = _chain_failure(plan, start, jobs, out)
            log.error("%s", message)
            return JobReturn(
                overrides=overrides, status=JobStatus.FAILED, _return_value=RuntimeError(message)
            )
        summary = out / "summary.md"
        if summary.is_file():  # the last stage's job wrote it: show it here too, not only in that job's log
            log.info("pipeline #%d finished in %s\n%s", idx, out, summary.read_text())
        return result


def _failure(out: Path, job_return: JobReturn) -> str | None:
    """The error of a job that failed: its failed.json, else the exception the launcher got, else None."""
    failed = out / "failed.json"
    if failed.is_file():
        return json.loads(failed.read_text()).get("error", "failed")
    if job_return.status == JobStatus.FAILED:
        return f"{type(job_return._return_value).__name__}: {job_return._return_value}"
    return None


def _chain_failure(plan: list[dict[str, Any]], start: int, jobs: list, out: Path) -> str:
    """Which stage failed (its error and log) and which stages were never started."""
    lines = []
    for k, job in zip(range(start, len(plan)), jobs, strict=True):
        stage_dir = out / plan[k]["dir"]
        if (stage_dir / "metrics.json").is_file():
            continue
        state = job.state
        if state not in ("CANCELLED", "PENDING"):
            error = (
                _failure(out, JobReturn(status=JobStatus.COMPLETED)) or state
            )  # the pipeline's failed.json
            lines.append(f"pipeline stage {k + 1} ({plan[k]['name']}) failed (job {job.job_id}, {state}): "
                         f"{error}\n  log: {job.paths.stdout}  (stderr: {job.paths.stderr})")  # fmt: skip
        else:
            lines.append(f"pipeline stage {k + 1} ({plan[k]['name']}) not started (job {job.job_id} {state}: "
                         "an earlier stage failed)")  # fmt: skip
    lines.append(f"submit the same command again with hydra.sweep.dir={out.parent} to resume at the first "
                 "unfinished stage")  # fmt: skip
    return "\n".join(lines)
