"""The cluster launcher's verbs: `submit` (submitit) and `render` (plain sbatch scripts) of one stage.

    python -m services.cluster submit --config configs/cluster/imagebind_val_gpu.yaml [dry_run=true] [wait=true]
    python -m services.cluster render --config configs/cluster/imagebind_val_gpu.yaml [out=slurm]

Every key of the cluster YAML is overridable: `stage.overrides.split=train`, `cluster.job.partition=gpu`,
`cluster.num_shards=64`, `cluster.container=vdmem-extract.sif`. docs/CLUSTER.md has the step-by-step path.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from services.cluster import commands
from services.cluster.config import ClusterJobConfig


def _describe(plan: commands.ExtractPlan) -> str:
    done = plan.num_shards - len(plan.missing)
    return (f"extract {plan.split} -> {plan.out_dir}: {done}/{plan.num_shards} shards complete, "
            f"missing {plan.missing if plan.missing else 'none'}"
            f"{', index.json present' if plan.index_done else ''}")


def plan(cfg: ClusterJobConfig) -> tuple[commands.ExtractPlan | None, list[list[str]]]:
    """Validate the stage config on this machine and list the command of every job that would run."""
    stage, cluster = cfg.stage, cfg.cluster
    if stage.service == "extract":
        extract = commands.plan_extract(stage, cluster.num_shards)
        print(_describe(extract))
        argvs = [commands.extract_shard_command(cluster, extract, i) for i in extract.missing]
        return extract, argvs + ([] if extract.index_done else [commands.extract_finalize_command(cluster, extract)])
    commands.validate_train(stage, cluster.resume_override)
    return None, [commands.train_command(cluster, stage)]


def render(cfg: ClusterJobConfig) -> None:
    from services.cluster import render as templates

    extract, argvs = plan(cfg)
    out = Path(cfg.out) if cfg.out else commands.REPO_ROOT / cfg.cluster.logs_dir / "sbatch"
    if extract is not None:
        paths, submit_lines = templates.render_extract(cfg.cluster, extract, out)
    else:
        name = f"train-{cfg.stage.verb_name}-{Path(cfg.stage.config).stem}"
        paths, submit_lines = templates.render_train(cfg.cluster, argvs[0], name, out)
    print("wrote " + " ".join(str(p) for p in paths) + "\nsubmit with:\n" + submit_lines)


def submit(cfg: ClusterJobConfig) -> int:
    extract, argvs = plan(cfg)
    if cfg.dry_run:
        for argv in argvs:
            print("would run: " + shlex.join(argv))
        return 0
    from services.cluster import submit as slurm  # submitit lives in the train environment only

    if extract is not None:
        record = slurm.submit_extract(cfg.cluster, extract)
        if record["finalize_job_id"] is None:
            print("nothing to submit: every shard and index.json are complete")
            return 0
        if record["array_job_id"]:
            tasks = ", ".join(f"{job}: shard {shard}" for job, shard in record["tasks"].items())
            print(f"submitted {len(record['tasks'])} shard job(s) as {record['array_job_id']} ({tasks})")
        print(f"submitted finalize job {record['finalize_job_id']}"
              f"{' after ' + record['array_job_id'] if record['array_job_id'] else ''}")
    else:
        record = slurm.submit_train(cfg.cluster, cfg.stage)
        print(f"submitted checkpointable training job {record['job_id']}: {shlex.join(record['command'])}")
    print(f"manifest: {record['manifest']}")
    if not cfg.wait:
        return 0
    ok = slurm.wait_for(record["_jobs"])
    print("all jobs succeeded" if ok else "some jobs failed (see above)")
    return 0 if ok else 1
