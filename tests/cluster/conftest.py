"""A real single-node Slurm cluster for the tests in this folder, started once per session on loopback.

Needs Debian's slurm-wlm + munge (`.ci/run` installs them). Without them the tests are skipped on a developer machine
and fail under CI (CI=true), so a missing install can never pass silently.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cluster.local_slurm import LocalSlurm, missing_binaries
from tests.cluster.stages import CONFIG, ROOT, SHARDS, stage_overrides, venv_python

INSTALL_HINT = "run .ci/run, or: apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge"


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@pytest.fixture(scope="session")
def slurm():
    missing = missing_binaries()
    if missing:
        message = f"Slurm is not installed (missing {', '.join(missing)}): {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # SIGTERM (a CI time limit, `kill`) unwinds like an exception, so the finally below still stops the daemons
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cluster = LocalSlurm(cpus=2, memory_mb=2048).start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # for submitit called in-process
    try:
        yield cluster
    finally:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous_handler)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """8 val dialogs of the demo data (2 per shard), built by the real data/prepare_demo.py."""
    out = tmp_path_factory.mktemp("cluster-demo") / "demo"
    subprocess.run([venv_python("evaluate"), "data/prepare_demo.py", "--out", str(out), "--train-dialogs", "4",
                    "--val-dialogs", "8", "--test-dialogs", "2"], cwd=ROOT, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def local_run(demo, tmp_path_factory) -> Path:
    """The reference: the same 4 shards embedded by one local process (no shard_index = every shard + finalize)."""
    root = tmp_path_factory.mktemp("local-embeddings")
    subprocess.run([venv_python("extract"), "-m", "services.extract", "--config", CONFIG,
                    *stage_overrides(demo, root), f"num_shards={SHARDS}"], cwd=ROOT, check=True, capture_output=True)
    return root / "cpu_default" / "val"
