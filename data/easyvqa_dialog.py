"""EasyVQA-Dialog: 10-round dialogs (single-image and multi-image "memory" dialogs) built from easy-VQA.

easy-VQA (https://github.com/vzhou842/easy-VQA, MIT, (c) 2019 Victor Zhou) ships 64x64 images of one coloured shape
with short questions over 13 answers. This module turns them into dialogs; `prepare_demo.py` writes the VisDial JSON.
Everything here is a pure function of its inputs and the `random.Random` it is given, so a seed fixes the output.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from random import Random

COLORS = ("green", "red", "gray", "teal", "black", "yellow", "brown", "blue")
SHAPES = ("circle", "rectangle", "triangle")
YES_NO = ("yes", "no")
ROUNDS = 10
TEST_ID_OFFSET = 100_000  # easy-VQA train and test images both count from 0; ours must not collide
ORDINALS = ("first", "second", "third")
CURRENT_TEMPLATES = {  # easy-VQA's own generic wording, reused for the colour/shape turns we must guarantee
    "color": ("what color is the shape?", "what is the color of the shape?"),
    "shape": ("what shape is in the image?", "what shape does the image contain?", "what shape is present?"),
}
TEMPLATE_QUESTIONS = frozenset(q for wordings in CURRENT_TEMPLATES.values() for q in wordings)
MEMORY_TEMPLATES = {  # (attribute, yes/no form) -> wordings; {o} = ordinal of the earlier picture, {v} = value asked
    ("color", False): ("what color was the shape in the {o} picture?",
                       "what was the color of the shape in the {o} picture?"),
    ("shape", False): ("what shape was in the {o} picture?", "what shape did the {o} picture contain?"),
    ("color", True): ("was the shape in the {o} picture {v}?", "was there a {v} shape in the {o} picture?"),
    ("shape", True): ("was there a {v} in the {o} picture?", "did the {o} picture contain a {v}?"),
}


@dataclass(frozen=True)
class ImageQA:
    """One easy-VQA image with its questions and the colour/shape read off them (None when they do not say)."""

    image_id: int
    path: str
    qa: tuple[tuple[str, str], ...]
    color: str | None
    shape: str | None


@dataclass
class Turn:
    question: str
    answer: str
    kind: str  # "current" | "memory"
    image_id: int  # the picture shown at this turn
    evidence_round: int | None = None
    current_answer: str | None = None  # memory turns: the (wrong) answer about the picture on screen


@dataclass
class DialogPlan:
    image_id: int
    turns: list[Turn]
    pictures: tuple[int, ...] = field(default=())  # >1 entry for memory dialogs

    @property
    def is_memory(self) -> bool:
        return len(self.pictures) > 1


def derive_facts(qa: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """Colour and shape of an image from its questions and answers.

    A word in an open question is a premise ("what is the blue shape?" -> blue); in a yes/no question it holds when the
    answer is "yes" xor the question is negated ("is there not a red shape?" "no" -> red). When no statement names the
    value, seven excluded colours (two excluded shapes) leave the last. Contradictions raise ValueError.
    """
    result: list[str | None] = []
    for vocab in (COLORS, SHAPES):
        held, excluded = set(), set()
        for question, answer in qa:
            if answer in vocab:
                held.add(answer)
            negated = " not " in question or question.startswith("is no ")
            for word in re.findall(r"[a-z]+", question):
                if word in vocab:
                    (held if answer not in YES_NO or (answer == "yes") != negated else excluded).add(word)
        if len(held) > 1 or held & excluded:
            raise ValueError(f"contradictory facts {sorted(held)} / not {sorted(excluded)} in {qa}")
        left = set(vocab) - excluded
        result.append(next(iter(held)) if held else (next(iter(left)) if len(left) == 1 else None))
    return result[0], result[1]


def load_images(questions: tuple[list, list, list], paths: dict[int, str], id_offset: int) -> dict[int, ImageQA]:
    """Group easy-VQA's (questions, answers, image_ids) lists per image; ids are shifted by `id_offset`."""
    grouped: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in zip(*questions, strict=True):
        grouped.setdefault(int(image_id), []).append((question, answer))
    images = {}
    for image_id in sorted(grouped):
        if image_id not in paths:
            raise ValueError(f"easy-VQA question refers to image {image_id}, which has no PNG; reinstall easy-vqa==1.0")
        color, shape = derive_facts(grouped[image_id])
        images[image_id + id_offset] = ImageQA(image_id + id_offset, paths[image_id], tuple(grouped[image_id]),
                                               color, shape)
    return images


def _draw_questions(image: ImageQA, count: int, rng: Random, avoid: set[str] | frozenset[str],
                    previous: str | None) -> list[tuple[str, str]]:
    """`count` QA pairs of one image: unused texts first (shuffled), then repeats; never the same text back to back."""
    fresh = [qa for qa in image.qa if qa[0] not in avoid]
    bag: list[tuple[str, str]] = []
    drawn = []
    for _ in range(count):
        if not bag:
            bag = list(fresh or image.qa)
            rng.shuffle(bag)
            fresh = []  # after the first pass every text may repeat
        pick = next((i for i, qa in enumerate(bag) if qa[0] != previous), 0)
        question, answer = bag.pop(pick)
        drawn.append((question, answer))
        previous = question
    return drawn


def single_dialog(image: ImageQA, rng: Random) -> DialogPlan:
    turns = [Turn(q, a, "current", image.image_id) for q, a in _draw_questions(image, ROUNDS, rng, set(), None)]
    return DialogPlan(image.image_id, turns)


def _segments(num_pictures: int) -> list[tuple[int, int]]:
    """1-based (first, last) round of each picture: pictures appear at rounds 1, 4 (and 7)."""
    starts = [1, 4, 7][:num_pictures]
    return [(s, (starts[i + 1] - 1) if i + 1 < len(starts) else ROUNDS) for i, s in enumerate(starts)]


def _memory_slots(num_pictures: int, rng: Random) -> dict[int, str]:
    """Round -> role ("color", "shape", "memory", "filler") for a memory dialog."""
    roles = {r: "filler" for r in range(1, ROUNDS + 1)}
    first = rng.sample([1, 2, 3], 2)  # picture 1: colour and shape somewhere in its first three turns
    roles[first[0]], roles[first[1]] = "color", "shape"
    for start, _ in _segments(num_pictures)[1:]:  # later pictures: colour and shape on their first two turns
        pair = ["color", "shape"]
        rng.shuffle(pair)
        roles[start], roles[start + 1] = pair
    if num_pictures == 2:
        for r in rng.sample(range(6, ROUNDS + 1), rng.choice((3, 4))):
            roles[r] = "memory"
    else:
        for r in (6, 9, 10):
            roles[r] = "memory"
    return roles


def memory_dialog(pictures: list[ImageQA], rng: Random) -> DialogPlan:
    """Pictures shown at rounds 1, 4 (, 7); later turns ask about an earlier picture (kind "memory")."""
    segments = _segments(len(pictures))
    roles = _memory_slots(len(pictures), rng)
    evidence: dict[tuple[int, str], int] = {}  # (picture index, attribute) -> round where it was asked
    asked: set[tuple[int, str, bool]] = set()
    turns: list[Turn] = []
    for r in range(1, ROUNDS + 1):
        index = max(i for i, (start, _) in enumerate(segments) if start <= r)
        current = pictures[index]
        role = roles[r]
        if role in ("color", "shape"):
            wordings = [q for q in CURRENT_TEMPLATES[role] if q not in {t.question for t in turns}]
            question = rng.choice(wordings or CURRENT_TEMPLATES[role])  # a filler may already have used one
            turns.append(Turn(question, getattr(current, role), "current", current.image_id))
            evidence[(index, role)] = r
        elif role == "memory":
            options = [(p, attr, yn) for p in range(index) for attr in ("color", "shape") for yn in (False, True)
                       if (p, attr, yn) not in asked]
            p, attr, yes_no = rng.choice(options)
            asked.add((p, attr, yes_no))
            turns.append(_memory_turn(pictures[p], p, current, attr, yes_no, evidence[(p, attr)], rng))
        else:
            used = {t.question for t in turns} | TEMPLATE_QUESTIONS  # keep the evidence turns the only such turns
            previous = turns[-1].question if turns else None
            (question, answer), = _draw_questions(current, 1, rng, used, previous)
            turns.append(Turn(question, answer, "current", current.image_id))
    return DialogPlan(pictures[0].image_id, turns, tuple(p.image_id for p in pictures))


def _memory_turn(earlier: ImageQA, index: int, current: ImageQA, attr: str, yes_no: bool, evidence_round: int,
                 rng: Random) -> Turn:
    truth, on_screen = getattr(earlier, attr), getattr(current, attr)
    template = rng.choice(MEMORY_TEMPLATES[(attr, yes_no)])
    if not yes_no:
        question, answer, current_answer = template.format(o=ORDINALS[index]), truth, on_screen
    else:
        # "no" questions name the on-screen value when it differs, so answering about the current picture says "yes"
        if rng.random() < 0.5:
            value = truth
        else:
            others = [v for v in (COLORS if attr == "color" else SHAPES) if v != truth]
            value = on_screen if on_screen != truth else rng.choice(others)
        question = template.format(o=ORDINALS[index], v=value)
        answer, current_answer = ("yes" if value == truth else "no"), ("yes" if value == on_screen else "no")
    return Turn(question, answer, "memory", current.image_id, evidence_round, current_answer)


class ImagePool:
    """The unused images of one easy-VQA split; every draw removes the image, so no picture appears twice."""

    def __init__(self, images: dict[int, ImageQA], rng: Random, source: str):
        self.images, self.source = images, source
        self.order = sorted(images)
        rng.shuffle(self.order)
        self.used: set[int] = set()
        self.buckets: dict[tuple[str, str], list[int]] = {}  # (colour, shape) -> ids, for memory pictures
        for image_id in self.order:
            image = images[image_id]
            if image.color and image.shape:
                self.buckets.setdefault((image.color, image.shape), []).append(image_id)

    def _take(self, image_id: int) -> ImageQA:
        self.used.add(image_id)
        return self.images[image_id]

    def _exhausted(self, what: str) -> ValueError:
        return ValueError(f"easy-VQA {self.source} has no {what} images left ({len(self.images)} in all, "
                          f"{len(self.used)} used); lower the dialog counts (--train/--val/--test-dialogs)")

    def take_any(self) -> ImageQA:
        while self.order:
            image_id = self.order.pop()
            if image_id not in self.used:
                return self._take(image_id)
        raise self._exhausted("unused")

    def take_distinct(self, shown: list[ImageQA], rng: Random) -> ImageQA:
        """An image whose colour and shape both differ from the pictures already shown (relaxed when none is left)."""
        for bucket in self.buckets.values():
            while bucket and bucket[-1] in self.used:
                bucket.pop()
        colors, shapes = {p.color for p in shown}, {p.shape for p in shown}
        combos = [k for k, ids in sorted(self.buckets.items()) if ids]
        rules = (lambda c, s: c not in colors and s not in shapes, lambda c, s: c not in colors or s not in shapes,
                 lambda c, s: True)
        for accept in rules:
            allowed = [k for k in combos if accept(*k)]
            if allowed:
                return self._take(self.buckets[rng.choice(allowed)].pop())
        raise self._exhausted("unused colour-and-shape-known")


def build_dialogs(pool: ImagePool, count: int, memory_share: float, rng: Random) -> list[DialogPlan]:
    """`count` dialogs, round(count * memory_share) of them memory dialogs with 2 or 3 pictures, in shuffled order."""
    num_memory = round(count * memory_share)
    is_memory = [True] * num_memory + [False] * (count - num_memory)
    rng.shuffle(is_memory)
    plans: list[DialogPlan | None] = [None] * count
    for i in [i for i, m in enumerate(is_memory) if m]:  # memory dialogs first: they need images with known facts
        pictures: list[ImageQA] = []
        for _ in range(rng.choice((2, 3))):
            pictures.append(pool.take_distinct(pictures, rng))
        plans[i] = memory_dialog(pictures, rng)
    for i in [i for i, m in enumerate(is_memory) if not m]:
        plans[i] = single_dialog(pool.take_any(), rng)
    return [p for p in plans if p is not None]
