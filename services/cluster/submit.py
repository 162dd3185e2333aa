"""Submit stages to Slurm through submitit: extraction as an array over the missing shards + a finalize job, training
as a checkpointable job that requeues itself from its last checkpoint when its time runs out.

Runs in the train environment (submitit is pinned there). Each job runs the stage's ordinary command line
(services/cluster/commands.py) in the stage's own venv or Apptainer image, so the job does exactly what a local run
does. Every submission writes `<logs_dir>/<job name>/submission-<time>.json`: job ids, and which shard each array task
embeds (array task i runs the i-th *missing* shard, not shard i).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, CommandFunction, DelayedSubmission

from services.cluster.commands import (
    REPO_ROOT,
    ExtractPlan,
    extract_finalize_command,
    extract_shard_command,
    train_command,
    with_resume,
)
from services.cluster.config import ClusterSettings, Resources, StageSettings


def make_executor(folder: Path, res: Resources, name: str, max_num_timeout: int = 0,
                  **slurm: object) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
    params: dict[str, object] = {
        "name": name, "timeout_min": res.timeout_min, "cpus_per_task": res.cpus_per_task, "mem_gb": res.mem_gb,
        "gpus_per_node": res.gpus_per_node or None, "slurm_partition": res.partition, "slurm_account": res.account,
        "slurm_qos": res.qos, "slurm_constraint": res.constraint, **slurm,
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _write_manifest(folder: Path, record: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"submission-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def submit_extract(cfg: ClusterSettings, plan: ExtractPlan) -> dict:
    """An array over `plan.missing`, then finalize after all of it (afterok). Nothing to do when the index is done."""
    folder = REPO_ROOT / cfg.logs_dir / plan.job_name
    record: dict = {"stage": "extract", "split": plan.split, "out_dir": str(plan.out_dir),
                    "num_shards": plan.num_shards, "shards": list(plan.missing), "array_job_id": None, "tasks": {},
                    "finalize_job_id": None}
    if plan.index_done:
        record["manifest"] = None
        return record
    finalize_deps: dict = {}
    jobs: list[submitit.Job] = []
    if plan.missing:
        executor = make_executor(folder, cfg.job, plan.job_name, slurm_array_parallelism=cfg.array_parallelism)
        with executor.batch():  # one sbatch --array for every missing shard
            jobs = [executor.submit(CommandFunction(extract_shard_command(cfg, plan, i), cwd=REPO_ROOT))
                    for i in plan.missing]
        record["array_job_id"] = jobs[0].job_id.split("_")[0]
        record["tasks"] = {job.job_id: shard for job, shard in zip(jobs, plan.missing)}
        finalize_deps = {"dependency": f"afterok:{record['array_job_id']}"}
    executor = make_executor(folder, cfg.finalize, f"{plan.job_name}-finalize",
                             slurm_additional_parameters=finalize_deps)
    finalize = executor.submit(CommandFunction(extract_finalize_command(cfg, plan), cwd=REPO_ROOT))
    record["finalize_job_id"] = finalize.job_id
    record["manifest"] = str(_write_manifest(folder, record))
    record["_jobs"] = [*jobs, finalize]  # for --wait; not written to the manifest
    return record


def _exited(process: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class CheckpointableCommand(Checkpointable):
    """Run a stage's command; on Slurm's time-out signal stop it gracefully and requeue it with `resume=true`.

    Slurm signals every process of the job, so the child starts with USR2 ignored: only this wrapper reacts. It then
    sends SIGTERM (the stage may save a checkpoint within `grace_s`), and submitit requeues the job (same job id)
    with the resume override added. The stage's periodic checkpoints bound the work lost to one save interval.
    """

    def __init__(self, command: list[str], resume_override: str = "resume=true", grace_s: int = 60) -> None:
        self.command, self.resume_override, self.grace_s = list(command), resume_override, grace_s
        self._process: subprocess.Popen | None = None

    def __call__(self) -> int:
        print(f"running: {' '.join(self.command)}", flush=True)
        self._process = subprocess.Popen(
            self.command, cwd=REPO_ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))  # noqa: PLW1509 (single-threaded)
        # poll, not wait(): the time-out handler runs inside this frame and must be able to reap the child itself
        # (Popen.wait holds a lock that a nested wait() in the handler would block on forever)
        while (code := self._process.poll()) is None:
            time.sleep(0.5)
        if code != 0:
            raise RuntimeError(f"command exited with {code}: {' '.join(self.command)}")
        return code

    def checkpoint(self, *args: object, **kwargs: object) -> DelayedSubmission:
        process = self._process
        if process is not None and process.poll() is None:
            print(f"time-out signal: stopping the stage (SIGTERM, up to {self.grace_s} s) before the requeue", flush=True)
            process.terminate()
            if not _exited(process, self.grace_s):
                process.kill()
                _exited(process, 10)
        resumed = CheckpointableCommand(with_resume(self.command, self.resume_override), self.resume_override,
                                        self.grace_s)
        return DelayedSubmission(resumed)

    def __getstate__(self) -> dict:  # a running Popen is not part of the requeued state
        return {k: v for k, v in self.__dict__.items() if k != "_process"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._process = None


def submit_checkpointable(cfg: ClusterSettings, command: list[str], name: str) -> tuple[submitit.Job, Path]:
    folder = REPO_ROOT / cfg.logs_dir / name
    executor = make_executor(folder, cfg.job, name, max_num_timeout=cfg.max_requeues,
                             slurm_signal_delay_s=cfg.signal_delay_s)
    job = executor.submit(CheckpointableCommand(command, cfg.resume_override, cfg.grace_s))
    manifest = _write_manifest(folder, {"stage": "train", "job_id": job.job_id, "command": command})
    return job, manifest


def submit_train(cfg: ClusterSettings, stage: StageSettings) -> dict:
    command = train_command(cfg, stage)
    name = f"train-{stage.verb_name}-{Path(stage.config).stem}"
    job, manifest = submit_checkpointable(cfg, command, name)
    return {"stage": "train", "job_id": job.job_id, "command": command, "manifest": str(manifest), "_jobs": [job]}


def wait_for(jobs: list[submitit.Job]) -> bool:
    """Block until every job ends; print each failure with its log files. True when all succeeded."""
    ok = True
    for job in jobs:
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 (submitit raises the job's own exception type)
            ok = False
            print(f"job {job.job_id} failed: {str(e).strip()[-2000:]}\n  logs: {job.paths.stdout} {job.paths.stderr}",
                  file=sys.stderr)
    return ok
