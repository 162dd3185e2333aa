"""Build the long-conversation memory benchmark from the bundled real VisDial dialogs (docs/RETRIEVAL.md).

    python data/build_longconv.py [--out data/longconv/longconv.json] [--seed 0] [--conversations 4] [--dev 1]

Each conversation chains all bundled real VisDial v1.0 dialogs (tests/assets/visdial_v1_real_sample: 50 val + 50
test dialogs, open rounds dropped) in a seeded order into one chat between two people: one session per dialog,
sessions 1-6 days apart, evenings, 20-120 s between turns. In each session one of the two shares a picture (their
turn's text is the picture's caption) and answers the other's questions about it (one turn per VisDial round:
the answer, replying to the question). Later questions ("probes") are asked at the start of a later session and
refer back to one earlier round (the evidence turn) by the noun its question was about, plus references to the
session it came from: nouns of the picture's caption, a time phrase ("two weeks ago", "on March 5"), the session
("last time we talked"), the picture's place ("the second picture") or the speaker. A probe is kept only when those
references single out the evidence turn among every earlier turn that mentions the noun, and it never copies the
question or answer: it shares at most two words with them. The output is a pure function of the arguments and the
bundled files; the first `--dev` conversations are for choosing settings, the rest are the reported test set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from random import Random

DATA_DIR, REPO = Path(__file__).resolve().parent, Path(__file__).resolve().parents[1]
for path in (str(DATA_DIR), str(REPO)):
    if path not in sys.path:
        sys.path.append(path)

import longconv_refs as refs  # noqa: E402
from shared.files import atomic_write_text, sha256_file  # noqa: E402
from shared.visdial import load_visdial  # noqa: E402

FORMAT = "vdmem-longconv/1"
SOURCES = ("tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json",
           "tests/assets/visdial_v1_real_sample/visdial_1.0_test.small.json")
ATTRIBUTION = ("Dialogs, questions, answers and captions: VisDial v1.0 (visualdialog.org, CC BY 4.0), via the sample "
               "files of henryhungle/MTN (MIT); chained into conversations by data/build_longconv.py")
SPEAKERS = (("Maya", "Tom"), ("Lena", "Omar"), ("Priya", "Jonas"), ("Sofia", "Ken"), ("Nora", "Ravi"))
START_DAY = 19_730  # 2024-01-08 (UTC day number)
SHARED_WORDS_MAX = 2


def load_sessions(repo: Path) -> list[tuple[str, object]]:
    """(source tag, dialog) for every bundled dialog with at least two answered rounds."""
    out = []
    for rel in SOURCES:
        split = load_visdial(repo / rel)
        out += [(f"{split.split}/{d.image_id}", d) for d in split.dialogs
                if sum(r.answer is not None for r in d.rounds) >= 2]
    return out


def chain(dialogs: list, rng: Random, speakers: tuple[str, str]) -> tuple[list[dict], list[dict]]:
    """Sessions and turns of one conversation: the dialogs in a seeded order, days apart."""
    order = list(range(len(dialogs)))
    rng.shuffle(order)
    sessions, turns = [], []
    day = START_DAY + rng.randint(0, 27)
    for number, k in enumerate(order, 1):
        source, dialog = dialogs[k]
        if number > 1:
            day += rng.randint(1, 6)
        sharer = rng.choice(speakers)
        asker = speakers[1 - speakers.index(sharer)]
        clock = day * refs.DAY + rng.randint(17, 21) * 3600 + rng.randint(0, 59) * 60
        first = len(turns)
        turns.append({"id": first, "session": number, "speaker": sharer, "time": clock, "text": dialog.caption,
                      "image_id": dialog.image_id, "caption": dialog.caption})
        for rnd in dialog.rounds:
            if rnd.answer is None:
                continue
            clock += rng.randint(20, 120)
            turns.append({"id": len(turns), "session": number, "speaker": sharer, "time": clock, "text": rnd.answer,
                          "reply_to": rnd.question, "asked_by": asker, "image_id": dialog.image_id,
                          "round_id": rnd.round_id})
        sessions.append({"session": number, "source": source, "image_id": dialog.image_id, "sharer": sharer,
                         "asker": asker, "day": day, "caption": dialog.caption, "turns": [first, len(turns)]})
    return sessions, turns


class ProbeMaker:
    """Later questions for one conversation; see the module docstring for what makes one acceptable."""

    def __init__(self, sessions: list[dict], turns: list[dict], rng: Random, nouns: refs.Nouns, min_session: int,
                 min_candidates: int):
        self.sessions, self.turns, self.rng, self.nouns = sessions, turns, rng, nouns
        self.min_session, self.min_candidates = min_session, min_candidates
        self.turn_stems = [refs.stems(f"{t.get('reply_to', '')} {t['text']}") if "reply_to" in t else frozenset()
                           for t in turns]
        self.caption_stems = [refs.stems(s["caption"]) for s in sessions]

    def topics(self, turn: dict) -> list[str]:
        """Nouns of the turn's question that no other round of its session mentions."""
        first, end = self.sessions[turn["session"] - 1]["turns"]
        others = [self.turn_stems[t] for t in range(first + 1, end) if t != turn["id"]]
        return [n for n in self.nouns.of(turn["reply_to"]) if not any(refs.stem(n) in o for o in others)]

    def make(self, kinds: tuple[str, ...]) -> dict | None:
        rng, n = self.rng, len(self.sessions)
        asked = rng.randint(self.min_session, n)
        if "ordinal" in kinds:
            choices = [i for i in refs.ORDINALS if i < asked]
        elif "session" in kinds:
            choices = sorted({i for i in (*refs.ORDINALS, asked - 1, asked - 2) if 1 <= i < asked})
        else:
            choices = list(range(1, asked))
        session = self.sessions[rng.choice(choices) - 1]
        first, end = session["turns"]
        evidence = self.turns[rng.randint(first + 1, end - 1)]
        topics = self.topics(evidence)
        if not topics:
            return None
        topic = rng.choice(topics)
        before = self.sessions[asked - 1]["turns"][0]
        matches = [t for t in range(before) if refs.stem(topic) in self.turn_stems[t]]
        if kinds != ("topic",) and len(matches) < self.min_candidates:
            return None  # a reference earns its place only when the noun alone is ambiguous
        slots, keep = {"topic": f"the {topic}"}, set(range(1, asked))
        for kind in kinds:
            found = self._reference(kind, session, asked, topic, matches, keep)
            if found is None:
                return None
            keep, new_slots = found
            slots.update(new_slots)
        if [t for t in matches if self.turns[t]["session"] in keep] != [evidence["id"]]:
            return None  # the references do not single out the evidence turn
        text = refs.phrase(kinds, rng.randint(0, 5), **slots)
        shared = sorted((refs.stems(text) & self.turn_stems[evidence["id"]]) - refs.FUNCTION_WORDS)
        if len(shared) > SHARED_WORDS_MAX or evidence["reply_to"] in text.lower() or evidence["text"] in text.lower():
            return None
        return {"question": text, "asked_at": self.turns[before]["time"] - 60, "before_turn": before,
                "asked_session": asked, "evidence_turn": evidence["id"], "evidence_session": session["session"],
                "refs": list(kinds), "topic": topic, "shared_words": shared,
                "candidates": len(matches), **{k: v for k, v in slots.items() if k in ("when", "pic")}}

    def _reference(self, kind: str, session: dict, asked: int, topic: str, matches: list[int], keep: set[int]):
        """(sessions the reference can mean, its template slots), or None when it cannot be made."""
        rng, number = self.rng, session["session"]
        if kind == "topic":
            return keep, {}
        if kind in ("session", "ordinal"):
            if kind == "ordinal":
                return keep & {number}, {"ordinal": refs.ORDINALS[number]}
            return keep & {number}, {"when": refs.session_phrase(number, asked)}
        if kind == "speaker":
            return keep & {s["session"] for s in self.sessions if s["sharer"] == session["sharer"]}, \
                {"name": session["sharer"]}
        if kind == "time":
            return self._time(session, asked, keep)
        nouns = [w for w in self.nouns.of(session["caption"]) if refs.stem(w) != refs.stem(topic)]
        if not nouns:
            return None
        chosen = [rng.choice(nouns)]
        touched = {self.turns[t]["session"] for t in matches}
        for width in (1, 2):
            if width == 2:
                rest = [w for w in nouns if w != chosen[0]]
                if not rest:
                    return None
                chosen.append(rng.choice(rest))
            fit = {s for s in keep if all(refs.stem(w) in self.caption_stems[s - 1] for w in chosen)}
            if len(fit & touched) == 1:
                break
        return fit, {"pic": refs.picture_phrase(chosen, rng.randint(0, 2))}

    def _time(self, session: dict, asked: int, keep: set[int]):
        asked_day, day = self.sessions[asked - 1]["day"], session["day"]
        form = self.rng.random()
        if form < 0.6:
            text, lo, hi = refs.relative_phrase(asked_day - day)
            fit = {s for s in keep if lo <= asked_day - self.sessions[s - 1]["day"] <= hi}
        elif form < 0.85:
            text = refs.date_phrase(day, with_day=True)
            fit = {s for s in keep if self.sessions[s - 1]["day"] == day}
        else:
            text = refs.date_phrase(day, with_day=False)
            fit = {s for s in keep if refs.month_of(self.sessions[s - 1]["day"]) == refs.month_of(day)}
        return fit, {"when": text}

    def probes(self, count: int, attempts: int = 400) -> list[dict]:
        out, used = [], set()
        for slot in range(count):
            kinds = list(refs.TEMPLATES)[slot % len(refs.TEMPLATES)]
            for _ in range(attempts):
                probe = self.make(kinds)
                if probe is not None and probe["evidence_turn"] not in used:
                    used.add(probe["evidence_turn"])
                    out.append(probe)
                    break
        out.sort(key=lambda p: (p["before_turn"], p["evidence_turn"]))
        return [{"id": i, **p} for i, p in enumerate(out)]


def build(seed: int, conversations: int, dev: int, probes: int, min_session: int, min_candidates: int,
          repo: Path = REPO) -> dict:
    dialogs, nouns = load_sessions(repo), refs.Nouns()
    convs = []
    for c in range(conversations):
        rng = Random(f"longconv/{seed}/{c}")
        speakers = SPEAKERS[c % len(SPEAKERS)]
        sessions, turns = chain(dialogs, rng, speakers)
        made = ProbeMaker(sessions, turns, rng, nouns, min_session, min_candidates).probes(probes)
        convs.append({"id": c, "split": "dev" if c < dev else "test", "speakers": list(speakers),
                      "sessions": sessions, "turns": turns, "probes": made})
    generator = hashlib.sha256(b"".join(p.read_bytes() for p in (Path(__file__), DATA_DIR / "longconv_refs.py")))
    return {"format": FORMAT, "attribution": ATTRIBUTION,
            "params": {"seed": seed, "conversations": conversations, "dev": dev, "probes": probes,
                       "min_session": min_session, "min_candidates": min_candidates, "speakers": [list(s) for s in SPEAKERS[:conversations]]},
            "sources": {rel: sha256_file(repo / rel) for rel in SOURCES}, "generator_sha256": generator.hexdigest(),
            "conversations": convs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "data/longconv/longconv.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--dev", type=int, default=1, help="the first DEV conversations are for choosing settings")
    parser.add_argument("--probes", type=int, default=100, help="later questions per conversation (at most)")
    parser.add_argument("--min-session", type=int, default=20, help="probes are asked from this session on")
    parser.add_argument("--min-candidates", type=int, default=4,
                        help="a probe with references is about a noun at least this many earlier turns mention")
    args = parser.parse_args()
    data = build(args.seed, args.conversations, args.dev, args.probes, args.min_session, args.min_candidates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    for conv in data["conversations"]:
        kinds = {}
        for p in conv["probes"]:
            kinds["+".join(p["refs"])] = kinds.get("+".join(p["refs"]), 0) + 1
        print(f"conversation {conv['id']} ({conv['split']}): {len(conv['sessions'])} sessions, "
              f"{len(conv['turns'])} turns, {len(conv['probes'])} probes {kinds}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
