"""BLEU (nltk + sacreBLEU), ROUGE-L, METEOR, CIDEr-D: hand-computed cases and direct calls of each library."""
import math

import numpy as np
import pytest

from services.evaluate import textmetrics as tm
from services.evaluate.aggregate import ItemMetric

HYPS = ["a red circle", "yes", "the shape is red", "", "No, it is a blue square.", "yes"]
REFS = ["a red square", "yes", "red", "green", "no it is a small blue square", "no"]


def _random_corpus(n=60, seed=0):
    rng = np.random.default_rng(seed)
    vocab = "a red blue green circle square triangle yes no it is the shape color big small".split()
    make = lambda: " ".join(rng.choice(vocab, size=rng.integers(0, 7)))  # noqa: E731
    return [make() for _ in range(n)], [make() or "yes" for _ in range(n)]


def test_tokenisation_is_lowercase_wordpunct():
    assert tm.tokenize("The light is RED.") == ["the", "light", "is", "red", "."]


def test_bleu_hand_computed_sentence():
    m = tm.bleu_metrics([tm.tokenize("the red circle is big")], [tm.tokenize("the red circle is small")], 0.1)
    # clipped precisions 4/5, 3/4, 2/3, 1/2; equal lengths -> brevity penalty 1
    assert m[0].value() == pytest.approx(4 / 5)
    assert m[3].value() == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_bleu_hand_computed_corpus_counts_like_nltk():
    hyps, refs = [["a", "red", "circle"], ["yes"]], [["a", "red", "square"], ["yes"]]
    bleu2 = tm.bleu_metrics(hyps, refs, 0.1)[1].value()
    # corpus sums: unigrams (2+1)/(3+1); bigrams (1+0)/(2+1): nltk counts a sentence without bigrams as 0/1
    assert bleu2 == pytest.approx(math.sqrt(3 / 4 * 1 / 3))


def test_bleu_equals_nltk_corpus_bleu_on_corpora_and_subsets():
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    hyps, refs = _random_corpus()
    ht, rt = [tm.tokenize(h) for h in hyps], [tm.tokenize(r) for r in refs]
    metrics = tm.bleu_metrics(ht, rt, 0.1)
    weights = [(1.0,), (0.5, 0.5), (1 / 3,) * 3, (0.25,) * 4]
    for mask in (None, np.arange(60) % 3 == 0, np.arange(60) < 7):
        idx = range(60) if mask is None else np.flatnonzero(mask)
        expected = corpus_bleu([[rt[i]] for i in idx], [ht[i] for i in idx], weights=weights,
                               smoothing_function=SmoothingFunction(epsilon=0.1).method1)
        assert [m.value(mask) for m in metrics] == pytest.approx(expected, abs=1e-12)


def test_sacrebleu_hand_computed_and_direct_call():
    import sacrebleu

    got = tm.sacrebleu_score(["the red circle is big"], ["the red circle is small"], lowercase=True)
    assert got["score"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)
    direct = sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True)  # one reference stream: [[r1, r2, ...]]
    assert tm.sacrebleu_score(HYPS, REFS, lowercase=True)["score"] == pytest.approx(direct.score / 100)
    assert "nrefs:1" in got["signature"] and "case:lc" in got["signature"]


def test_rouge_l_hand_computed_and_direct_call():
    from rouge_score import rouge_scorer

    got = tm.rouge_l(["a red circle", "the shape is red"], ["a red square", "red"], use_stemmer=True)
    assert got[0] == pytest.approx(2 / 3)  # LCS 2 of 3 and 3 tokens
    assert got[1] == pytest.approx(2 * (1 / 4) * 1 / (1 / 4 + 1))  # LCS 1: P 1/4, R 1
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    direct = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS)]
    assert tm.rouge_l(HYPS, REFS, use_stemmer=True).tolist() == pytest.approx(direct)


def test_meteor_hand_computed_and_direct_call():
    from nltk.translate.meteor_score import meteor_score

    got = tm.meteor([["a", "red", "circle"]], [["a", "red", "square"]])[0]
    # 2 exact matches in 1 chunk: P = R = 2/3, Fmean = PR / (0.9 P + 0.1 R) = 2/3, penalty 0.5 (1/2)^3
    assert got == pytest.approx(2 / 3 * (1 - 0.5 * 0.5**3))
    ht, rt = [tm.tokenize(h) for h in HYPS], [tm.tokenize(r) for r in REFS]
    direct = [meteor_score([r], h) for h, r in zip(ht, rt)]
    assert tm.meteor(ht, rt).tolist() == pytest.approx(direct)


def test_meteor_without_wordnet_fails_with_the_fix(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(tm.NltkDataError, match="make setup"):
        tm.meteor([["a"]], [["a"]])


def test_cider_d_hand_computed_and_direct_call():
    from pycocoevalcap.cider.cider import Cider

    got = tm.cider_d([["a", "b"], ["x", "y"]], [["a", "b"], ["c", "d"]])
    # item 1: idf of each 1-/2-gram = log(2/1); cosine 1 for n = 1, 2 and 0 for n = 3, 4 -> mean 0.5, x10 -> 5
    assert got.tolist() == pytest.approx([5.0, 0.0])
    hyps, refs = _random_corpus(seed=3)
    ht, rt = [tm.tokenize(h) for h in hyps], [tm.tokenize(r) for r in refs]
    _, direct = Cider().compute_score({i: [" ".join(r)] for i, r in enumerate(rt)},
                                      {i: [" ".join(h)] for i, h in enumerate(ht)})
    assert tm.cider_d(ht, rt).tolist() == pytest.approx(list(direct))


def test_text_metrics_perfect_answers():
    metrics = {m.name: m for m in tm.text_metrics(["a red circle", "yes"], ["a red circle", "yes"], 0.1, True)}
    assert metrics["bleu1"].value() == pytest.approx(1.0)
    assert metrics["rouge_l"].value() == pytest.approx(1.0)
    assert all(isinstance(m, ItemMetric) for m in metrics.values())
