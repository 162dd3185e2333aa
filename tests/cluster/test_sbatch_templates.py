"""The plain sbatch path (no submitit): `render extract` writes scripts, `sbatch --array` runs them on real Slurm."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.shards import INDEX_NAME, ShardSet
from tests.cluster.stages import ROOT, cluster_job

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def wait_for_empty_queue(slurm, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while slurm.queued():
        assert time.monotonic() < deadline, f"jobs still queued: {slurm.run('squeue')}\n{slurm.logs()}"
        time.sleep(1)


def test_rendered_array_and_finalize_scripts_run(slurm, demo, local_run, tmp_path):
    out_root, scripts = tmp_path / "embeddings", tmp_path / "sbatch"
    proc = subprocess.run(
        [sys.executable, "-m", "services.cluster", "render", *cluster_job(tmp_path, demo, out_root, 2),
         f"out={scripts}"],
        cwd=ROOT, env=slurm.env, capture_output=True, text=True, check=True)
    submit_lines = proc.stdout.split("submit with:\n", 1)[1]
    assert re.search(r"--array=0-1%2 ", submit_lines), proc.stdout  # array index = shard index
    subprocess.run(["bash", "-euo", "pipefail", "-c", submit_lines], cwd=ROOT, env=slurm.env, check=True)
    wait_for_empty_queue(slurm)

    shard_dir = out_root / "cpu_default" / "val"
    logs = "\n".join(p.read_text() for p in sorted((scripts / "logs").glob("*.out")))
    index = json.loads((shard_dir / INDEX_NAME).read_text())  # written by the finalize job
    assert index["num_shards"] == 2 and index["total_rows"] == 8, logs
    assert "shard 0 of 2" in logs and "shard 1 of 2" in logs
    # two shards hold the same rows, in the same order, as the local four-shard run
    two, four = ShardSet(shard_dir, verify=True), ShardSet(local_run, verify=True)
    rows = list(range(len(four)))
    np.testing.assert_array_equal(two.get("image_ids", rows), four.get("image_ids", rows))
    np.testing.assert_array_equal(two.get("num_rounds", rows), four.get("num_rounds", rows))
    np.testing.assert_allclose(two.get("image", rows).astype(np.float32), four.get("image", rows).astype(np.float32),
                               atol=2e-3)
