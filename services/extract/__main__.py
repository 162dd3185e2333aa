"""`python -m services.extract [extract|finalize|verify] --config FILE [key=value ...]` (services/extract/verbs.py)."""
import sys

from services.extract.verbs import DEFAULT_VERB, VERBS
from shared.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("extract", VERBS, sys.argv[1:] if argv is None else argv, default=DEFAULT_VERB)


if __name__ == "__main__":
    sys.exit(main())
