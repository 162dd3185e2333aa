"""`python -m services.cluster submit|render --config configs/cluster/<name>.yaml [key=value ...]` (verbs.py)."""
import sys

from services.cluster.verbs import VERBS
from shared.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("cluster", VERBS, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
