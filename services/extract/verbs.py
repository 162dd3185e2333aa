"""The extract service's verbs (`python -m services.extract [verb] --config FILE key=value ...`; shared/cli.py)."""
from __future__ import annotations

from services.extract.config import ExtractConfig
from shared.cli import Verb

VERBS = {
    "extract": Verb(ExtractConfig, "services.extract.shard_folder:run_extract",
                    "embed a split's images and texts into checksummed safetensors shards (+ index.json)"),
    "finalize": Verb(ExtractConfig, "services.extract.shard_folder:run_finalize",
                     "build index.json once every shard of the split is complete"),
    "verify": Verb(ExtractConfig, "services.extract.shard_folder:run_verify",
                   "re-hash every shard of the split against its done-marker and print a table"),
}
DEFAULT_VERB = "extract"  # `python -m services.extract --config ...` embeds
