"""Any conversation turn goes in through `add_turns`: speakers, times and sessions, captions of shared pictures, and
the references a query makes to them (time phrases, sessions, speakers, caption words) each move the right turn up."""
import datetime as dt

import numpy as np
import pytest

from shared.memory import MemoryConfig, MemoryStore, ScoreWeights, Turn, replay_turns
from shared.memory._when import parse_when
from shared.reminder import parse_reminder, render_reminder

RELEVANCE = ScoreWeights(recency=0.0, frequency=0.0, saliency=0.0, relevance=1.0)
DAY = 86_400.0


def _t(year: int, month: int, day: int, hour: int = 19) -> float:
    return dt.datetime(year, month, day, hour, tzinfo=dt.timezone.utc).timestamp()


def _chat(**config) -> MemoryStore:
    """Three evening sessions, days apart, each about its own picture; the same question asked in all three."""
    store = MemoryStore(MemoryConfig(weights=RELEVANCE, clock="seconds", half_life=DAY, **config))
    sessions = [(_t(2024, 3, 1), "Maya", 11, "a man holding a guitar in a kitchen", "a red one"),
                (_t(2024, 3, 20), "Tom", 12, "two dogs on a snowy beach", "no"),
                (_t(2024, 4, 2), "Maya", 13, "a plate of pasta on a wooden table", "yes, a blue one")]
    for start, who, image, caption, answer in sessions:
        store.add_turns([Turn(caption, speaker=who, time=start, image_id=image, caption=caption),
                         Turn(answer, speaker=who, time=start + 60, image_id=image, reply_to="is there a cup")])
    return store


def _best(store: MemoryStore, query: str, now: float) -> int:
    """The best of the three answers about the cup (the pictures' own turns may match a caption word better)."""
    return store.retrieve(query, 1, now, candidates=np.array([1, 3, 5]), update=False)[0].index


def test_turns_keep_speaker_time_session_picture_and_caption():
    store = _chat()
    assert len(store) == 6 and store.speakers == ["Maya", "Tom"]
    memory = store.memory(3)
    assert (memory.speaker, memory.session, memory.picture, memory.turn, memory.question, memory.answer) == (
        "Tom", 2, 2, 4, "is there a cup", "no")
    assert memory.time == _t(2024, 3, 20) + 60
    assert sorted(store.captions) == [1, 2, 3]
    plain = MemoryStore(MemoryConfig())
    plain.add_turns([Turn("hello"), Turn("hi there", speaker="Ken")])
    assert plain.memory(0).image_id == -1 and plain.memory(0).picture == 0 and plain.memory(1).turn == 2


def test_time_session_speaker_and_caption_references_pick_the_turn():
    store, now = _chat(), _t(2024, 4, 16)
    assert _best(store, "two weeks ago, was there a cup?", now) == 5  # April 2 is 14 days before April 16
    assert _best(store, "on March 20, was there a cup?", now) == 3
    assert _best(store, "back in March, what did Tom say about a cup?", now) == 3
    assert _best(store, "in our first chat, was there a cup?", now) == 1
    assert _best(store, "last time we talked, was there a cup?", now) == 5  # asked in a new session
    assert _best(store, "was there a cup in the beach photo?", now) == 3  # the caption names the beach
    assert _best(store, "was there a cup in the kitchen picture?", now) == 1
    off = _chat(time_bonus=0.0, caption_weight=0.0, speaker_bonus=0.0)
    scores = off.score("two weeks ago, was there a cup in the kitchen?", now).total
    assert scores[1] == scores[3] == scores[5]  # without the references the three answers tie


def test_speaker_bonus_needs_a_named_speaker():
    store, now = _chat(), _t(2024, 4, 16)
    rel = store.relevance("what did Tom say about a cup?", slice(0, 6), now=now)
    assert rel[3] > rel[1] and rel[3] > rel[5]
    assert rel[1] == rel[5]  # both Maya's


def test_caption_embeddings_add_the_pictures_relevance():
    store = MemoryStore(MemoryConfig(weights=RELEVANCE, lexical_weight=0.0))
    e = np.eye(4, dtype=np.float32)
    store.add_turns([Turn("no", reply_to="is it big", image_id=1, caption="a cat"),
                     Turn("no", reply_to="is it big", image_id=2, caption="a car")],
                    text_embeddings=e[[0, 0]], reply_embeddings=e[[0, 0]], caption_embeddings={1: e[2], 2: e[3]})
    query = e[0] + e[3]
    assert [m.index for m in store.retrieve("q", 2, 3, query, update=False)] == [1, 0]
    with pytest.raises(ValueError, match="caption embedding missing for image 3"):
        store.add_turns([Turn("x", image_id=3, caption="a bus")], e[[0]], e[[0]])
    assert len(store) == 2 and 3 not in store.pictures  # a rejected batch registers nothing


def test_sessions_start_after_the_gap_and_clock_seconds_needs_times():
    store = MemoryStore(MemoryConfig(clock="seconds", session_gap=3600.0))
    store.add_turns([Turn("a", time=0.0), Turn("b", time=1800.0), Turn("c", time=9000.0)])
    assert [store.memory(i).session for i in range(3)] == [1, 1, 2]
    with pytest.raises(ValueError, match="give every turn a time"):
        store.add_turns([Turn("d")])


def test_parse_when_reads_the_phrases_the_benchmark_and_people_use():
    now = _t(2024, 5, 20)  # a Monday
    assert parse_when("two weeks ago", now).ages == [(14.0, 5.2)]
    assert parse_when("a couple of days ago", now).ages == [(2.0, 1.0)]
    assert parse_when("yesterday", now).ages == [(1, 0.5)]
    assert parse_when("on tuesday", now).ages == [(6.0, 0.5)]
    march5 = (dt.date(2024, 3, 5) - dt.date(1970, 1, 1)).days
    assert parse_when("on March 5th", now).days == [(march5, march5)]
    assert parse_when("the 5th of march", now).days == [(march5, march5)]
    feb = parse_when("back in February", now).days[0]
    assert feb[1] - feb[0] == 28  # 2024 is a leap year
    assert parse_when("the time before last", now).sessions_back == [2]
    assert parse_when("last time we talked", now).sessions_back == [1]
    assert parse_when("in our third chat", now).sessions == [3]
    assert not parse_when("what may be there? is it the last picture?", now)
    later = parse_when("on December 24", now).days[0]  # a date not yet this year: last year's
    assert later[0] == (dt.date(2023, 12, 24) - dt.date(1970, 1, 1)).days


def test_time_weights_are_full_inside_and_fade_outside():
    now = _t(2024, 5, 20)
    times = np.array([now - d * DAY for d in (14, 18, 24, 30)] + [np.nan])
    weights = parse_when("two weeks ago", now).weights(now, times, np.zeros(5, np.int32), 1)
    # full within 14 +- 5.2 days, linear to 0 at 14 +- 10.4, nothing for a turn without a time
    assert weights.tolist() == pytest.approx([1.0, 1.0, 2 - 10 / 5.2, 0.0, 0.0])


def test_replay_turns_retrieves_before_storing_and_renders_plain_turns():
    store = MemoryStore(MemoryConfig())
    turns = [Turn("a dog on a beach", speaker="Maya", image_id=1, caption="a dog on a beach"),
             Turn("brown", speaker="Maya", image_id=1, reply_to="what color is the dog"),
             Turn("a cat on a sofa", speaker="Tom", image_id=2, caption="a cat on a sofa"),
             Turn("", reply_to="what color was the dog in the first picture?")]
    seen = []
    out = replay_turns(store, turns, 3, last_is_open=True,
                       before_retrieval=lambda s, i, t, q, pic: seen.append((i, len(s), pic)))
    assert seen == [(0, 0, 1), (1, 1, 1), (2, 2, 2), (3, 3, None)]
    assert out[0] == [] and out[2] == [] and len(store) == 3  # the open turn is never stored
    assert out[3][0].answer == "brown"
    block = render_reminder(out[3])
    assert "[turn 1] (picture 1) Maya said: a dog on a beach" in block.splitlines()
    parsed = {p.turn: (p.question, p.answer, p.speaker) for p in parse_reminder(block, strict=True)}
    assert parsed[1] == ("", "a dog on a beach", "Maya") and parsed[2] == ("what color is the dog", "brown", None)
