"""`python -m services.generate gen_base|gen_reason|gen_eval --config configs/generate/<job>.yaml [a.b=value ...]`."""
from __future__ import annotations

import sys

from services.generate.config import JOBS, VERBS
from shared.config import ConfigError, load_config, split_cli


def main(argv: list[str]) -> int:
    from shared.runlog import setup_logging

    config, overrides, words = split_cli(argv)
    if len(words) != 1 or words[0] not in JOBS:
        print(f"usage: python -m services.generate {{{'|'.join(VERBS)}}} --config <yaml> [key=value ...]",
              file=sys.stderr)
        return 2
    verb = words[0]
    try:
        cfg = load_config(JOBS[verb], config, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    setup_logging()
    from services.generate.backends import GenerationError
    from services.generate.run import run

    try:
        summary = run(verb, cfg)
    except (GenerationError, ValueError) as e:  # our errors carry the file/place/fix in their message
        print(f"{verb} failed: {e}", file=sys.stderr)
        return 1
    print(summary.line(verb))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
