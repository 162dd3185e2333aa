"""The evaluate service's verbs (`python -m services.evaluate [verb] --config FILE key=value ...`; shared/cli.py)."""
from __future__ import annotations

from services.evaluate.config import CompareConfig, EvaluateConfig
from shared.cli import Verb

VERBS = {
    "evaluate": Verb(EvaluateConfig, "services.evaluate.evaluator:run",
                     "score predictions.jsonl: BERTScore, BLEU, ROUGE-L, METEOR, CIDEr-D, R@k/MRR/NDCG -> report.md"),
    "compare": Verb(CompareConfig, "services.evaluate.compare:run",
                    "a delta table and bar chart of finished evaluations: runs=[outputs/a/eval,outputs/b/eval]"),
}
DEFAULT_VERB = "evaluate"  # `python -m services.evaluate --config ...` evaluates
