"""Generation metrics of answers against the round's one ground-truth answer, each from its reference library.

Tokenisation (nltk BLEU, METEOR, CIDEr-D): lowercase, then `nltk.tokenize.wordpunct_tokenize` (regex
`\\w+|[^\\w\\s]+`: words and punctuation runs; needs no nltk data). sacreBLEU and rouge-score tokenise the raw
strings themselves (sacreBLEU '13a' + lowercase; rouge-score lowercases, drops non-alphanumerics, Porter stemmer
on/off from the config). Pure per-pair metrics (METEOR, ROUGE-L) are computed once per distinct (answer, reference)
pair; corpus-level ones (BLEU, CIDEr-D's document frequencies) always see every round.
"""
from __future__ import annotations

from importlib import metadata

import numpy as np

from shared.errors import InputError
from services.evaluate.aggregate import ItemMetric

BLEU_ORDERS = (1, 2, 3, 4)
TOKENISATION = "lowercase + nltk.tokenize.wordpunct_tokenize (\\w+|[^\\w\\s]+)"


class NltkDataError(InputError):
    """nltk data (WordNet) that METEOR needs is not installed."""


def tokenize(text: str) -> list[str]:
    from nltk.tokenize import wordpunct_tokenize

    return wordpunct_tokenize(text.lower())


def require_wordnet() -> None:
    """Fail early, with the fix, when WordNet is missing (nltk's own error suggests a download that cannot work)."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        raise NltkDataError(
            "nltk WordNet data (corpora/wordnet) not found in "
            f"{nltk.data.path}; run `make setup` (installs it into .venvs/evaluate/nltk_data) or "
            "`bash docker/install_nltk_data.sh <dir>` and export NLTK_DATA=<dir>"
        ) from None


def _unique_pairs(hyps: list[str], refs: list[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Distinct (hyp, ref) pairs and, for every input pair, the index of its distinct pair."""
    index: dict[tuple[str, str], int] = {}
    inverse = np.fromiter((index.setdefault(p, len(index)) for p in zip(hyps, refs)), dtype=np.int64, count=len(hyps))
    return list(index), inverse


# ---------------------------------------------------------------- BLEU (nltk, corpus level)
def bleu_stats(hyp_tokens: list[list[str]], ref_tokens: list[list[str]]) -> np.ndarray:
    """Per round: clipped n-gram matches (n=1..4), n-gram totals as nltk counts them, hyp length, ref length.

    nltk's `modified_precision` gives a sentence with no n-grams of order n a denominator of 1 (max(1, count)):
    corpus_bleu sums those, so the same happens here; short answers therefore weigh on the higher orders.
    """
    from nltk.translate.bleu_score import closest_ref_length, modified_precision

    stats = np.zeros((len(hyp_tokens), 10), dtype=np.float64)
    for i, (hyp, ref) in enumerate(zip(hyp_tokens, ref_tokens)):
        for n in BLEU_ORDERS:
            p = modified_precision([ref], hyp, n)
            stats[i, n - 1], stats[i, 4 + n - 1] = p.numerator, p.denominator
        stats[i, 8], stats[i, 9] = len(hyp), closest_ref_length([ref], len(hyp))
    return stats


def bleu_reduce(order: int, epsilon: float):
    """BLEU-`order` (uniform weights) from summed `bleu_stats`, as nltk corpus_bleu with SmoothingFunction.method1."""

    def reduce(sums: np.ndarray, n: int) -> np.ndarray:
        num, den = sums[..., :4], sums[..., 4:8]
        hyp_len, ref_len = sums[..., 8], sums[..., 9]
        precision = np.where(num == 0, epsilon / den, num / den)[..., :order]  # method1: epsilon for zero counts
        with np.errstate(divide="ignore", invalid="ignore"):
            bp = np.where(hyp_len > ref_len, 1.0, np.exp(1.0 - ref_len / hyp_len))
        bp = np.where(hyp_len == 0, 0.0, bp)
        score = bp * np.exp(np.log(precision).mean(axis=-1))
        return np.where(num[..., 0] == 0, 0.0, score)  # nltk: no unigram match -> 0

    return reduce


def bleu_metrics(hyp_tokens: list[list[str]], ref_tokens: list[list[str]], epsilon: float) -> list[ItemMetric]:
    stats = bleu_stats(hyp_tokens, ref_tokens)
    return [ItemMetric(f"bleu{n}", stats, bleu_reduce(n, epsilon)) for n in BLEU_ORDERS]


def sacrebleu_score(hyps: list[str], refs: list[str], lowercase: bool) -> dict:
    """sacreBLEU corpus BLEU; one reference per round, so the references are ONE stream: [[r1, r2, ...]]."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(lowercase=lowercase)
    result = bleu.corpus_score(hyps, [refs])
    return {"score": result.score / 100.0, "signature": str(bleu.get_signature()), "precisions": result.precisions}


# ---------------------------------------------------------------- per-pair metrics
def rouge_l(hyps: list[str], refs: list[str], use_stemmer: bool) -> np.ndarray:
    """ROUGE-L F-measure per round (rouge-score's `RougeScorer(['rougeL']).score(target, prediction)`)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    pairs, inverse = _unique_pairs(hyps, refs)
    unique = np.array([scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in pairs], dtype=np.float64)
    return unique[inverse]


def meteor(hyp_tokens: list[list[str]], ref_tokens: list[list[str]]) -> np.ndarray:
    """METEOR per round: nltk's `meteor_score([reference_tokens], hypothesis_tokens)` (default alpha/beta/gamma)."""
    from nltk.translate.meteor_score import meteor_score

    require_wordnet()
    pairs, inverse = _unique_pairs([" ".join(t) for t in hyp_tokens], [" ".join(t) for t in ref_tokens])
    unique = np.array([meteor_score([r.split()], h.split()) for h, r in pairs], dtype=np.float64)
    return unique[inverse] if len(pairs) else np.zeros(0)


def cider_d(hyp_tokens: list[list[str]], ref_tokens: list[list[str]]) -> np.ndarray:
    """CIDEr-D per round with pycocoevalcap's `Cider` (n=4, sigma=6, clipped, x10) on pre-tokenised text.

    Document frequencies come from all references of the evaluated rounds, so a round's value depends on the corpus;
    with a single round every n-gram has idf log(1/1) = 0 and the score is 0.
    """
    from pycocoevalcap.cider.cider import Cider

    if not hyp_tokens:
        return np.zeros(0)
    gts = {i: [" ".join(ref)] for i, ref in enumerate(ref_tokens)}
    res = {i: [" ".join(hyp)] for i, hyp in enumerate(hyp_tokens)}
    _, scores = Cider().compute_score(gts, res)
    return np.asarray(scores, dtype=np.float64)


def text_metrics(hyps: list[str], refs: list[str], epsilon: float, use_stemmer: bool) -> list[ItemMetric]:
    """All token-based metrics (BLEU-1..4, ROUGE-L, METEOR, CIDEr-D) as ItemMetrics over the same rounds."""
    hyp_tokens, ref_tokens = [tokenize(h) for h in hyps], [tokenize(r) for r in refs]
    return [
        *bleu_metrics(hyp_tokens, ref_tokens, epsilon),
        ItemMetric.mean_of("rouge_l", rouge_l(hyps, refs, use_stemmer)),
        ItemMetric.mean_of("meteor", meteor(hyp_tokens, ref_tokens)),
        ItemMetric.mean_of("cider_d", cider_d(hyp_tokens, ref_tokens)),
    ]


def library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("nltk", "sacrebleu", "rouge-score", "pycocoevalcap")}


def text_method_notes(epsilon: float, use_stemmer: bool) -> dict[str, str]:
    """How each figure was computed, for the report."""
    return {
        "bleu": f"nltk corpus_bleu, uniform weights, tokenisation: {TOKENISATION}; smoothing: "
        f"SmoothingFunction(epsilon={epsilon}).method1 (epsilon added to zero n-gram match counts)",
        "sacrebleu": "sacrebleu BLEU().corpus_score(answers, [references]) on raw text (its own tokeniser)",
        "rouge_l": f"rouge-score RougeScorer(['rougeL'], use_stemmer={use_stemmer}), F-measure, mean over rounds",
        "meteor": f"nltk meteor_score on tokenised text ({TOKENISATION}), WordNet 3.0 synonyms, mean over rounds",
        "cider_d": "pycocoevalcap Cider (CIDEr-D: n=4, sigma=6, clipped counts, x10), idf from all evaluated "
        "references, mean over rounds",
    }

