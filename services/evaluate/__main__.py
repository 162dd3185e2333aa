"""python -m services.evaluate --config configs/evaluate/default.yaml predictions=... data=... [dense=...] out=...
python -m services.evaluate compare outputs/<runA>/eval outputs/<runB>/eval [more runs] [--out dir]
"""
from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local packages/folders only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from shared.config import ConfigError, load_config, save_config, split_cli  # noqa: E402

USAGE = __doc__


def _compare(words: list[str], config: str | None, overrides: list[str]) -> int:
    from services.evaluate.compare import compare
    from services.evaluate.config import CompareConfig

    runs, out = [], None
    it = iter(words)
    for word in it:
        if word == "--out":
            out = next(it, None)
            if out is None:
                raise ConfigError("--out needs a folder")
        elif word.startswith("--out="):
            out = word.split("=", 1)[1]
        elif word.startswith("-"):
            raise ConfigError(f"unknown option {word}\n{USAGE}")
        else:
            runs.append(word)
    cfg = load_config(CompareConfig, config, overrides)
    cfg.runs, cfg.out = runs or cfg.runs, out or cfg.out  # set directly: paths need no YAML quoting
    result = compare(cfg)
    save_config(cfg, result["out"])
    print(open(os.path.join(result["out"], "compare.md")).read())
    print(f"compare: wrote {result['out']}/compare.md, compare.json, compare.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    from shared.runlog import setup_logging

    setup_logging()
    config, overrides, words = split_cli(sys.argv[1:] if argv is None else argv)
    if words and words[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if words and words[0] == "compare":
        return _compare(words[1:], config, overrides)
    if words and words[0] != "evaluate":
        raise ConfigError(f"unknown verb {words[0]!r}\n{USAGE}")
    from services.evaluate.config import EvaluateConfig
    from services.evaluate.evaluator import evaluate

    cfg = load_config(EvaluateConfig, config, overrides)
    report = evaluate(cfg)
    logging.getLogger("services.evaluate").info("report: %s/report.md (%s s)", cfg.out, report["seconds"])
    headline = open(os.path.join(cfg.out, "report.md")).read().split("\n## Counts")[0]
    print(f"{headline}\nfull report: {cfg.out}/report.md (+ report.json, plots)")
    return 0


def _input_errors() -> tuple[type[Exception], ...]:
    """Errors caused by inputs/config: shown as one clear line; anything else keeps its traceback."""
    from services.evaluate.align import PredictionError
    from services.evaluate.bertscore import BertScoreError
    from services.evaluate.compare import CompareError
    from services.evaluate.ranking import RankingError
    from services.evaluate.textmetrics import NltkDataError
    from shared.visdial import VisDialError

    return ConfigError, PredictionError, VisDialError, BertScoreError, CompareError, RankingError, NltkDataError


if __name__ == "__main__":
    try:
        sys.exit(main())
    except _input_errors() as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        sys.exit(2)
