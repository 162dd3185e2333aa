"""`python -m services.train <verb> --config <yaml> [a.b=value ...]`: each verb's module is imported only when run."""
from __future__ import annotations

import importlib
import sys

VERBS = {
    "bridge": "services.train.bridge_train",
    "infer": "services.train.bridge_infer",
    "prepare-checkpoints": "services.train.checkpoints",
    "finetune": "services.train.finetune",
    "finetune-infer": "services.train.finetune_infer",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in VERBS:
        print(f"usage: python -m services.train {{{'|'.join(VERBS)}}} --config <yaml> [key=value ...]", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
