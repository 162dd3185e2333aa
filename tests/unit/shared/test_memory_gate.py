"""The reminder gate (shared/memory/_gate.py): retrieval returns the raw relevance the gate thresholds; explicit
references back fire (earlier picture, turn, time/session, back-pointing words), the picture shown does not; the
threshold is calibrated from labelled rounds; on the demo the gate fires on every memory round and no other."""
import numpy as np
import pytest

from shared.memory import (GATE_REASONS, GateConfig, MemoryConfig, MemoryStore, Retrieved, ScoreWeights,
                           best_relevance, calibrate_min_relevance, dialog_gates, gate_reason, memory_needed,
                           replay_dialog)
from shared.visdial import load_visdial
from tests.demo_artifacts import demo_data

RELEVANCE = ScoreWeights(recency=0.0, frequency=0.0, saliency=0.0, relevance=1.0)


def _memory(relevance: float | None = 0.5) -> list[Retrieved]:
    return [Retrieved(0, 1, "what color is the shape?", "red", None, 1.0, {}, relevance=relevance)]


def _store() -> MemoryStore:
    store = MemoryStore(MemoryConfig())
    store.add_batch(["what color is the shape?", "is there a dog?", "what shape is it?"], ["red", "no", "circle"],
                    [1, 2, 3], image_ids=[7, 7, 8])
    return store


def test_retrieved_carries_the_raw_relevance_not_the_normalised_one():
    store = _store()
    query = "what color is the shape in the first picture?"
    got = store.retrieve(query, 3, now=4, current_picture=2, update=False)
    raw = store.relevance(query, slice(0, 3), current_picture=2)
    assert [r.relevance for r in got] == pytest.approx([float(raw[r.index]) for r in got])
    assert got[0].components["relevance"] == 1.0 and got[0].relevance > 1.0  # picture bonus on top of the words
    assert best_relevance(got) == pytest.approx(float(raw.max()))
    weak = store.retrieve("is the sky blue?", 3, now=4, update=False)
    assert best_relevance(weak) < 0.5 < best_relevance(got)  # comparable across questions, unlike the components
    off = MemoryStore(MemoryConfig(weights=ScoreWeights(relevance=0.0)))
    off.add_batch(["q"], ["a"], [1])
    assert off.retrieve("q", 1, now=2)[0].relevance is None and best_relevance([]) is None


@pytest.mark.parametrize("question, picture, reason", [
    ("what color was the shape in the first picture?", 2, "picture"),
    ("was there a circle in the second image?", 3, "picture"),
    ("what shape was in picture 1?", 2, "picture"),
    ("what was in the previous photo?", 2, "picture"),
    ("what was in the previous photo?", None, "picture"),
    ("what shape is in the second picture?", 2, None),  # the picture shown now
    ("what color is the shape?", 2, None),
    ("what was your last answer?", 1, "turn"),
    ("go back to question 3: was it red?", 1, "turn"),
    ("what did we see two weeks ago?", 1, "time"),
    ("last time we talked, was there a cup?", 1, "time"),
    ("is it sunny today?", 1, None),  # the present is no reference to the past
    ("what color was it earlier?", 1, "words"),
    ("you said it was red, right?", 1, "words"),
    ("is there a dog again?", 1, "words"),
    ("is he wearing a hat?", 1, None),  # pronouns only when asked for
])
def test_explicit_references_back_fire_with_their_reason(question, picture, reason):
    assert gate_reason(question, _memory(), picture, GateConfig()) == reason
    assert memory_needed(question, _memory(), picture) is (reason is not None)
    assert gate_reason(question, _memory(), picture, GateConfig(refers_back=False)) is None
    assert gate_reason(question, [], picture) is None  # nothing to remind of


def test_pronouns_and_relevance_fire_only_when_configured():
    assert gate_reason("is he wearing a hat?", _memory(), 1, GateConfig(pronouns=True)) == "pronoun"
    assert gate_reason("is it sunny?", _memory(), 1, GateConfig(pronouns=True)) is None  # expletive "it"
    strong, weak = _memory(1.2), _memory(0.3)
    assert gate_reason("what color is the shape?", strong, 1, GateConfig(min_relevance=1.0)) == "relevance"
    assert gate_reason("what color is the shape?", weak, 1, GateConfig(min_relevance=1.0)) is None
    assert gate_reason("what color is the shape?", _memory(None), 1, GateConfig(min_relevance=0.0)) is None
    assert set(GATE_REASONS) == {"picture", "turn", "time", "words", "pronoun", "relevance"}


def test_calibration_picks_the_separating_threshold_within_the_false_rate():
    best = [2.0, 1.8, 1.6, 0.4, 0.2, 0.9, 1.7, None]
    needed = [True, True, True, False, False, False, False, True]
    # 1.7 (not needed) sits among the needed: 1.25 catches 3 of the 4 needed with 1 of 4 false, 1.75 catches 2 with
    # none; the same rate difference, so the lower wins unless the false rate bound forbids it
    assert calibrate_min_relevance(best, needed, max_false_rate=0.5) == pytest.approx(1.25)
    assert calibrate_min_relevance(best, needed, max_false_rate=0.0) == pytest.approx(1.75)
    # the explicit references already catch every needed round: no threshold adds anything
    fired = [True, True, True, False, False, False, False, True]
    assert calibrate_min_relevance(best, needed, fired) is None
    assert calibrate_min_relevance(best, [True] * 8) is None  # nothing to tell apart
    with pytest.raises(ValueError, match="give one per round"):
        calibrate_min_relevance(best, needed[:3])


def test_calibrated_threshold_separates_fresh_rounds_of_the_same_kind():
    rng = np.random.default_rng(0)
    needed = rng.random(400) < 0.2
    best = np.where(needed, rng.normal(2.0, 0.3, 400), rng.normal(0.8, 0.3, 400))
    threshold = calibrate_min_relevance(best.tolist(), needed.tolist())
    assert 1.0 < threshold < 2.0
    fresh_needed = rng.random(400) < 0.2
    fresh = np.where(fresh_needed, rng.normal(2.0, 0.3, 400), rng.normal(0.8, 0.3, 400))
    fires = fresh >= threshold
    assert fires[fresh_needed].mean() > 0.9 and fires[~fresh_needed].mean() < 0.08


def test_on_the_demo_the_gate_fires_on_every_memory_round_and_no_current_one():
    split = load_visdial(demo_data() / "val.json")
    counts = {("memory", True): 0, ("memory", False): 0, ("current", True): 0, ("current", False): 0}
    for dialog in split.dialogs[:60]:
        gates = dialog_gates(dialog, replay_dialog(dialog, MemoryConfig(), 3), GateConfig())
        for rnd in dialog.rounds:
            counts[(rnd.kind, gates[rnd.round_id] is not None)] += 1
    assert counts[("memory", True)] > 20 and counts[("memory", False)] == 0
    assert counts[("current", True)] == 0 and counts[("current", False)] > 400
