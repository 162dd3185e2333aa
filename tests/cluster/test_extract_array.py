"""Extraction as a Slurm array on a real (local) cluster, through `python -m services.cluster submit`.

One test walks the user's path: 4-shard array + finalize, a lost shard re-submitted alone, a third submit with nothing
left to do. The index and every shard must equal those of a local, non-Slurm run byte for byte.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.shards import INDEX_NAME, marker_path, shard_name
from tests.cluster.stages import ROOT, SHARDS, cluster_job

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def submit(slurm, demo: Path, out_root: Path, logs: Path, wait: bool = True) -> tuple[str, dict | None]:
    argv = [sys.executable, "-m", "services.cluster", "submit", *cluster_job(logs, demo, out_root, SHARDS),
            f"cluster.logs_dir={logs}", f"wait={str(wait).lower()}"]
    proc = subprocess.run(argv, cwd=ROOT, env=slurm.env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{slurm.logs()}"
    found = re.search(r"^manifest: (\S+)$", proc.stdout, re.MULTILINE)
    return proc.stdout, json.loads(Path(found.group(1)).read_text()) if found else None


def slurm_records(slurm, job_id: str) -> list[dict[str, str]]:
    """`scontrol show job` as one dict per job record (an array job shows one record per task)."""
    records = []
    for block in slurm.run("scontrol", "show", "-o", "job", job_id).strip().splitlines():
        records.append(dict(kv.split("=", 1) for kv in block.split() if "=" in kv))
    return records


def shard_digests(directory: Path) -> list[tuple[str, int, str]]:
    index = json.loads((directory / INDEX_NAME).read_text())
    return [(s["file"], s["rows"], s["sha256"]) for s in index["shards"]]


def test_array_extraction_resubmits_only_the_missing_shard(slurm, demo, local_run, tmp_path):
    out_root, logs = tmp_path / "embeddings", tmp_path / "logs"
    shard_dir = out_root / "cpu_default" / "val"

    # 1. every shard is missing: one array of 4 tasks, then finalize after it
    stdout, manifest = submit(slurm, demo, out_root, logs)
    assert manifest["shards"] == [0, 1, 2, 3], stdout
    array = manifest["array_job_id"]
    tasks = slurm_records(slurm, array)
    assert sorted(int(r["ArrayTaskId"]) for r in tasks) == [0, 1, 2, 3]
    assert {r["JobState"] for r in tasks} == {"COMPLETED"}
    finalize = slurm_records(slurm, manifest["finalize_job_id"])
    assert finalize[0]["JobState"] == "COMPLETED"
    submission = (logs / "extract-cpu_default-val" / f"{manifest['finalize_job_id']}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{array}" in submission
    assert shard_digests(shard_dir) == shard_digests(local_run)
    assert (shard_dir / INDEX_NAME).read_bytes() == (local_run / INDEX_NAME).read_bytes()

    # 2. lose shard 2 (file + done-marker): only shard 2 is submitted, the others stay untouched
    lost = shard_dir / shard_name(2, SHARDS)
    lost.unlink()
    marker_path(lost).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*.safetensors")}
    stdout, manifest = submit(slurm, demo, out_root, logs)
    assert manifest["shards"] == [2], stdout
    assert list(manifest["tasks"].values()) == [2]
    records = slurm_records(slurm, manifest["array_job_id"])
    assert len(records) == 1 and records[0]["JobState"] == "COMPLETED"
    assert f"shard_index=2 num_shards={SHARDS}" in Path(records[0]["StdOut"]).read_text()
    assert {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*.safetensors") if p != lost} == kept
    assert shard_digests(shard_dir) == shard_digests(local_run)
    assert (shard_dir / INDEX_NAME).read_bytes() == (local_run / INDEX_NAME).read_bytes()

    # 3. nothing left: no job at all
    stdout, manifest = submit(slurm, demo, out_root, logs, wait=False)
    assert manifest is None and "nothing to submit" in stdout
    assert slurm.queued() == []
