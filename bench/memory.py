"""Memory retrieval benchmark: evidence recall on the demo memory dialogs and on long multi-session conversations,
and top-k latency over 1M memories.

    python bench/memory.py [--data data/demo] [--embeddings embeddings/cpu_default] [--longconv PATH] [--n 1000000]

(1) Quality. Every demo dialog is replayed turn by turn: before round t is answered, the store holds turns 1..t-1;
on rounds of kind "memory" the scorer ranks them and we record whether the annotated `evidence_round` is in the top 3
(ties broken at random, counted as the expected hit). After each turn the store retrieves (updating access counts),
notes the question's references and stores the turn, exactly as a dialogue system would. Relevance uses the
cpu_default MiniLM question/answer embeddings (`make extract-demo`; `--lexical` for the word-overlap relevance). The
table goes into docs/RETRIEVAL.md between the bench markers. Missing inputs stop the bench, naming the make target.
(2) Long conversations (bench/memory_longconv.py): recall@5/@10 of the evidence turn of later questions in
conversations of 779 turns chained from real VisDial dialogs (`make data-longconv`), for the default scorer, each
component alone, dense and lexical relevance alone and ablations; its table goes into docs/RETRIEVAL.md too.
(3) Speed. 1,000,000 memories x 384-d (random unit vectors, synthetic texts), k=5: the p50 of retrieve with the
int8 screen (the default for stores this large), against the float32 pass over every memory and the float32 scorer
followed by a full argsort (the textbook way), in the same process; the share of queries where the screen returns
the float32 top-k (memory_topk_int8_agreement; anything below 1.0 is a bug) and the one-time packing of the int8
copies.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.memory import COMPONENTS, MemoryConfig, MemoryStore, ScoreWeights  # noqa: E402
from shared.memory import replay_dialog  # noqa: E402
from shared.memory import IdfTable  # noqa: E402
from shared.visdial import load_visdial  # noqa: E402
from bench.inputs import LONGCONV, require  # noqa: E402
from bench import memory_longconv  # noqa: E402

K = 3
FULL = "full scorer (default weights)"
START, END = "<!-- bench/memory.py:start -->", "<!-- bench/memory.py:end -->"
LC_START, LC_END = "<!-- bench/memory.py:longconv:start -->", "<!-- bench/memory.py:longconv:end -->"


def variants() -> dict[str, MemoryConfig]:
    """The full scorer (the shipped defaults) and each component alone."""
    out = {FULL: MemoryConfig()}
    for name in COMPONENTS:
        only = ScoreWeights(**{c: float(c == name) for c in COMPONENTS})
        out[f"{name} only"] = MemoryConfig(weights=only)
    out["full scorer, no picture bonus"] = MemoryConfig(picture_bonus=0.0)
    out["relevance only, no picture bonus"] = MemoryConfig(weights=out["relevance only"].weights, picture_bonus=0.0)
    return out


def demo_data(path: Path) -> Path:
    """The demo data (make data-demo)."""
    return require(path / "train.json", "data-demo").parent


def describe(data: Path) -> str:
    """The data folder and the generator parameters it was built with (from its MANIFEST.json)."""
    where = str(data.relative_to(REPO)) if data.is_relative_to(REPO) else str(data)
    try:
        params = json.loads((data / "MANIFEST.json").read_text())["params"]
        return f"{where} (prepare_demo.py seed {params['seed']}, {params['train_dialogs']} train / " \
               f"{params['val_dialogs']} val dialogs, memory share {params['memory_share']})"
    except (OSError, ValueError, KeyError):
        return where


class TextEmbeddings:
    """Question/answer embeddings of one split from the cpu_default shards, looked up by image id."""

    def __init__(self, directory: Path):
        from shared.shards import ShardSet

        self.shards = ShardSet(directory, encoder_id="cpu_default")
        self.has_answers = "answer" in self.shards.tensor_names

    def dialog(self, image_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        row = self.shards.row_of(image_id)
        q = self.shards.get("question", row).astype(np.float32)
        a = self.shards.get("answer", row).astype(np.float32) if self.has_answers else None
        return q, a


def expected_hit(total: np.ndarray, target: int, k: int) -> float:
    """P(target in top-k) when ties are broken uniformly at random."""
    better = int(np.sum(total > total[target]))
    tied = int(np.sum(total == total[target]))
    return float(min(max(k - better, 0), tied) / tied)


def replay(split, config: MemoryConfig, idf: IdfTable, emb: TextEmbeddings | None) -> tuple[float, int]:
    hits: list[float] = []

    def measure(store: MemoryStore, rnd, query, picture: int) -> None:
        if rnd.kind == "memory" and len(store):
            scores = store.score(rnd.question, rnd.round_id, query, current_picture=picture)
            hits.append(expected_hit(scores.total, rnd.evidence_round - 1, K))  # memory i holds turn i+1

    for dialog in split.dialogs:
        if any(r.kind == "memory" for r in dialog.rounds):
            q_emb, a_emb = emb.dialog(dialog.image_id) if emb else (None, None)
            replay_dialog(dialog, config, K, idf, q_emb, a_emb, before_retrieval=measure)
    return float(np.mean(hits)), len(hits)


def chance(split) -> float:
    hits = [min(K, r.round_id - 1) / (r.round_id - 1) for d in split.dialogs for r in d.rounds if r.kind == "memory"]
    return float(np.mean(hits))


def quality(data: Path, emb_root: Path) -> tuple[float, str]:
    splits = {name: load_visdial(data / f"{name}.json") for name in ("train", "val")}
    idf = IdfTable.fit(f"{r.question} {r.answer}" for d in splits["train"].dialogs for r in d.rounds)
    if emb_root is None:
        embs, mode = {name: None for name in splits}, "lexical relevance (--lexical)"
    else:
        embs = {name: TextEmbeddings(require(emb_root / name / "index.json", "extract-demo").parent) for name in splits}
        mode = "cpu_default MiniLM embeddings"
    rows, figure = [], 0.0
    for label, config in variants().items():
        cells = []
        for name, split in splits.items():
            recall, n = replay(split, config, idf, embs[name])
            cells.append(f"{recall:.3f} ({n})")
            if name == "val" and label == FULL:
                figure = recall
        rows.append(f"| {label} | {' | '.join(cells)} |")
        print(rows[-1], flush=True)
    rows.append(f"| chance (3 random past turns) | {chance(splits['train']):.3f} | {chance(splits['val']):.3f} |")
    weights = dataclasses.asdict(MemoryConfig().weights)
    table = "\n".join([
        f"Relevance from: {mode}. Data: {describe(data)}. Default weights: {weights}.", "",
        "| scorer | top-3 recall, train (memory rounds) | top-3 recall, val (memory rounds) |", "|---|---|---|", *rows])
    return figure, table


def write_table(table: str, doc: Path, start: str = START, end: str = END) -> None:
    text = doc.read_text() if doc.is_file() else f"# Memory retrieval\n\n{start}\n{end}\n"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    doc.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")


def longconv(path: Path, cache: Path, doc: Path) -> dict[str, float]:
    """The long-conversation figures (test conversations) and its table in `doc`."""
    data = json.loads(require(path, "data-longconv").read_text())
    vectors = memory_longconv.TextVectors(memory_longconv.all_texts(data), cache)
    print(f"longconv: {len(vectors.texts)} texts embedded" + (" (read from the cache)" if vectors.from_cache else ""),
          flush=True)
    results = memory_longconv.evaluate(data, vectors)
    write_table(memory_longconv.table(data, results, vectors), doc, LC_START, LC_END)
    test = {label: rows["test"] for label, rows in results.items()}
    return {f"longconv_recall{k}_{name}": memory_longconv.recall(test[label], k)
            for name, label in (("default", memory_longconv.DEFAULT), ("dense", memory_longconv.DENSE),
                                ("lexical", memory_longconv.LEXICAL), ("before", memory_longconv.BEFORE))
            for k in (5, 10)}


def build_large_store(n: int, dim: int, rng: np.random.Generator, chunk: int = 100_000) -> MemoryStore:
    store = MemoryStore(MemoryConfig(relevance_on="question"))
    store.reserve(n, dim)
    colors, shapes = ("red", "blue", "green", "teal", "gray"), ("circle", "triangle", "rectangle")
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        emb = rng.standard_normal((size, dim), dtype=np.float32)
        questions = [f"what color is the {shapes[i % 3]}?" if i % 2 else "is there a shape?" for i in range(size)]
        answers = [colors[i % 5] if i % 2 else "yes" for i in range(size)]
        turns = rng.integers(1, 10_000, size)
        store.add_batch(questions, answers, turns, image_ids=rng.integers(0, 1000, size), question_embeddings=emb)
    store.access_count.view()[:] = rng.integers(0, 5, n)
    return store


def p50_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def speed(n: int, dim: int, k: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    store = build_large_store(n, dim, rng)
    print(f"built {n} x {dim} store in {time.perf_counter() - t0:.1f} s", flush=True)
    queries = rng.standard_normal((repeats, dim), dtype=np.float32)
    it = iter(range(10**9))

    def retrieve(q=None):
        query = queries[next(it) % repeats] if q is None else q
        return [r.index for r in store.retrieve("what color is it?", k, 10_001, query, update=False)]

    def full_sort():
        scores = store.score("what color is it?", 10_001, queries[next(it) % repeats])
        return np.argsort(-scores.total, kind="stable")[:k]

    store.score("what color is it?", 10_001, queries[0])  # warm the cached saliency, as a live store would be
    t0 = time.perf_counter()
    retrieve(queries[0])  # the first screened query packs the int8 copies
    figures = {"memory_int8_pack_s": time.perf_counter() - t0}
    screened = [retrieve(q) for q in queries]
    figures["memory_topk_p50_ms"] = p50_ms(retrieve, repeats)
    store.config.int8_screen_from = 0  # the float32 pass over every memory: the baseline
    float32 = [retrieve(q) for q in queries]
    matrix = store.q_emb.view()
    figures.update({
        "memory_topk_float32_p50_ms": p50_ms(retrieve, repeats),
        "memory_topk_fullsort_p50_ms": p50_ms(full_sort, repeats),
        "memory_matvec_only_p50_ms": p50_ms(lambda: matrix @ queries[next(it) % repeats], repeats),
    })
    figures["memory_topk_int8_speedup"] = figures["memory_topk_float32_p50_ms"] / figures["memory_topk_p50_ms"]
    figures["memory_topk_int8_agreement"] = float(np.mean([a == b for a, b in zip(screened, float32, strict=True)]))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data/demo")
    parser.add_argument("--embeddings", type=Path, default=REPO / "embeddings/cpu_default")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/RETRIEVAL.md")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--longconv", type=Path, default=LONGCONV)
    parser.add_argument("--embedding-cache", type=Path, default=REPO / "embeddings/longconv",
                        help="MiniLM vectors of the long-conversation texts, keyed by their hash (git-ignored)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-longconv", action="store_true")
    parser.add_argument("--lexical", action="store_true", help="relevance from words instead of the MiniLM shards")
    args = parser.parse_args()
    recall, table = quality(demo_data(args.data), None if args.lexical else args.embeddings)
    write_table(table, args.doc)
    long_figures = {} if args.skip_longconv else longconv(args.longconv, args.embedding_cache, args.doc)
    load = os.getloadavg()[0]
    figures = {} if args.skip_speed else speed(args.n, args.dim, 5, args.repeats)
    print(f"host: {os.cpu_count()} cores, 1-min load average {load:.2f} before / {os.getloadavg()[0]:.2f} after "
          "the speed runs (other processes share these cores)")
    print(f"retrieval_top3_recall: {recall:.4f}")
    for name, value in long_figures.items():
        print(f"{name}: {value:.4f}")
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
