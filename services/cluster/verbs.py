"""The cluster launcher's verbs (`python -m services.cluster <verb> --config FILE key=value ...`; shared/cli.py).

The launcher runs in the train environment (submitit is pinned there) and only reads the other stages' verb
registries and config classes, to validate a submission on the login node.
"""
from __future__ import annotations

from services.cluster.config import ClusterJobConfig
from shared.cli import Verb

VERBS = {
    "submit": Verb(ClusterJobConfig, "services.cluster.launch:submit",
                   "submit a stage to Slurm through submitit (extraction: an array over the missing shards)"),
    "render": Verb(ClusterJobConfig, "services.cluster.launch:render",
                   "write the same jobs as plain sbatch scripts, for clusters without submitit"),
}
