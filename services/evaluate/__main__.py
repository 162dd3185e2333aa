"""`python -m services.evaluate [evaluate|compare] --config FILE [key=value ...]` (services/evaluate/verbs.py)."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local packages/folders only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from services.evaluate.verbs import DEFAULT_VERB, VERBS  # noqa: E402
from shared.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_cli("evaluate", VERBS, sys.argv[1:] if argv is None else argv, default=DEFAULT_VERB)


if __name__ == "__main__":
    sys.exit(main())
