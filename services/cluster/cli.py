"""Command line of the cluster launcher; `python -m services.cluster --help` shows it.

    python -m services.cluster submit extract --config configs/extract/imagebind_huge.yaml --num-shards 64 \
        --partition gpu --gpus-per-node 1 [--container vdmem-extract.sif] [--python PATH] [--wait] [split=val ...]
    python -m services.cluster submit train --verb finetune --config configs/train/gemma3_4b_reminder_qlora.yaml \
        --partition gpu --gpus-per-node 1 --timeout-min 240
    python -m services.cluster render extract|train ... --out DIR      # plain sbatch scripts, no submitit needed

    python -m services.cluster submit --config configs/cluster/imagebind_val_gpu.yaml   # a whole submission in a YAML

`key=value` words are overrides of the *stage's* config, passed to every job unchanged (after the YAML's
stage_overrides). Flags override the cluster config (`--cluster <yaml>`, or the --config YAML in the second form).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from services.cluster.config import JOBS, STAGE_ENVS, ClusterConfig
from shared.config import ConfigError, load_config

# flag -> ClusterConfig key it overrides
FLAG_KEYS = {
    "num_shards": "num_shards", "array_parallelism": "array_parallelism", "partition": "job.partition",
    "gpus_per_node": "job.gpus_per_node", "cpus_per_task": "job.cpus_per_task", "mem_gb": "job.mem_gb",
    "timeout_min": "job.timeout_min", "account": "job.account", "qos": "job.qos", "constraint": "job.constraint",
    "container": "container", "python": "python", "logs_dir": "logs_dir",
}
STAGES = tuple(STAGE_ENVS)
# the finalize job runs where the array runs unless configs/cluster/<name>.yaml says otherwise
INHERITED = ("partition", "account", "qos")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=sorted(JOBS), help="submit through submitit, or render sbatch scripts")
    parser.add_argument("words", nargs="*", metavar="[extract|train] key=value",
                        help="the stage (omit it when --config is a configs/cluster/*.yaml that names its stage), "
                             "then overrides of the stage's config")
    parser.add_argument("--config", required=True,
                        help="the stage's YAML (configs/extract/..., configs/train/...), or a configs/cluster/*.yaml")
    parser.add_argument("--cluster", default=None, help="with a stage: cluster settings YAML (configs/cluster/*.yaml)")
    parser.add_argument("--verb", dest="train_verb", default=None,
                        help="train: which services.train verb (bridge, finetune, infer, ...); default bridge")
    parser.add_argument("--num-shards", type=int)
    parser.add_argument("--array-parallelism", type=int, help="most array tasks running at once")
    parser.add_argument("--partition")
    parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("--cpus-per-task", type=int)
    parser.add_argument("--mem-gb", type=int)
    parser.add_argument("--timeout-min", type=int)
    parser.add_argument("--account")
    parser.add_argument("--qos")
    parser.add_argument("--constraint")
    parser.add_argument("--container", help="Apptainer image (.sif) to run the stage in")
    parser.add_argument("--python", help="interpreter on the nodes (default: the stage's venv, `python` in a container)")
    parser.add_argument("--logs-dir", help="where submitit logs, sbatch files and manifests go (outputs/cluster)")
    parser.add_argument("--wait", action="store_true", help="submit: block until the jobs end; exit 1 if one failed")
    parser.add_argument("--dry-run", action="store_true", help="submit: print the plan and commands, submit nothing")
    parser.add_argument("--out", default=None, help="render: folder for the sbatch scripts (default <logs-dir>/sbatch)")
    return parser


@dataclass
class Submission:
    """What to run (stage, its config, verb, overrides) and where (the cluster config)."""
    verb: str  # submit | render
    stage: str
    stage_config: str
    train_verb: str
    overrides: list[str]
    cluster: ClusterConfig


def cluster_config(args: argparse.Namespace, path: str | None) -> ClusterConfig:
    overrides = [f"{key}={json.dumps(getattr(args, flag))}" for flag, key in FLAG_KEYS.items()
                 if getattr(args, flag) is not None]
    cfg = load_config(ClusterConfig, path, overrides)
    for name in INHERITED:
        if getattr(cfg.finalize, name) is None:
            setattr(cfg.finalize, name, getattr(cfg.job, name))
    return cfg


def parse(argv: list[str]) -> tuple[argparse.Namespace, Submission]:
    args = build_parser().parse_intermixed_args(argv)
    words = list(args.words)
    args.stage = words.pop(0) if words and "=" not in words[0] else None
    if args.stage not in (None, *STAGES):
        raise ConfigError(f"unknown stage {args.stage!r}; choose one of {list(STAGES)}")
    args.overrides = words
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not a key=value override of the stage's config (flags start with --)")
    if args.stage:  # --config is the stage's YAML
        cfg = cluster_config(args, args.cluster)
        stage, stage_config = args.stage, args.config
    else:  # --config is a complete cluster YAML
        if args.cluster:
            raise ConfigError("--cluster goes with a stage (`submit extract --config <stage yaml> --cluster ...`); "
                              "without a stage, --config is the cluster YAML itself")
        try:
            cfg = cluster_config(args, args.config)
        except ConfigError as e:
            raise ConfigError(f"{e}\n(without a stage word, --config must be a configs/cluster/*.yaml; for a stage's own "
                              f"YAML name the stage: `submit extract --config {args.config}`)") from None
        if cfg.stage is None or cfg.stage_config is None:
            raise ConfigError(f"{args.config}: names no stage/stage_config; give the stage on the command line, "
                              "e.g. `submit extract --config configs/extract/imagebind_huge.yaml --cluster "
                              f"{args.config}`")
        stage, stage_config = cfg.stage, cfg.stage_config
    train_verb = args.train_verb or cfg.stage_verb or "bridge"
    return args, Submission(args.verb, stage, stage_config, train_verb, cfg.stage_overrides + args.overrides, cfg)
