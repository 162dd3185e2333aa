"""Read and validate VisDial v1.0 dialog files and dense annotations (docs/CONTRACTS.md, "VisDial JSON").

The published format stores every question and answer once in `data.questions` / `data.answers` and refers to
them by index; the loader resolves those indices into the pool's own `str` objects (no copies) and pauses the GC
while it builds, so reading, validating and resolving the full train split (123k dialogs, 1.2M rounds, 120M option
indices) takes about as long as a plain `json.load` of the file. Everything that does not fit the format raises
`VisDialError("<file>: <json path>: <problem>; <fix>")` instead of a KeyError later on.
"""
from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, NoReturn

from shared.errors import InputError

DEFAULT_NUM_OPTIONS = 100
KINDS = ("current", "memory")
ROUND_KEYS = frozenset({"question", "answer", "answer_options", "gt_index", "image_id", "kind", "evidence_round"})
DIALOG_KEYS = frozenset({"image_id", "caption", "dialog"})
REBUILD = "rebuild it with `make data-demo` (demo data) or `make data-visdial` (real VisDial v1.0)"
_INT_ONLY = {int}


class VisDialError(InputError):
    """A VisDial or dense-annotation file that does not follow docs/CONTRACTS.md."""


@dataclass(frozen=True, slots=True)
class Round:
    round_id: int  # 1-based, as in the dense annotations and predictions.jsonl
    question: str
    answer: str | None  # None only for the open last round of the test split
    options: tuple[str, ...] | None  # data.num_options candidate answers, strings shared with the pool
    gt_index: int | None
    image_id: int  # image shown at this turn (the dialog's image unless the round names its own)
    kind: str | None = None  # "current" | "memory" (demo extension)
    evidence_round: int | None = None  # 1-based turn holding the evidence for a memory question


@dataclass(frozen=True, slots=True)
class Dialog:
    image_id: int
    caption: str
    rounds: tuple[Round, ...]

    @property
    def num_rounds(self) -> int:
        return len(self.rounds)

    def image_ids(self) -> list[int]:
        """Distinct images shown in this dialog, in the order they first appear."""
        return list(dict.fromkeys([self.image_id, *(r.image_id for r in self.rounds)]))


@dataclass(frozen=True)
class VisDialSplit:
    path: Path
    version: str
    split: str  # "train", "val2018", "test2018" in VisDial; "train"/"val"/"test" in the demo
    num_options: int
    dialogs: tuple[Dialog, ...]

    def __len__(self) -> int:
        return len(self.dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(self.dialogs)

    @property
    def is_test(self) -> bool:
        return self.split.startswith("test")

    @property
    def num_rounds(self) -> int:
        """The longest dialog's round count (R, the padded width of the embedding shards)."""
        return max(d.num_rounds for d in self.dialogs)

    def image_ids(self) -> list[int]:
        """Every distinct image of the split, per-round images included, in first-seen order."""
        seen: dict[int, None] = {}
        for d in self.dialogs:
            seen[d.image_id] = None
            for r in d.rounds:
                seen[r.image_id] = None
        return list(seen)

    def dialog_by_image(self) -> dict[int, Dialog]:
        return {d.image_id: d for d in self.dialogs}


def _kind(value: Any) -> str:
    """Describe a JSON value the way the file spells it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return "an array" if isinstance(value, list) else "an object"


class _Checker:
    """Raises VisDialError for one file; the slow diagnosing paths live here, the fast checks stay inline."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        raise VisDialError(f"{self.file}: {where}: {problem}; {fix}")

    def field(self, obj: dict, key: str, parent: str, tp: type, fix: str, default: Any = ...) -> Any:
        where = f"{parent}.{key}" if parent else key
        if key not in obj:
            if default is not ...:
                return default
            self.fail(where, f"missing (found keys {sorted(obj)})", fix)
        value = obj[key]
        if type(value) is not tp:  # exact type: a JSON boolean is no integer
            names = {int: "an integer", str: "a string", list: "an array", dict: "an object"}
            self.fail(where, f"expected {names[tp]}, got {_kind(value)}", fix)
        return value

    def int_in(self, obj: dict, key: str, parent: str, lo: int, hi: int | None, fix: str, default: Any = ...) -> Any:
        """An integer field in lo..hi (hi None = unbounded); returns `default` when the key is absent or null."""
        if default is not ... and obj.get(key) is None:
            return default
        value = self.field(obj, key, parent, int, fix)
        if value < lo or (hi is not None and value > hi):
            self.fail(f"{parent}.{key}", f"{value} is below {lo}" if hi is None else f"{value} not in {lo}..{hi}", fix)
        return value

    def pool(self, data: dict, key: str) -> list[str]:
        pool = self.field(data, key, "data", list, f"data.{key} is the array of {key[:-1]} strings; {REBUILD}")
        if set(map(type, pool)) - {str}:
            j = next(j for j, s in enumerate(pool) if type(s) is not str)
            self.fail(f"data.{key}[{j}]", f"expected a string, got {_kind(pool[j])}", REBUILD)
        return pool

    def options(self, opts: Any, where: str, n: int, answers: list[str]) -> tuple[str, ...]:
        if type(opts) is not list:
            self.fail(where, f"expected an array of indices into data.answers, got {_kind(opts)}", REBUILD)
        if len(opts) != n:
            self.fail(where, f"{len(opts)} options, expected data.num_options = {n}", "every round lists exactly "
                      "num_options candidates; set data.num_options if the file uses another count")
        if set(map(type, opts)) != _INT_ONLY:
            j = next(j for j, v in enumerate(opts) if type(v) is not int)
            self.fail(f"{where}[{j}]", f"expected an integer index into data.answers, got {_kind(opts[j])}", REBUILD)
        try:
            if min(opts) < 0:
                raise IndexError
            picked = itemgetter(*opts)(answers)
        except IndexError:
            j = next(j for j, v in enumerate(opts) if not 0 <= v < len(answers))
            self.fail(f"{where}[{j}]", f"{opts[j]} not in 0..{len(answers) - 1} (indices into data.answers)", REBUILD)
        return picked if n > 1 else (picked,)

    def bad_index(self, r: dict, key: str, where: str, size: int, pool: str) -> NoReturn:
        self.int_in(r, key, where, 0, size - 1, f"{key} is an index into {pool}; {REBUILD}")
        raise AssertionError("unreachable: int_in accepted a value the fast check rejected")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building millions of acyclic objects: otherwise its collections rescan the whole
    growing heap (measured: 2x slower on a train-sized file). JSON trees hold no cycles, so nothing leaks."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise VisDialError(f"{path}: file not found; {REBUILD}, or pass the right path")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise VisDialError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg}); "
                           f"the file is truncated or corrupt: {REBUILD}") from None
    except UnicodeDecodeError as e:
        raise VisDialError(f"{path}: byte {e.start}: not UTF-8 text; the file is corrupt: {REBUILD}") from None


def load_visdial(path: str | Path) -> VisDialSplit:
    """Load and validate a VisDial v1.0 train/val/test file (or a demo file with the CONTRACTS.md extensions)."""
    path = Path(path)
    with _gc_paused():
        return _parse_visdial(path, _read_json(path))


def _parse_visdial(path: Path, doc: Any) -> VisDialSplit:
    ck = _Checker(str(path))
    if type(doc) is not dict:
        ck.fail("top level", f"expected an object {{version, split, data}}, got {_kind(doc)}",
                f"this is not a VisDial dialog file (a dense-annotation file goes to load_dense); {REBUILD}")
    version = ck.field(doc, "version", "", str, 'VisDial v1.0 files carry "version": "1.0"')
    split = ck.field(doc, "split", "", str, 'name the split, e.g. "split": "val2018" (a test split leaves the last '
                     "round open)")
    data = ck.field(doc, "data", "", dict, f"data holds questions, answers and dialogs; {REBUILD}")
    num_options = ck.int_in(data, "num_options", "data", 1, None, "the length of every answer_options (default 100)",
                             DEFAULT_NUM_OPTIONS)
    questions, answers = ck.pool(data, "questions"), ck.pool(data, "answers")
    raw_dialogs = ck.field(data, "dialogs", "data", list, f"data.dialogs is the array of dialogs; {REBUILD}")
    if not raw_dialogs:
        ck.fail("data.dialogs", "empty: the split has no dialogs", REBUILD)
    reader = _RoundReader(ck, questions, answers, num_options, split.startswith("test"))
    first_use: dict[int, int] = {}
    dialogs = []
    for i, d in enumerate(raw_dialogs):
        where = f"data.dialogs[{i}]"
        if type(d) is not dict:
            ck.fail(where, f"expected an object {{image_id, caption, dialog}}, got {_kind(d)}", REBUILD)
        if not d.keys() <= DIALOG_KEYS:
            ck.fail(where, f"unknown key {sorted(d.keys() - DIALOG_KEYS)[0]!r}",
                    f"a dialog has only {sorted(DIALOG_KEYS)}")
        image_id = ck.int_in(d, "image_id", where, 0, None, "image_id is the COCO / VisualDialog image number")
        if image_id in first_use:
            ck.fail(f"{where}.image_id", f"{image_id} already used by data.dialogs[{first_use[image_id]}]",
                    "a split holds one dialog per image: remove or renumber the duplicate")
        first_use[image_id] = i
        caption = ck.field(d, "caption", where, str, "every dialog starts from its image caption")
        raw_rounds = ck.field(d, "dialog", where, list, "dialog is the array of rounds")
        if not raw_rounds:
            ck.fail(f"{where}.dialog", "empty: a dialog needs at least one round", "drop the dialog or add its rounds")
        last = len(raw_rounds) - 1
        rounds = tuple([reader.read(r, f"{where}.dialog[{k}]", k, k == last, image_id)
                        for k, r in enumerate(raw_rounds)])
        dialogs.append(Dialog(image_id, caption, rounds))
    return VisDialSplit(path, version, split, num_options, tuple(dialogs))


class _RoundReader:
    """The hot loop: one call per round (1.2M for VisDial train), so `where` strings are only used on failure."""

    def __init__(self, ck: _Checker, questions: list[str], answers: list[str], num_options: int, is_test: bool):
        self.ck, self.questions, self.answers = ck, questions, answers
        self.n_opt, self.is_test = num_options, is_test

    def read(self, r: Any, where: str, k: int, last: bool, image_id: int) -> Round:
        ck = self.ck
        if type(r) is not dict:
            ck.fail(where, f"expected an object {{question, answer, answer_options, gt_index}}, got {_kind(r)}",
                    REBUILD)
        if not r.keys() <= ROUND_KEYS:
            ck.fail(where, f"unknown key {sorted(r.keys() - ROUND_KEYS)[0]!r}",
                    f"a round has only {sorted(ROUND_KEYS)}")
        q = r.get("question")
        if type(q) is not int or not 0 <= q < len(self.questions):
            ck.bad_index(r, "question", where, len(self.questions), "data.questions")
        a = r.get("answer")
        if a is None:
            if not (self.is_test and last):
                ck.fail(f"{where}.answer", "missing" if "answer" not in r else "null",
                        "only the last round of a test split may be open; every other round needs its answer index")
        elif type(a) is not int or not 0 <= a < len(self.answers):
            ck.bad_index(r, "answer", where, len(self.answers), "data.answers")
        opts = r.get("answer_options")
        options = None if opts is None else ck.options(opts, f"{where}.answer_options", self.n_opt, self.answers)
        gt = r.get("gt_index")
        if gt is not None:
            gt = ck.int_in(r, "gt_index", where, 0, self.n_opt - 1,
                           "gt_index is the answer's position in answer_options")
            if opts is None or a is None:
                ck.fail(f"{where}.gt_index", f"given without {'answer_options' if opts is None else 'answer'}",
                        "gt_index points at the answer inside answer_options; give all three or drop gt_index")
            if opts[gt] != a:
                ck.fail(f"{where}.gt_index", f"answer_options[{gt}] is answer {opts[gt]} "
                        f"({self.answers[opts[gt]]!r}) but answer is {a} ({self.answers[a]!r})",
                        "gt_index must point at the round's answer")
        elif a is not None and opts is not None:
            ck.fail(f"{where}.gt_index", "missing while answer and answer_options are given",
                    "add the answer's position in answer_options (needed to rank the candidates)")
        return Round(k + 1, self.questions[q], None if a is None else self.answers[a], options, gt,
                     *self._extensions(r, where, k, image_id))

    def _extensions(self, r: dict, where: str, k: int, image_id: int) -> tuple[int, str | None, int | None]:
        ck = self.ck
        round_image = image_id
        if "image_id" in r:
            round_image = ck.int_in(r, "image_id", where, 0, None,
                                    "a round's image_id names the image shown at that turn")
            if k == 0 and round_image != image_id:
                ck.fail(f"{where}.image_id", f"{round_image} differs from the dialog's image_id {image_id}",
                        "the dialog's image_id is the image of its first round")
        kind = r.get("kind")
        if kind is not None and kind not in KINDS:
            ck.fail(f"{where}.kind", f"{_kind(kind)} is not one of {list(KINDS)}", "use \"current\" or \"memory\"")
        evidence = ck.int_in(r, "evidence_round", where, 1, k + 1,
                             "evidence_round is a 1-based turn up to this one", None)
        if kind == "memory" and (evidence is None or evidence > k):
            ck.fail(f"{where}.evidence_round", "missing" if evidence is None else f"{evidence} not in 1..{k}",
                    "a memory question needs the earlier (1-based) turn that holds its evidence")
        return round_image, kind, evidence


def load_dense(path: str | Path, split: VisDialSplit | None = None) -> dict[tuple[int, int], list[float]]:
    """Load dense relevance scores `[{image_id, round_id (1-based), gt_relevance[num_options]}]`.

    With `split`, every entry must name a dialog and round of that split and carry `split.num_options` scores;
    without it, every entry must have as many scores as the first one. (`relevance`, the key of the train dense
    sample, is read like `gt_relevance`.)
    """
    path = Path(path)
    with _gc_paused():
        return _parse_dense(path, _read_json(path), split)


def _parse_dense(path: Path, doc: Any, split: VisDialSplit | None) -> dict[tuple[int, int], list[float]]:
    ck = _Checker(str(path))
    if type(doc) is not list:
        ck.fail("top level", f"expected an array of {{image_id, round_id, gt_relevance}} entries, "
                f"got {_kind(doc)}", "this is not a dense-annotation file (dialog files go to load_visdial)")
    rounds_of = None if split is None else {d.image_id: d.num_rounds for d in split.dialogs}
    split_file = None if split is None else split.path
    n_opt = None if split is None else split.num_options
    first_at: dict[tuple[int, int], int] = {}
    out: dict[tuple[int, int], list[float]] = {}
    for i, e in enumerate(doc):
        where = f"[{i}]"
        if type(e) is not dict:
            ck.fail(where, f"expected an object {{image_id, round_id, gt_relevance}}, got {_kind(e)}", REBUILD)
        image_id = ck.int_in(e, "image_id", where, 0, None, "image_id names the dialog's image")
        round_id = ck.int_in(e, "round_id", where, 1, None, "round_id is 1-based")
        if rounds_of is not None:
            if image_id not in rounds_of:
                ck.fail(f"{where}.image_id", f"{image_id} is not a dialog of {split_file}",
                        "pair the dense file with the dialog file of the same split")
            if round_id > rounds_of[image_id]:
                ck.fail(f"{where}.round_id", f"{round_id} not in 1..{rounds_of[image_id]}",
                        f"the dialog of image {image_id} has {rounds_of[image_id]} rounds")
        key = "relevance" if "gt_relevance" not in e and "relevance" in e else "gt_relevance"
        scores = ck.field(e, key, where, list, "gt_relevance holds one score per answer option")
        n_opt = len(scores) if n_opt is None else n_opt
        if len(scores) != n_opt:
            ck.fail(f"{where}.{key}", f"{len(scores)} scores, expected {n_opt}",
                    "one score per answer option" + ("" if split is None else " (data.num_options of the split)"))
        for j, s in enumerate(scores):
            if type(s) not in (int, float) or not math.isfinite(s) or s < 0:
                ck.fail(f"{where}.{key}[{j}]", f"{_kind(s)} is not a finite score >= 0",
                        "relevance is a number in [0, 1]")
        if (image_id, round_id) in first_at:
            ck.fail(where, f"(image_id {image_id}, round_id {round_id}) already annotated at "
                    f"[{first_at[image_id, round_id]}]", "keep one entry per round")
        first_at[image_id, round_id] = i
        out[image_id, round_id] = [float(s) for s in scores]
    return out
