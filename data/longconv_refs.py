"""How the long-conversation benchmark's later questions refer back to a session: words, nouns, time phrases.

Used by data/build_longconv.py. Independent of shared/memory (the system under test): its own tokeniser and stems,
WordNet (from the evaluate venv's nltk data) only to tell nouns from verbs and adjectives. Every function is pure.
"""
from __future__ import annotations

import re
from datetime import date, timedelta

DAY = 86_400
_WORD = re.compile(r"[a-z]+")
# Nouns too vague to name what a question was about, and the picture words themselves.
GENERIC = frozenset("""picture pictures photo photos image images pic shot view side front top back bottom background
    foreground area part parts thing things lot lots kind sort type color colour colors colours day time way one ones
    anything something everything nothing other others more much number bit piece well sure look
    can will may might must shall would could should while yet still also even ever young old new""".split())
# Words a question may share with its evidence turn without copying it.
FUNCTION_WORDS = frozenset("the a an in of on at to and or is are was were what did do we you it that this".split())
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
                11: "eleven", 12: "twelve"}
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def stem(word: str) -> str:
    """Crude plural folding, enough to call "tree" and "trees" the same topic."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(suffix) and len(word) >= len(suffix) + 2:
            return word[: -len(suffix)] + keep
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words(text))


class Nouns:
    """Words WordNet knows mostly as nouns ("guitar", "trees"; not "wearing", "sunny", "new"), cached."""

    def __init__(self):
        from nltk.corpus import wordnet

        self.wn = wordnet
        self._cache: dict[str, bool] = {}

    def __call__(self, word: str) -> bool:
        if word not in self._cache:
            wn = self.wn
            usage = {p: self._usage(word, p) for p in (wn.NOUN, wn.VERB, wn.ADJ, wn.ADV)}
            noun, other = usage.pop(wn.NOUN), max(usage.values())
            # mostly used as a noun (SemCor counts); words too rare for counts: more noun senses than any other
            self._cache[word] = (len(word) > 2 and word not in GENERIC and stem(word) not in GENERIC
                                 and noun[0] > 0 and (noun[1] > other[1] or (noun[1] == other[1] == 0
                                                                             and noun[0] >= other[0])))
        return self._cache[word]

    def _usage(self, word: str, pos: str) -> tuple[int, int]:
        """(senses, SemCor count of its lemma) of `word` as part of speech `pos`."""
        base = self.wn.morphy(word, pos)
        return len(self.wn.synsets(word, pos=pos)), sum(x.count() for x in self.wn.lemmas(base, pos)) if base else 0

    def of(self, text: str) -> list[str]:
        """The nouns of `text` in order, each once."""
        return list(dict.fromkeys(w for w in words(text) if self(w)))


def day_of(seconds: float) -> int:
    """UTC day number of an epoch time."""
    return int(seconds // DAY)


def month_of(day: int) -> tuple[int, int]:
    d = date(1970, 1, 1) + timedelta(days=day)
    return d.year, d.month


def relative_phrase(age_days: int) -> tuple[str, int, int]:
    """How a person says "that many days ago", and the ages (in days) the phrase can mean (for ambiguity checks)."""
    if age_days == 1:
        return "yesterday", 1, 1
    if age_days <= 6:
        return f"{NUMBER_WORDS[age_days]} days ago", age_days - 1, age_days + 1
    if age_days <= 10:
        return "a week ago", 6, 11
    for weeks, (lo, hi) in ((2, (11, 17)), (3, (18, 24))):
        if lo <= age_days <= hi:
            return f"{NUMBER_WORDS[weeks]} weeks ago", lo - 1, hi + 1
    months = max(1, round(age_days / 30.4))
    lo, hi = int(30.4 * months - 12), int(30.4 * months + 12)
    return ("about a month ago" if months == 1 else f"about {NUMBER_WORDS.get(months, months)} months ago"), lo, hi


def date_phrase(day: int, with_day: bool) -> str:
    """"on March 5" (one day) or "back in March" (the month)."""
    d = date(1970, 1, 1) + timedelta(days=day)
    return f"on {d:%B} {d.day}" if with_day else f"back in {d:%B}"


def session_phrase(evidence: int, asked: int) -> str | None:
    """"in our first chat", "last time we talked", ...; None when no natural phrase names that session."""
    if evidence == asked - 1:
        return "last time we talked"
    if evidence == asked - 2:
        return "the time before last"
    if evidence in ORDINALS:
        return f"in our {ORDINALS[evidence]} chat"
    return None


# Phrasings of a later question, by the references it makes. {topic} is "the <noun>" from the evidence question;
# {pic} names the picture by nouns of its caption; {when} is a time or session phrase; {name} the speaker who
# showed the picture and answered; {ordinal} the picture's place in the conversation.
TEMPLATES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("picture",): ("what was said about {topic} in {pic}?", "in {pic}, what was the answer about {topic}?",
                   "remind me what we said about {topic} in {pic}."),
    ("time",): ("{When}, what was said about {topic}?", "what did we say about {topic} {when}?"),
    ("session",): ("{When}, what came up about {topic}?", "what was said about {topic} {when}?"),
    ("ordinal",): ("in the {ordinal} picture, what was said about {topic}?",
                   "what did we say about {topic} in the {ordinal} picture?"),
    ("speaker",): ("what did {name} say about {topic}?", "remind me what {name} told me about {topic}."),
    ("speaker", "picture"): ("what did {name} tell me about {topic} in {pic}?",
                             "{name} showed me {pic}; what did {name} say about {topic}?"),
    ("speaker", "time"): ("{When}, what did {name} say about {topic}?",
                          "what did {name} tell me about {topic} {when}?"),
    ("picture", "time"): ("{When}, when we looked at {pic}, what was said about {topic}?",
                          "what did we say about {topic} in {pic} {when}?"),
    ("topic",): ("what was said about {topic}?", "do you remember what we said about {topic}?"),
}


def picture_phrase(nouns: list[str], variant: int) -> str:
    if len(nouns) == 2:
        return f"the photo with the {nouns[0]} and the {nouns[1]}"
    return (f"the picture of the {nouns[0]}", f"the {nouns[0]} photo", f"that photo with the {nouns[0]}")[variant % 3]


def phrase(kinds: tuple[str, ...], variant: int, **slots: str) -> str:
    """The question text for one template variant, with a capitalised {When} where it opens the sentence."""
    template = TEMPLATES[kinds][variant % len(TEMPLATES[kinds])]
    when = slots.get("when", "")
    text = template.format(When=when[:1].upper() + when[1:], **slots)
    return text[:1].upper() + text[1:]
