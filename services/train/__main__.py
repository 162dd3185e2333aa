"""`python -m services.train <verb> --config FILE [key=value ...]`; the verbs are in services/train/verbs.py."""
import sys

from services.train.verbs import RENAMED, VERBS
from shared.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("train", VERBS, sys.argv[1:] if argv is None else argv, renamed=RENAMED)


if __name__ == "__main__":
    sys.exit(main())
