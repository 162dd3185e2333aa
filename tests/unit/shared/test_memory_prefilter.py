"""The prefilter (approximate first stage of retrieve for huge stores): exact where its estimate is exact, the same
top-k on embeddings with low-dimensional structure, rows added later are seen, and it stays off where it must."""
import numpy as np
import pytest

from shared.memory import MemoryConfig, MemoryStore, ScoreWeights


def build(embeddings: np.ndarray, **config) -> MemoryStore:
    n = len(embeddings)
    rng = np.random.default_rng(1)
    store = MemoryStore(MemoryConfig(relevance_on="question", **config))
    words = ("red", "blue", "green", "circle", "square")
    store.add_batch([f"is it {words[i % 5]}?" for i in range(n)], [words[(i * 3) % 5] for i in range(n)],
                    rng.integers(1, 500, n), image_ids=rng.integers(0, 4, n), question_embeddings=embeddings)
    store.access_count.view()[:] = rng.integers(0, 4, n)
    return store


def top(store: MemoryStore, query: np.ndarray, k: int = 5, text: str = "is it red?"):
    return [(r.index, round(r.score, 4)) for r in store.retrieve(text, k, 501, query, update=False)]


def low_rank(n: int, dim: int, rank: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((rank, dim), dtype=np.float32)
    return rng.standard_normal((n, rank), dtype=np.float32) @ mixing + noise * rng.standard_normal((n, dim),
                                                                                                   dtype=np.float32)


def test_with_every_axis_kept_the_prefilter_changes_nothing():
    emb = np.random.default_rng(0).standard_normal((3000, 16), dtype=np.float32)
    exact, fast = build(emb), build(emb, prefilter_dims=16, prefilter_shortlist=50)
    for seed in range(5):
        query = np.random.default_rng(10 + seed).standard_normal(16, dtype=np.float32)
        assert top(fast, query) == top(exact, query)
    assert fast._prefilter is not None and exact._prefilter is None  # it really ran


def test_same_top_k_on_structured_embeddings_and_a_named_picture():
    emb = low_rank(6000, 64, rank=8, noise=0.05, seed=0)
    exact, fast = build(emb), build(emb, prefilter_dims=12, prefilter_shortlist=200)
    queries = low_rank(6, 64, rank=8, noise=0.05, seed=0)  # same mixing: queries like the memories
    for query in queries:
        assert [i for i, _ in top(fast, query)] == [i for i, _ in top(exact, query)]
        text = "what was in the second picture?"
        assert [i for i, _ in top(fast, query, text=text)] == [i for i, _ in top(exact, query, text=text)]


def test_a_poor_subspace_can_miss_memories_so_the_tests_above_can_fail():
    emb = np.random.default_rng(0).standard_normal((4000, 32), dtype=np.float32)
    exact, fast = build(emb), build(emb, prefilter_dims=2, prefilter_shortlist=100)
    query = np.random.default_rng(5).standard_normal(32, dtype=np.float32)
    assert {i for i, _ in top(fast, query)} != {i for i, _ in top(exact, query)}  # 2 of 32 isotropic axes


def test_memories_added_after_the_first_query_are_projected_and_found():
    emb = low_rank(3000, 32, rank=6, noise=0.05, seed=2)
    relevance_only = ScoreWeights(recency=0.0, frequency=0.0, saliency=0.0, relevance=1.0)
    store = build(emb, prefilter_dims=8, prefilter_shortlist=100, weights=relevance_only)
    query = low_rank(1, 32, rank=6, noise=0.0, seed=2)[0]
    top(store, query)
    store.add("is it red?", "red", turn=500, image_id=1, question_embedding=query * 3.0)  # points where the query does
    assert len(store._prefilter.projected) == len(store) - 1
    assert store.retrieve("is it red?", 1, 501, query, update=False)[0].index == len(store) - 1
    assert len(store._prefilter.projected) == len(store)


@pytest.mark.parametrize("case", ["small store", "both matrices", "candidates", "lexical"])
def test_prefilter_stays_off_where_it_cannot_apply(case):
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((500, 8), dtype=np.float32)
    config = {"prefilter_dims": 2, "prefilter_shortlist": 100 if case != "small store" else 1000}
    store = build(emb, **config)
    query = rng.standard_normal(8, dtype=np.float32)
    if case == "both matrices":
        store = MemoryStore(MemoryConfig(relevance_on="both", weights=ScoreWeights(), **config))
        store.add_batch(["q"] * 500, ["a"] * 500, list(range(500)), question_embeddings=emb, answer_embeddings=emb)
    candidates = np.arange(0, 500, 2) if case == "candidates" else None
    store.retrieve("is it red?", 3, 501, None if case == "lexical" else query, candidates=candidates)
    assert store._prefilter is None
