"""`python -m services.cluster submit|render [extract|train] --config <yaml> [flags] [key=value ...]`.

See services/cluster/cli.py for the flags and docs/CLUSTER.md for the step-by-step cluster path.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from services.cluster import commands
from services.cluster.cli import Submission, parse
from shared.config import ConfigError


def _describe(plan: commands.ExtractPlan) -> str:
    done = plan.num_shards - len(plan.missing)
    return (f"extract {plan.split} -> {plan.out_dir}: {done}/{plan.num_shards} shards complete, "
            f"missing {plan.missing if plan.missing else 'none'}"
            f"{', index.json present' if plan.index_done else ''}")


def _plan(sub: Submission) -> tuple[commands.ExtractPlan | None, list[list[str]]]:
    """Validate the stage config on this machine and list the command of every job that would run."""
    cfg = sub.cluster
    if sub.stage == "extract":
        plan = commands.plan_extract(sub.stage_config, sub.overrides, cfg.num_shards)
        print(_describe(plan))
        argvs = [commands.extract_shard_command(cfg, plan, i) for i in plan.missing]
        return plan, argvs + ([] if plan.index_done else [commands.extract_finalize_command(cfg, plan)])
    commands.validate_train(sub.train_verb, sub.stage_config, sub.overrides, cfg.resume_override)
    config_path = commands.job_path(sub.stage_config)
    return None, [commands.train_command(cfg, sub.train_verb, config_path, sub.overrides)]


def _render(args, sub: Submission, plan: commands.ExtractPlan | None, argvs: list[list[str]]) -> int:
    from services.cluster import render
    out = Path(args.out) if args.out else commands.REPO_ROOT / sub.cluster.logs_dir / "sbatch"
    if plan is not None:
        paths, submit_lines = render.render_extract(sub.cluster, plan, out)
    else:
        name = f"train-{sub.train_verb}-{Path(sub.stage_config).stem}"
        paths, submit_lines = render.render_train(sub.cluster, argvs[0], name, out)
    print("wrote " + " ".join(str(p) for p in paths) + "\nsubmit with:\n" + submit_lines)
    return 0


def _submit(args, sub: Submission, plan: commands.ExtractPlan | None) -> int:
    from services.cluster import submit  # submitit lives in the train environment only
    if plan is not None:
        record = submit.submit_extract(sub.cluster, plan)
        if record["finalize_job_id"] is None:
            print("nothing to submit: every shard and index.json are complete")
            return 0
        if record["array_job_id"]:
            tasks = ", ".join(f"{job}: shard {shard}" for job, shard in record["tasks"].items())
            print(f"submitted {len(record['tasks'])} shard job(s) as {record['array_job_id']} ({tasks})")
        print(f"submitted finalize job {record['finalize_job_id']}"
              f"{' after ' + record['array_job_id'] if record['array_job_id'] else ''}")
    else:
        record = submit.submit_train(sub.cluster, sub.train_verb, commands.job_path(sub.stage_config), sub.overrides)
        print(f"submitted checkpointable training job {record['job_id']}: {shlex.join(record['command'])}")
    print(f"manifest: {record['manifest']}")
    if not args.wait:
        return 0
    ok = submit.wait_for(record["_jobs"])
    print("all jobs succeeded" if ok else "some jobs failed (see above)")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    try:
        args, sub = parse(argv)
        plan, argvs = _plan(sub)
    except (ConfigError, ValueError) as e:  # ConfigError, ShardError and VisDialError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sub.verb == "render":
        return _render(args, sub, plan, argvs)
    if args.dry_run:
        for argv_ in argvs:
            print("would run: " + shlex.join(argv_))
        return 0
    return _submit(args, sub, plan)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
