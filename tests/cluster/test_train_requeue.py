"""Training on Slurm survives its time limit: checkpoint, requeue, resume — through submitit and through train.sbatch.

The trainer is tests/cluster/fake_trainer.py (steps, saves, resumes from `resume=true`) so the test measures the
launcher, not a model. The time-limit warning is sent by hand with `scancel --signal` (what Slurm itself sends
`signal_delay_s` before the limit). Slurm holds a requeued job for about two minutes by design (Reason=BeginTime);
the test releases it after a few seconds with `scontrol update StartTime=now` instead of waiting.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from services.cluster.config import ClusterSettings, Resources
from tests.cluster.stages import ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
FAKE = str(ROOT / "tests" / "cluster" / "fake_trainer.py")
STEPS = 12


def cluster_config(logs: Path) -> ClusterSettings:
    return ClusterSettings(job=Resources(partition="debug", cpus_per_task=1, timeout_min=10), logs_dir=str(logs),
                           grace_s=10, signal_delay_s=30)


def wait_until(predicate, what: str, slurm, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{slurm.run('squeue')}\n{slurm.logs()}"
        time.sleep(0.3)


def steps_done(state: Path) -> int:
    try:
        return int((state / "step").read_text() or 0)
    except FileNotFoundError:
        return 0


def release_requeued(slurm, job_id: str) -> bool:
    """True once the job has been requeued and released; False while it is still running its first attempt.

    Not at once: slurmd refuses a job credential issued in the same second as the requeue revoked the old one
    ("Job credential revoked"), which is what Slurm's own hold protects against.
    """
    line = slurm.run("squeue", "-h", "-j", job_id, "-o", "%T %r", check=False).strip()
    if line == "PENDING BeginTime":
        time.sleep(2.5)
        slurm.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        return True
    return False


def job_field(slurm, job_id: str, key: str) -> str:
    record = slurm.run("scontrol", "show", "-o", "job", job_id)
    return dict(kv.split("=", 1) for kv in record.split() if "=" in kv)[key]


def assert_resumed(state: Path) -> None:
    events = (state / "events").read_text().splitlines()
    assert events[0].startswith("start resume=False step=0"), events
    assert events[1].startswith("sigterm step="), events  # stopped gracefully, not killed
    stopped_at = int(events[1].split("step=")[1])
    assert stopped_at >= 2
    assert events[2].startswith(f"start resume=True step={stopped_at}"), events  # continued where it stopped
    assert events[-1] == f"done step={STEPS}", events


def test_submitit_job_checkpoints_and_requeues_with_resume(slurm, tmp_path):
    from services.cluster.submit import submit_checkpointable

    state = tmp_path / "state"
    job, manifest = submit_checkpointable(cluster_config(tmp_path / "logs"), [sys.executable, FAKE, str(state),
                                                                              str(STEPS)], "fake-train")
    wait_until(lambda: steps_done(state) >= 2, "two training steps", slurm)
    job._interrupt(timeout=True)  # submitit's own test hook: the USR2 time-out signal, sent through scancel
    wait_until(lambda: release_requeued(slurm, job.job_id), "the requeue", slurm)
    wait_until(job.done, "the resumed job to finish", slurm)
    assert job.result() == 0
    assert_resumed(state)
    assert "usr2_ignored=True" in (state / "events").read_text()  # only the wrapper reacts to the time-out signal
    assert job_field(slurm, job.job_id, "Restarts") == "1"
    assert manifest.is_file()


def test_train_sbatch_requeues_itself_with_resume(slurm, tmp_path):
    from services.cluster.render import render_train

    state = tmp_path / "state"
    (script,), _ = render_train(cluster_config(tmp_path / "logs"), [sys.executable, FAKE, str(state),
                                                                              str(STEPS)], "fake-train", tmp_path)
    assert "#SBATCH --signal=B:USR1@30" in script.read_text() and "#SBATCH --requeue" in script.read_text()
    job_id = slurm.run("sbatch", "--parsable", str(script)).strip()
    wait_until(lambda: steps_done(state) >= 2, "two training steps", slurm)
    slurm.run("scancel", "--batch", "--signal=USR1", job_id)  # what --signal=B:USR1@30 sends near the limit
    wait_until(lambda: release_requeued(slurm, job_id), "the requeue", slurm)
    wait_until(lambda: not slurm.queued(), "the resumed job to finish", slurm)
    assert job_field(slurm, job_id, "JobState") == "COMPLETED"
    assert job_field(slurm, job_id, "Restarts") == "1"
    assert_resumed(state)
