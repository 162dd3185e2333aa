"""`python -m services.generate gen-base|gen-reason|gen-eval --config FILE [key=value ...]` (verbs.py)."""
import sys

from services.generate.verbs import RENAMED, VERBS
from shared.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("generate", VERBS, sys.argv[1:] if argv is None else argv, renamed=RENAMED)


if __name__ == "__main__":
    sys.exit(main())
