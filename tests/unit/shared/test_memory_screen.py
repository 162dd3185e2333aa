"""The int8 screen (first pass of retrieve for large stores): its error bound holds and is not vacuous, retrieve
returns exactly the float32 answer with it (ties, named pictures, question+answer embeddings, access updates, rows
added later), and a kernel that breaks the bound is caught and the store falls back to float32."""
import logging

import numpy as np
import pytest

from shared.memory import _screen as memory_screen
from shared.memory import MemoryConfig, MemoryStore, ScoreWeights

RELEVANCE_ONLY = ScoreWeights(recency=0.0, frequency=0.0, saliency=0.0, relevance=1.0)


def embeddings(n: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def build(n: int, screened: bool, answers: bool = False, seed: int = 0, **config) -> MemoryStore:
    """A store of n random memories; `screened` puts the int8 screen on (threshold below n) or off."""
    rng = np.random.default_rng(seed)
    store = MemoryStore(MemoryConfig(int8_screen_from=n // 2 if screened else 0, **config))
    words = ("red", "blue", "green", "circle", "square")
    store.add_batch([f"is it {words[i % 5]}?" for i in range(n)], [words[(i * 3) % 5] for i in range(n)],
                    rng.integers(1, 500, n), image_ids=rng.integers(0, 4, n),
                    question_embeddings=embeddings(n, seed=seed), answer_embeddings=embeddings(n, seed=seed + 1) if answers else None)
    store.access_count.view()[:] = rng.integers(0, 4, n)
    return store


def top(store: MemoryStore, query: np.ndarray, text: str = "is it red?", k: int = 5, update: bool = False):
    return [(r.index, r.score, r.components, r.relevance) for r in store.retrieve(text, k, 501, query, update=update)]


def test_the_pinned_torch_has_the_kernel_and_the_bound_holds_without_being_vacuous():
    assert memory_screen.available()
    matrix = embeddings(3000, 384)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    screen = memory_screen.Int8Screen(block=1000)
    screen.sync(matrix)
    assert [(start, size) for start, size, _ in screen.blocks] == [(0, 1000), (1000, 1000), (2000, 1000)]
    for query in embeddings(20, 384, seed=5):
        query /= np.linalg.norm(query)
        estimate, bound = screen.relevance(query, matrix)
        error = np.abs(estimate - matrix @ query)
        assert error.max() <= bound < 0.1  # holds, and tight enough to leave few rows in doubt
        assert error.max() > 1e-4  # it is int8 arithmetic, not the float32 product


@pytest.mark.parametrize("case", ["default weights", "relevance only", "named picture", "question and answer"])
def test_screened_retrieve_is_the_float32_answer(case):
    config = {"weights": RELEVANCE_ONLY} if case == "relevance only" else {}
    config["relevance_on"] = "both" if case == "question and answer" else "question"
    answers = case == "question and answer"
    exact, fast = build(4000, False, answers, **config), build(4000, True, answers, **config)
    text = "what color was it in picture 2?" if case == "named picture" else "is it red?"
    for query in embeddings(25, seed=7):
        assert top(fast, query, text) == top(exact, query, text)
    assert set(fast._screens) == ({"question", "answer"} if answers else {"question"})  # it really ran
    assert not exact._screens and not fast._screen_broken


def test_ties_are_broken_the_same_way():
    """Many memories share an embedding, so top-k boundaries fall inside groups of equal totals."""
    base = embeddings(40)
    exact, fast = (MemoryStore(MemoryConfig(weights=RELEVANCE_ONLY, int8_screen_from=t)) for t in (0, 1000))
    for store in (exact, fast):
        store.add_batch(["q?"] * 2000, ["a"] * 2000, np.arange(2000), question_embeddings=np.tile(base, (50, 1)))
    for query in embeddings(10, seed=3):
        assert [i for i, *_ in top(fast, query, k=7)] == [i for i, *_ in top(exact, query, k=7)]


def test_near_duplicates_whose_int8_order_is_not_the_float32_order():
    """Two tight clusters (around c and -c), queried off their axis: the int8 estimates order the memories of each
    cluster wrongly, so the exact minimum, maximum and top-k come only from rescoring the rows left in doubt."""
    rng = np.random.default_rng(4)
    c = rng.standard_normal(48).astype(np.float32)
    sign = np.where(np.arange(3000) % 2, 1.0, -1.0).astype(np.float32)[:, None]
    rows = sign * c + 0.002 * rng.standard_normal((3000, 48), dtype=np.float32)
    exact, fast = (MemoryStore(MemoryConfig(weights=RELEVANCE_ONLY, int8_screen_from=t)) for t in (0, 1000))
    for store in (exact, fast):
        store.add_batch(["q?"] * 3000, ["a"] * 3000, np.arange(3000), question_embeddings=rows)
    wrong_ends = 0
    for query in rng.standard_normal((6, 48)).astype(np.float32) + c:
        estimate = fast._screen_estimate(*fast._embedding_query(query), None)[0]
        float32 = exact.score("q?", 1, query).total
        wrong_ends += (np.argmin(estimate) != np.argmin(float32)) + (np.argmax(estimate) != np.argmax(float32))
        assert top(fast, query, k=10) == top(exact, query, k=10)
    assert wrong_ends >= 6  # the case is as hard as it says


def test_access_updates_and_rows_added_later_keep_it_exact():
    exact, fast = build(3000, False), build(3000, True)
    queries = embeddings(12, seed=11)
    for step, query in enumerate(queries):
        assert top(fast, query, update=True) == top(exact, query, update=True)
        if step % 4 == 3:  # new memories: scored in float32 until there are min_block of them
            new = embeddings(100, seed=100 + step)
            for store in (exact, fast):
                store.add_batch(["is it red?"] * 100, ["red"] * 100, [600 + step] * 100, question_embeddings=new)
    screen = fast._screens["question"]
    assert screen.packed_rows == 3000 and len(fast) == 3300
    screen.min_block = 200
    assert top(fast, queries[0]) == top(exact, queries[0])
    assert screen.packed_rows == 3300  # the 300 new rows were packed on that query


def test_a_kernel_that_breaks_its_bound_is_caught_and_the_store_falls_back(monkeypatch, caplog):
    exact, fast = build(3000, False), build(3000, True)
    query = embeddings(1, seed=9)[0]
    real = memory_screen.Int8Screen.relevance
    monkeypatch.setattr(memory_screen.Int8Screen, "relevance", lambda self, q, m: (real(self, q, m)[0], 1e-9))
    with caplog.at_level(logging.WARNING, logger="shared.memory"):
        assert top(fast, query) == top(exact, query)
    assert fast._screen_broken and "beyond its bound" in caplog.text
    monkeypatch.undo()
    assert top(fast, query) == top(exact, query)
    assert fast._screen_broken  # stays off for this store


@pytest.mark.parametrize("case", ["small store", "candidates", "lexical", "no relevance weight", "switched off"])
def test_the_screen_stays_off_where_it_does_not_apply(case):
    weights = ScoreWeights(relevance=0.0) if case == "no relevance weight" else ScoreWeights()
    store = build(3000, case != "switched off", weights=weights)
    if case == "small store":
        store.config.int8_screen_from = 5000
    query = None if case == "lexical" else embeddings(1, seed=2)[0]
    candidates = np.arange(2000) if case == "candidates" else None
    store.retrieve("is it red?", 3, 501, query, candidates=candidates)
    assert not store._screens


def test_screened_retrieve_is_the_float32_answer_with_every_reference_extra():
    """Speakers, times (clock seconds), captions with embeddings and the lexical share: the extras are added
    identically to the int8 estimates and to the float32 cosines, so the answer stays the float32 one."""
    from shared.memory import Turn

    n, rng = 4000, np.random.default_rng(3)
    words = ("red", "blue", "green", "circle", "square")
    turns = [Turn(words[(i * 3) % 5], speaker=("Maya", "Tom")[i % 2], time=1.7e9 + 3600.0 * i, image_id=i // 40,
                  caption=f"a {words[(i // 40) % 5]} kite" if i % 40 == 0 else None, reply_to=f"is it {words[i % 5]}")
             for i in range(n)]
    captions = {i // 40: rng.standard_normal(48).astype(np.float32) for i in range(0, n, 40)}
    text, reply = embeddings(n, seed=21), embeddings(n, seed=22)
    stores = []
    for screened in (False, True):
        store = MemoryStore(MemoryConfig(clock="seconds", half_life=86_400.0, int8_screen_from=n // 2 if screened
                                         else 0))
        store.add_turns(turns, text, reply, captions)
        stores.append(store)
    now = 1.7e9 + 3600.0 * n
    for query, text_query in zip(embeddings(8, seed=23), ("what did Maya say about the red kite two weeks ago?",
                                                          "last time we talked, was it blue?", "in March, the green",
                                                          "is it a circle in picture 3?") * 2, strict=True):
        exact, fast = ([(r.index, r.score, r.components) for r in s.retrieve(text_query, 5, now, query, update=False)]
                       for s in stores)
        assert fast == exact
    assert stores[1]._screens and not stores[1]._screen_broken
