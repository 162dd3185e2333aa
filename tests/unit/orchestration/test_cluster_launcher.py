"""services.cluster without a cluster: the shard plan, the job commands, the rendered sbatch scripts, the configs.

The real Slurm runs are in tests/cluster/; here every check runs in milliseconds from any environment.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from services.cluster.__main__ import main
from services.cluster.commands import with_resume
from services.cluster.config import ClusterJobConfig
from services.cluster.render import array_spec, fill
from shared.config import ConfigError, load_config
from shared.shards import shard_name, write_shard

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def extract_job(tmp_path) -> list[str]:
    """`--config <a cluster YAML>` submitting the demo extraction as 4 shards."""
    path = tmp_path / "extract_cluster.yaml"
    path.write_text("stage:\n  service: extract\n  config: configs/extract/cpu_default.yaml\n"
                    "cluster:\n  num_shards: 4\n")
    return ["--config", str(path)]


def fake_shard(out_dir: Path, i: int, n: int) -> None:
    """A small but valid shard + done-marker, written by the project's own writer."""
    rows, rounds = 2, 3
    tensors = {"image_ids": np.array([10 * i, 10 * i + 1], dtype=np.int64),
               "num_rounds": np.full(rows, rounds, dtype=np.int64),
               "image": np.ones((rows, 4), np.float16), "question": np.ones((rows, rounds, 2), np.float16)}
    meta = {"encoder_id": "cpu_default", "checkpoint_sha256": "-", "image_dim": 4, "text_dim": 2,
            "dtype": "float16", "preprocessing": {}, "code_version": "test", "split": "val", "shard_index": i,
            "num_shards": n}
    write_shard(out_dir / shard_name(i, n), tensors, meta)


def run_cli(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [shlex.split(line.removeprefix("would run: ")) for line in out.splitlines()
                  if line.startswith("would run: ")], out + err


def test_only_shards_without_a_done_marker_are_planned(tmp_path, capsys, extract_job):
    shard_dir = tmp_path / "cpu_default" / "val"
    fake_shard(shard_dir, 0, 4)
    fake_shard(shard_dir, 2, 4)
    (shard_dir / shard_name(1, 4)).write_bytes(b"half a shard")  # no marker: incomplete, so planned again
    code, jobs, out = run_cli(capsys, "submit", *extract_job, "dry_run=true", "stage.overrides.split=val",
                              f"stage.overrides.out_root={tmp_path}")
    assert code == 0, out
    assert "2/4 shards complete, missing [1, 3]" in out
    shard_jobs, finalize = jobs[:-1], jobs[-1]
    assert [j[-2:] for j in shard_jobs] == [["shard_index=1", "num_shards=4"], ["shard_index=3", "num_shards=4"]]
    assert shard_jobs[0][:3] == [str(ROOT / ".venvs" / "extract" / "bin" / "python"), "-m", "services.extract"]
    assert finalize[3] == "finalize" and finalize[-1] == "num_shards=4"
    assert all(f"out_root={tmp_path}" in j and "split=val" in j for j in jobs)


def test_container_wraps_every_job_and_gpus_add_nv(capsys, tmp_path, extract_job):
    code, jobs, out = run_cli(capsys, "submit", *extract_job, "dry_run=true", "cluster.container=vdmem-extract.sif",
                              "cluster.job.gpus_per_node=1", f"stage.overrides.out_root={tmp_path}")
    assert code == 0, out
    assert jobs[0][:6] == ["apptainer", "exec", "--nv", "vdmem-extract.sif", "python", "-m"]
    assert jobs[-1][:4] == ["apptainer", "exec", "vdmem-extract.sif", "python"]  # finalize needs no GPU
    code, jobs, _ = run_cli(capsys, "submit", *extract_job, "dry_run=true", "cluster.python=/opt/env/bin/python",
                            f"stage.overrides.out_root={tmp_path}")
    assert jobs[0][0] == "/opt/env/bin/python"


@pytest.mark.parametrize(("args", "message"), [
    (["stage.overrides.shard_index=3"], "the launcher sets shard_index"),
    (["stage.overrides.encoder.nmae=x"], "unknown key encoder.nmae"),
    (["cluster.job.cpus_per_task=0"], "cpus_per_task >= 1"),
    (["stage.service=extrct"], "'extrct' is not one of ['extract', 'train']"),
    (["stage.config=configs/extract/absent.yaml"], "configs/extract/absent.yaml does not exist"),
    (["stage.service=train", "stage.verb=prepare-weights", "stage.config=configs/train/weights_demo.yaml"],
     "the requeued job would fail"),
    (["stage.service=train", "stage.verb=bridg", "stage.config=configs/train/bridge_demo.yaml"],
     "stage.verb='bridg' is not a verb of services.train"),
    (["--partition", "gpu"], "unknown option --partition"),
])
def test_bad_requests_fail_before_anything_is_submitted(capsys, extract_job, args, message):
    code, jobs, out = run_cli(capsys, "submit", *extract_job, "dry_run=true", *args)
    assert code == 2 and message in out and jobs == [], out
    assert len(out.strip().splitlines()) == 1 and "; fix: " in out  # one line with the fix, no traceback


def test_rendered_extract_scripts_are_valid_bash(tmp_path, capsys, extract_job):
    shard_dir = tmp_path / "emb" / "cpu_default" / "val"
    fake_shard(shard_dir, 0, 4)
    fake_shard(shard_dir, 2, 4)
    code, _, out = run_cli(capsys, "render", *extract_job, "cluster.job.partition=gpu", "cluster.job.gpus_per_node=1",
                           "cluster.job.mem_gb=32", f"out={tmp_path / 'sbatch'}", "stage.overrides.split=val",
                           f"stage.overrides.out_root={tmp_path / 'emb'}")
    assert code == 0, out
    array = (tmp_path / "sbatch" / "extract_array.sbatch").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=32G", f"cd {ROOT}"):
        assert line in array.splitlines()
    assert array.rstrip().endswith('"shard_index=${SLURM_ARRAY_TASK_ID}" num_shards=4')
    assert re.search(r"sbatch --parsable --array=1,3%2 \S+extract_array\.sbatch", out)  # array index = shard index
    assert "--dependency=afterok:" in out
    finalize = (tmp_path / "sbatch" / "finalize.sbatch").read_text()
    assert "--gpus-per-node" not in finalize and "services.extract finalize" in finalize
    for script in ("extract_array.sbatch", "finalize.sbatch"):
        subprocess.run(["bash", "-n", str(tmp_path / "sbatch" / script)], check=True)  # bash's own parser


def test_rendered_train_script_requeues_with_resume(tmp_path, capsys):
    code, _, out = run_cli(capsys, "render", "--config", "configs/cluster/finetune_gemma3_gpu.yaml",
                           f"out={tmp_path}")
    assert code == 0, out
    script = (tmp_path / "train.sbatch").read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@300", "#SBATCH --gpus-per-node=1",
                 "trap requeue USR1"):
        assert line in script.splitlines()
    assert "services.train finetune --config configs/train/gemma3_4b_reminder_qlora.yaml" in script
    assert "resume=(resume=true)" in script
    subprocess.run(["bash", "-n", str(tmp_path / "train.sbatch")], check=True)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "cluster").glob("*.yaml")), ids=lambda p: p.name)
def test_every_cluster_config_plans_a_submission(path, capsys, tmp_path):
    code, jobs, out = run_cli(capsys, "submit", "--config", str(path.relative_to(ROOT)), "dry_run=true",
                              f"cluster.logs_dir={tmp_path}")
    assert code == 0 and jobs, out
    cfg = load_config(ClusterJobConfig, path)
    assert (ROOT / cfg.stage.config).is_file()


def test_array_spec_collapses_runs_and_throttles():
    assert array_spec([0, 1, 2, 3], 64) == "0-3%4"
    assert array_spec([3, 1], 64) == "1,3%2"
    assert array_spec([0, 1, 2, 5, 7, 8], 2) == "0-2,5,7-8%2"


def test_template_placeholders_must_match_exactly():
    assert fill("a {{x}} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(KeyError):
        fill("a {{x}} {{y}}", {"x": "1"})
    with pytest.raises(KeyError):
        fill("a {{x}}", {"x": "1", "unused": "2"})


def test_resume_override_is_added_once():
    assert with_resume(["python", "-m", "services.train", "bridge", "resume=false"], "resume=true") == [
        "python", "-m", "services.train", "bridge", "resume=true"]
    assert with_resume(with_resume(["x"], "resume=true"), "resume=true") == ["x", "resume=true"]


def test_cluster_config_of_the_old_shape_says_where_the_keys_went(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage_config: configs/extract/cpu_default.yaml\n")
    with pytest.raises(ConfigError, match="two sections now: stage .* and cluster"):
        load_config(ClusterJobConfig, path)
    path.write_text("cluster:\n  num_shards: 2\n")
    with pytest.raises(ConfigError, match="stage.config is required"):
        load_config(ClusterJobConfig, path)


def test_stage_overrides_become_key_value_words():
    from services.cluster.config import StageSettings

    stage = StageSettings(config="x.yaml", overrides={"split": "val", "encoder": {"image_size": 96},
                                                     "texts": {"answers": False}, "binds": ["a", "b"]})
    assert stage.override_args() == ["split=val", "encoder.image_size=96", "texts.answers=false", "binds=[a, b]"]
