"""Memory scoring: each component points the right way, normalisation edge cases, retrieval updates, rendering."""
import numpy as np
import pytest

from shared.memory import MemoryConfig, MemoryStore, ScoreWeights
from shared.memory._arrays import min_max, top_k_indices
from shared.memory._text import IdfTable, content_words, picture_refs, question_type
from shared.reminder import parse_reminder, render_reminder

ONLY = {name: ScoreWeights(**{n: float(n == name) for n in ("recency", "frequency", "saliency", "relevance")})
        for name in ("recency", "frequency", "saliency", "relevance")}


def _store(weights="relevance", **config):
    return MemoryStore(MemoryConfig(weights=ONLY[weights], **config))


def _unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_newer_memories_score_higher_recency_and_half_life_sets_the_decay():
    store = _store("recency", half_life=2.0)
    for turn in (1, 3, 5):
        store.add(f"question {turn}?", "red", turn)
    raw = store.recency(6, np.arange(3))
    assert raw[2] > raw[1] > raw[0]
    assert raw[1] == pytest.approx(0.5 * raw[2])  # two turns older = one half-life
    assert [m.turn for m in store.retrieve("anything", 3, now=6)] == [5, 3, 1]


def test_very_old_memories_stay_clear_of_float32_subnormals():
    """Ages past 64 half-lives count as 64 (subnormals are ~20x slower on x86); the order of recent ones stands."""
    store = _store("recency", half_life=1.0)
    store.add_batch(["q?"] * 4, ["a"] * 4, [1, 500, 990, 999])
    raw = store.recency(1000, slice(0, 4))
    assert raw.tolist() == [2.0 ** -64, 2.0 ** -64, 2.0 ** -10, 0.5]
    assert [m.turn for m in store.retrieve("q", 2, now=1000)] == [999, 990]


def test_recency_counts_from_last_access_and_recalls_stretch_the_half_life():
    store = _store("recency", half_life=1.0, recall_strength=1.0)
    store.add("old?", "red", 1)
    store.add("new?", "blue", 4)
    store.retrieve("x", 1, now=5, candidates=np.array([0]))  # recalling turn 1 at time 5 refreshes it
    assert store.recency(6, np.arange(2))[0] > store.recency(6, np.arange(2))[1]
    assert store.memory(0).last_access == 5 and store.memory(0).access_count == 1
    created = _store("recency", half_life=1.0, recency_from="created")
    created.add("old?", "red", 1)
    created.add("new?", "blue", 4)
    created.retrieve("x", 1, now=5, candidates=np.array([0]))
    assert created.recency(6, np.arange(2))[0] < created.recency(6, np.arange(2))[1]


def test_more_accessed_or_referenced_memories_score_higher_frequency():
    store = _store("frequency", update_on_retrieve=True)
    for turn, answer in enumerate(("red", "circle", "blue"), 1):
        store.add("what is it?", answer, turn)
    store.retrieve("x", 1, now=4, candidates=np.array([1]))
    store.retrieve("x", 1, now=5, candidates=np.array([1]))
    assert np.argmax(store.frequency(np.arange(3))) == 1
    referenced = store.note_references("is the red one still there?")
    assert referenced.tolist() == [0]
    freq = store.frequency(np.arange(3))
    assert freq[1] > freq[0] > freq[2]
    frozen = _store("frequency", update_on_retrieve=False)
    frozen.add("q?", "a", 1)
    frozen.retrieve("q", 1, now=2)
    assert frozen.memory(0).access_count == 0


def test_references_by_picture_number():
    store = _store("frequency")
    store.add("what color is the shape?", "red", 1, image_id=10)
    store.add("what color is the shape?", "blue", 2, image_id=20)
    assert store.note_references("what did the first picture show?").tolist() == [0]
    assert store.note_references("and the previous picture?", current_picture=3).tolist() == [1]


def test_informative_answers_score_higher_saliency():
    idf = IdfTable.fit(["yes", "no", "yes", "red", "circle", "yes", "no", "shape", "shape", "shape"])
    store = MemoryStore(MemoryConfig(weights=ONLY["saliency"]), idf=idf)
    store.add("is there a shape?", "yes", 1)
    store.add("what shape is it?", "shape", 2)
    store.add("what color is the shape?", "crimson", 3)
    sal = store.saliency(np.arange(3))
    assert sal[2] > sal[1] > sal[0]
    assert store.retrieve("x", 1, now=4)[0].turn == 3


def test_llm_rating_hook_mixes_into_saliency():
    rating = {"a": 0.0, "b": 1.0}
    store = MemoryStore(MemoryConfig(weights=ONLY["saliency"], llm_saliency_weight=1.0),
                        rate_saliency=lambda q, a: rating[a])
    store.add("what color?", "a", 1)
    store.add("is it?", "b", 2)
    assert store.saliency(np.arange(2)).tolist() == [0.0, 1.0]


def test_similar_memories_score_higher_relevance_with_embeddings():
    store = _store("relevance", relevance_on="question")
    emb = np.stack([_unit(1, 0, 0), _unit(1, 1, 0), _unit(0, 0, 1)])
    store.add_batch(["a?", "b?", "c?"], ["x", "y", "z"], [1, 2, 3], question_embeddings=emb * 3)  # scale ignored
    rel = store.relevance("q", np.arange(3), query_embedding=_unit(1, 0.1, 0))
    assert rel[0] > rel[1] > rel[2]
    assert rel[0] == pytest.approx(float(_unit(1, 0, 0) @ _unit(1, 0.1, 0)), abs=1e-6)
    assert [m.turn for m in store.retrieve("q", 2, now=4, query_embedding=_unit(0, 0.2, 1))] == [3, 2]


def test_relevance_both_takes_the_better_of_question_and_answer():
    store = _store("relevance", relevance_on="both")
    store.add_batch(["a?", "b?"], ["x", "y"], [1, 2], question_embeddings=np.stack([_unit(1, 0), _unit(0, 1)]),
                    answer_embeddings=np.stack([_unit(0, 1), _unit(0, 1)]))
    assert store.relevance("q", np.arange(2), _unit(0, 1)).tolist() == pytest.approx([1.0, 1.0])


def test_lexical_relevance_fallback_and_picture_bonus():
    store = _store("relevance")
    store.add("what color is the shape?", "red", 1, image_id=1)
    store.add("what shape is in the image?", "circle", 2, image_id=1)
    store.add("is there a triangle?", "no", 3, image_id=2)
    rel = store.relevance("what color was it?", np.arange(3))
    assert rel[0] > 0 and rel[1] == 0 and rel[2] == 0
    with_picture = store.relevance("what was in the second picture?", np.arange(3))
    assert with_picture[2] > with_picture[0]
    with pytest.raises(ValueError, match="no embeddings"):
        store.relevance("q", np.arange(3), query_embedding=_unit(1, 0))


def test_min_max_edge_cases():
    assert min_max(np.array([3.0, 3.0, 3.0])).tolist() == [0.0, 0.0, 0.0]
    assert min_max(np.array([7.0])).tolist() == [0.0]
    assert min_max(np.array([])).size == 0
    assert min_max(np.array([1.0, 2.0, 5.0])).tolist() == pytest.approx([0.0, 0.25, 1.0])
    single = _store("recency")
    single.add("q?", "a", 1)
    result = single.retrieve("q", 5, now=3)
    assert len(result) == 1 and result[0].score == 0.0


def test_weighted_sum_and_top_k_ties():
    store = MemoryStore(MemoryConfig(weights=ScoreWeights(recency=2.0, frequency=0, saliency=0, relevance=1.0)))
    store.add("what color is the shape?", "red", 1)
    store.add("is there a shape?", "yes", 2)
    scores = store.score("what color?", now=3)
    assert set(scores.components) == {"recency", "relevance"}
    assert scores.total.tolist() == pytest.approx([1.0, 2.0])
    assert top_k_indices(np.array([1.0, 3.0, 3.0, 3.0, 0.0]), 2).tolist() == [1, 2]
    assert top_k_indices(np.array([1.0, 2.0]), 5).tolist() == [1, 0]
    assert top_k_indices(np.array([1.0]), 0).tolist() == []


def test_bad_embeddings_are_errors_not_zeros():
    store = _store()
    with pytest.raises(ValueError, match="zero or not finite"):
        store.add("q?", "a", 1, question_embedding=np.zeros(4))
    store.add("q?", "a", 1, question_embedding=np.ones(4))
    with pytest.raises(ValueError, match="missing"):
        store.add("q2?", "a", 2)
    with pytest.raises(ValueError, match="5-d"):
        store.add("q2?", "a", 2, question_embedding=np.ones(5))
    with pytest.raises(ValueError, match="answer embeddings given"):
        store.add("q2?", "a", 2, question_embedding=np.ones(4), answer_embedding=np.ones(4))
    assert len(store) == 1 and len(store.q_emb) == 1  # rejected batches leave nothing behind
    with pytest.raises(ValueError, match="query embedding is 3-d"):
        store.relevance("q", np.arange(1), query_embedding=np.ones(3))
    for bad, word in ((np.zeros(4), "zero"), (np.array([1.0, np.nan, 0.0, 0.0]), "not finite")):
        with pytest.raises(ValueError, match=f"query embedding is {word}; re-embed"):
            store.retrieve("q", 1, now=2, query_embedding=bad)
    answers_only = _store("relevance", relevance_on="answer")
    answers_only.add("q?", "a", 1, question_embedding=np.ones(4))
    with pytest.raises(ValueError, match="no answer embeddings"):
        answers_only.relevance("q", np.arange(1), query_embedding=np.ones(4))
    with pytest.raises(ValueError, match="clock is 'seconds'"):
        MemoryStore(MemoryConfig(clock="seconds")).add("q?", "a", 1)


def test_seconds_clock():
    store = MemoryStore(MemoryConfig(weights=ONLY["recency"], clock="seconds", half_life=60.0))
    store.add("q1?", "a", 1, time=1000.0)
    store.add("q2?", "b", 2, time=1060.0)
    assert store.recency(1060.0, np.arange(2)).tolist() == pytest.approx([0.5, 1.0])


def test_retrieved_memories_render_and_parse_back():
    store = _store("recency")
    store.add("what color is the shape?", "red", 1, image_id=5)
    store.add("what shape is it?", "circle", 4, image_id=6)
    retrieved = store.retrieve("x", 2, now=5)
    block = render_reminder(retrieved)
    assert block.splitlines()[1] == "[turn 4] (picture 2) Q: what shape is it? A: circle"
    parsed = parse_reminder(block)
    assert [(p.turn, p.question, p.answer, p.image_note) for p in parsed] == [
        (r.turn, r.question, r.answer, r.image_note) for r in retrieved]


def test_text_features():
    assert content_words("What's the color of the RED shape?") == ["color", "red", "shape"]
    assert question_type("is there a circle?") == "yes_no"
    assert question_type("what color is it?") == "attribute"
    assert question_type("tell me more") == "other"
    assert picture_refs("what shape was in the third picture?") == {3}
    assert picture_refs("in picture 2, and the 1st image?") == {1, 2}
    assert picture_refs("the previous picture", current_picture=1) == set()


def test_idf_table_round_trip(tmp_path):
    table = IdfTable.fit(["red circle", "blue circle", "red square"])
    assert table.idf("blue") > table.idf("circle")
    table.save(tmp_path / "idf.json")
    assert IdfTable.load(tmp_path / "idf.json").doc_freq == table.doc_freq
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError, match="bad.json: not an IDF table"):
        IdfTable.load(tmp_path / "bad.json")


def test_replay_dialog_reminds_only_of_earlier_turns():
    from shared.memory._dialog import replay_dialog
    from shared.visdial import Dialog, Round

    def rnd(i, q, a, image, kind="current", evidence=None):
        return Round(round_id=i, question=q, answer=a, options=None, gt_index=None, image_id=image, kind=kind,
                     evidence_round=evidence)

    dialog = Dialog(image_id=1, caption="", rounds=(
        rnd(1, "what color is the shape?", "crimson", 1), rnd(2, "is there a circle?", "yes", 1),
        rnd(3, "what shape is in the image?", "square", 2), rnd(4, "is it big?", "no", 2),
        rnd(5, "what color was the shape in the first picture?", "crimson", 2, "memory", 1)))
    seen = []
    reminders = replay_dialog(dialog, MemoryConfig(), k=2,
                              before_retrieval=lambda store, r, q, pic: seen.append((r.round_id, len(store), pic)))
    assert seen == [(1, 0, 1), (2, 1, 1), (3, 2, 2), (4, 3, 2), (5, 4, 2)]
    assert reminders[1] == []
    for round_id, memories in reminders.items():
        assert all(m.turn < round_id for m in memories)
    assert reminders[5][0].turn == 1 and reminders[5][0].image_note == "picture 1"
    assert replay_dialog(dialog, MemoryConfig(), k=2, upto_round=3).keys() == {1, 2, 3}


def test_llm_rating_out_of_range_is_rejected_without_side_effects():
    store = MemoryStore(MemoryConfig(llm_saliency_weight=0.5), rate_saliency=lambda q, a: 7.0)
    with pytest.raises(ValueError, match=r"must return \[0, 1\]"):
        store.add("q?", "a", 1)
    assert len(store) == 0 and len(store.turn) == 0
