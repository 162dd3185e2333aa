"""Text features of the memory scorer that need no model: content words, IDF, question types, picture references.

Used by `shared.memory`: saliency (how informative a remembered answer is), the lexical relevance fallback, and the
"later reference" part of frequency. All lower-case ASCII word tokens; nothing here is learned except document counts.
"""
from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_TOKEN = re.compile(r"[a-z0-9]+")

# Function words, dialogue fillers and the picture nouns (pictures are matched separately by `picture_refs`).
STOPWORDS = frozenset(
    """a an the this that these those it its it's is are was were be been being am do does did doing done have has
    had having can could will would shall should may might must of in on at to from by with about into over under
    above below up down out off for and or but not no yes yeah nope yep i you he she we they me him her us them my
    your his our their what which who whom whose where when why how there here any some all each both either neither
    one ones so than too very just also then now ever only as if because while again still kind sort type much many
    more most other another same such own see seen look looks looking tell say said think thought know picture
    pictures image images photo photos shown show showing earlier before previous first second third fourth fifth
    last please thing things""".split()
)

YES_NO_OPENERS = frozenset("is are was were do does did can could will would has have had should may might".split())
ATTRIBUTE_OPENERS = frozenset("what which who where how whose".split())

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8}
_PICTURE = r"(?:picture|image|photo|pic)s?"
_ORDINAL_REF = re.compile(rf"\b({'|'.join(_ORDINALS)}|\d+(?:st|nd|rd|th))\s+(?:\w+\s+)?{_PICTURE}\b")
_NUMBER_REF = re.compile(rf"\b{_PICTURE}\s*(?:#|no\.?|number)?\s*(\d+)\b")
_PREVIOUS_REF = re.compile(rf"\b(?:previous|earlier|last|prior|preceding|other)\s+{_PICTURE}\b")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; e.g. `tokenize("What's red?") == ["what", "s", "red"]`."""
    return _TOKEN.findall(str(text).lower())


def content_words(text: str) -> list[str]:
    """Tokens that carry content (no stopwords, no 1-letter tokens), in order; e.g. `content_words("is it red?")`."""
    return [t for t in tokenize(text) if len(t) > 1 and t not in STOPWORDS]


@functools.lru_cache(maxsize=1 << 16)  # a conversation's vocabulary is small; stemming every token adds up
def stem(word: str) -> str:
    """Plural folding, so "windows" finds "window"; e.g. `stem("glasses") == "glass"`, `stem("bus") == "bus"`."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(suffix) and len(word) >= len(suffix) + 2:
            return word[: -len(suffix)] + keep
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def terms(text: str) -> list[str]:
    """Content words with plurals folded: what the word index and IDF tables count; e.g. `terms("red trees")`."""
    return [stem(w) for w in content_words(text)]


def question_type(question: str) -> str:
    """"yes_no", "attribute" (what/which/how/...) or "other"; e.g. `question_type("is it red?") == "yes_no"`."""
    tokens = tokenize(question)
    if not tokens:
        return "other"
    if tokens[0] in YES_NO_OPENERS:
        return "yes_no"
    if tokens[0] in ATTRIBUTE_OPENERS or any(t in ATTRIBUTE_OPENERS for t in tokens[:3]):
        return "attribute"
    return "other"


def picture_refs(question: str, current_picture: int | None = None) -> set[int]:
    """Picture numbers a question names; e.g. `picture_refs("what was in the first picture?") == {1}`.

    "previous/earlier/last/other picture" means the picture before `current_picture` (ignored when that is unknown).
    """
    text = str(question).lower()
    refs = set()
    for m in _ORDINAL_REF.finditer(text):
        word = m.group(1)
        refs.add(_ORDINALS[word] if word in _ORDINALS else int(re.sub(r"\D", "", word)))
    refs.update(int(m.group(1)) for m in _NUMBER_REF.finditer(text))
    if current_picture is not None and current_picture > 1 and _PREVIOUS_REF.search(text):
        refs.add(current_picture - 1)
    return {r for r in refs if r >= 1}


def bm25_idf(doc_freq: float, num_docs: float) -> float:
    """Smoothed BM25 inverse document frequency (never negative); e.g. `bm25_idf(1, 10)`."""
    return math.log(1.0 + (num_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class IdfTable:
    """Document frequencies of content words over a corpus: `IdfTable.fit(answers).idf("red")`.

    A store of ten turns has too few documents for a meaningful IDF; fitting the table on a training split's
    questions and answers gives saliency corpus-level statistics. Unknown words get the IDF of a word seen once.
    """

    def __init__(self, doc_freq: dict[str, int], num_docs: int):
        self.doc_freq = dict(doc_freq)
        self.num_docs = int(num_docs)

    @classmethod
    def fit(cls, documents: Iterable[str]) -> IdfTable:
        counts: Counter[str] = Counter()
        n = 0
        for doc in documents:
            counts.update(set(terms(doc)))
            n += 1
        return cls(dict(counts), n)

    def idf(self, word: str) -> float:
        return bm25_idf(self.doc_freq.get(word, 1), max(self.num_docs, 1))

    @property
    def max_idf(self) -> float:
        return bm25_idf(1, max(self.num_docs, 1))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"num_docs": self.num_docs, "doc_freq": self.doc_freq}, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> IdfTable:
        try:
            data = json.loads(Path(path).read_text())
            return cls({str(k): int(v) for k, v in data["doc_freq"].items()}, int(data["num_docs"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not an IDF table ({e}); write one with IdfTable.fit(texts).save(path)") from None
