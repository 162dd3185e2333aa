"""data/build_longconv.py: deterministic long conversations from the bundled real VisDial dialogs, whose later
questions single out their evidence turn by references alone and never copy it."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "data"


def _load(name: str):
    if str(DATA) not in sys.path:
        sys.path.append(str(DATA))
    spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


refs = _load("longconv_refs")


def test_time_and_session_phrases_say_what_a_person_would():
    assert refs.relative_phrase(1)[0] == "yesterday"
    assert refs.relative_phrase(4) == ("four days ago", 3, 5)
    assert refs.relative_phrase(15) == ("two weeks ago", 10, 18)
    assert refs.relative_phrase(62)[0] == "about two months ago"
    assert refs.date_phrase(19_787, with_day=True) == "on March 5"  # 2024-03-05
    assert refs.date_phrase(19_787, with_day=False) == "back in March"
    assert refs.session_phrase(9, 10) == "last time we talked" and refs.session_phrase(8, 10) == "the time before last"
    assert refs.session_phrase(2, 40) == "in our second chat" and refs.session_phrase(20, 40) is None
    assert [refs.stem(w) for w in ("trees", "glasses", "boxes", "bus", "puppies")] == [
        "tree", "glass", "box", "bus", "puppy"]
    text = refs.phrase(("speaker", "time"), 0, topic="the guitar", when="two weeks ago", name="Maya")
    assert text == "Two weeks ago, what did Maya say about the guitar?"


@pytest.mark.slow
def test_conversations_are_long_deterministic_and_their_probes_honest(tmp_path):
    build = _load("build_longconv")
    data = build.build(seed=3, conversations=2, dev=1, probes=40, min_session=20, min_candidates=4)
    assert json.dumps(data) == json.dumps(build.build(seed=3, conversations=2, dev=1, probes=40, min_session=20,
                                                       min_candidates=4))
    assert [c["split"] for c in data["conversations"]] == ["dev", "test"]
    first, second = data["conversations"]
    assert [s["source"] for s in first["sessions"]] != [s["source"] for s in second["sessions"]]  # own order
    for conv in data["conversations"]:
        turns, sessions = conv["turns"], conv["sessions"]
        assert len(turns) >= 500 and len(sessions) >= 50
        assert all(b["day"] - a["day"] >= 1 for a, b in zip(sessions, sessions[1:]))  # sessions days apart
        assert all(a["time"] < b["time"] for a, b in zip(turns, turns[1:]))
        assert all(t["id"] == i for i, t in enumerate(turns))
        assert len(conv["probes"]) >= 30
        for p in conv["probes"]:
            evidence = turns[p["evidence_turn"]]
            assert evidence["session"] == p["evidence_session"] < p["asked_session"]
            assert p["evidence_turn"] < p["before_turn"] and p["asked_at"] < turns[p["before_turn"]]["time"]
            question = p["question"].lower()
            assert evidence["reply_to"] not in question and evidence["text"] not in question
            assert p["topic"] in question and len(p["shared_words"]) <= build.SHARED_WORDS_MAX
            if p["refs"] != ["topic"]:
                assert p["candidates"] >= 4  # the noun alone is ambiguous: the references must do the work
            if "speaker" in p["refs"]:
                assert evidence["speaker"] in p["question"]
        kinds = {"+".join(p["refs"]) for p in conv["probes"]}
        assert {"time", "picture", "session", "speaker", "topic"} <= kinds
