"""Time phrases of a query against the times of the memories: "two weeks ago", "on March 5", "last time we talked".

`parse_when(query, now)` finds the phrases (no model; English, dates in UTC); `TimeRefs.weights(...)` says per
memory how well its time fits, in [0, 1]: 1 inside the span a phrase means, falling linearly to 0 over as much again
beyond it ("two weeks ago" = 14 +- 5 days at full weight, 0 beyond 14 +- 10; a named day: its neighbours get half).
Session phrases ("our first chat", "last time we talked", "the time before last") name sessions, which the store
counts from gaps in the turns' times.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

DAY = 86_400.0
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2, "few": 3, "several": 4}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_MONTHS = {m: i for i, m in enumerate("january february march april may june july august september october november "
                                      "december".split(), 1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items()) if m != "may"})
_MONTHS["sept"] = 9
_WEEKDAYS = {d: i for i, d in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())}
_UNIT_DAYS = {"day": 1.0, "week": 7.0, "month": 30.4, "year": 365.0}

_NUM = rf"(?:{'|'.join(_NUMBERS)}|\d+)"
_AGO = re.compile(rf"\b(?:a\s+)?({_NUM})(?:\s+of)?\s+(day|week|month|year)s?\s+ago\b")
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b"
                   rf"|\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b")
_IN_MONTH = re.compile(rf"\b(?:in|during|back in|early|late|mid|since)\s+({_MONTH})\b")
_WEEKDAY = re.compile(rf"\b(?:on|last)\s+({'|'.join(_WEEKDAYS)})\b")
_SESSION_WORD = r"(?:chat|session|conversation|talk|call)s?"
_ORD = rf"({'|'.join(_ORDINALS)}|\d+(?:st|nd|rd|th))"
_SESSION_ORD = re.compile(rf"\b(?:our|the)\s+(?:very\s+)?{_ORD}\s+(?:{_SESSION_WORD}|time\s+we\s+\w+)\b")
_SESSION_BEFORE_LAST = re.compile(rf"\b(?:the\s+)?(?:time|{_SESSION_WORD})\s+before\s+(?:last|the\s+last)\b")
_SESSION_LAST = re.compile(rf"\blast\s+time\b|\b(?:our|the)\s+(?:last|previous)\s+{_SESSION_WORD}\b")
_SESSIONS_AGO = re.compile(rf"\b({_NUM})\s+{_SESSION_WORD}\s+ago\b")


@dataclass
class TimeRefs:
    """What the time phrases of one query mean: spans of age in days (center, tolerance), calendar spans
    (first day, last day, day numbers), session numbers (absolute) and sessions back from the current one."""

    ages: list[tuple[float, float]] = field(default_factory=list)
    days: list[tuple[int, int]] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    sessions_back: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ages or self.days or self.sessions or self.sessions_back)

    def weights(self, now: float, times: np.ndarray, sessions: np.ndarray, current_session: int) -> np.ndarray:
        """Per memory: the best fit of any phrase, in [0, 1] (memories without a time: 0)."""
        out = np.zeros(len(times), dtype=np.float32)
        known = np.isfinite(times)
        day_now = np.floor(now / DAY)
        age = np.where(known, day_now - np.floor(np.where(known, times, 0.0) / DAY), np.inf)
        for center, tol in self.ages:
            np.maximum(out, np.clip(2.0 - np.abs(age - center) / tol, 0.0, 1.0), out=out)
        for first, last in self.days:
            outside = np.maximum((day_now - last) - age, age - (day_now - first))  # days outside the span
            np.maximum(out, np.clip(1.0 - outside / max(2.0, 0.5 * (last - first + 1)), 0.0, 1.0), out=out)
        wanted = set(self.sessions) | {current_session - back for back in self.sessions_back}
        if wanted:
            np.maximum(out, np.isin(sessions, sorted(wanted)).astype(np.float32), out=out)
        return out


def _count(word: str) -> int:
    return _NUMBERS[word] if word in _NUMBERS else int(word)


def _latest(month: int, day: int | None, today: date) -> tuple[int, int] | None:
    """(first, last) epoch day of the latest such date or month not after `today`; None for no such date."""
    epoch = date(1970, 1, 1)
    for year in (today.year, today.year - 1):
        try:
            first = date(year, month, day or 1)
        except ValueError:
            return None
        if first <= today:
            last = first if day else (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
            return (first - epoch).days, (min(last, today) - epoch).days
    return None


def parse_when(query: str, now: float) -> TimeRefs:
    """Time and session phrases of `query` asked at `now` (epoch seconds); e.g. `parse_when("two weeks ago?", t)`."""
    text = str(query).lower()
    refs = TimeRefs()
    today = date(1970, 1, 1) + timedelta(days=int(now // DAY))
    for m in _AGO.finditer(text):
        days = _count(m.group(1)) * _UNIT_DAYS[m.group(2)]
        refs.ages.append((days, max(1.0, 0.15 * days) if days < 7 else 0.3 * days + 1.0))
    for word, center, tol in (("yesterday", 1, 0.5), ("day before yesterday", 2, 0.5), ("today", 0, 0.5),
                              ("last week", 7, 3.5), ("last month", 30.4, 10.0), ("last year", 365, 90.0)):
        if re.search(rf"\b{word}\b", text) and not (word == "yesterday" and "day before yesterday" in text):
            refs.ages.append((center, tol))
    for m in _DATE.finditer(text):
        month, day = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        if (span := _latest(_MONTHS[month], int(day), today)) is not None:
            refs.days.append(span)
    dated = {m.group(1) or m.group(4) for m in _DATE.finditer(text)}
    for m in _IN_MONTH.finditer(text):
        if m.group(1) not in dated and (span := _latest(_MONTHS[m.group(1)], None, today)) is not None:
            refs.days.append(span)
    for m in _WEEKDAY.finditer(text):
        back = (today.weekday() - _WEEKDAYS[m.group(1)] - 1) % 7 + 1  # 1..7 days ago
        refs.ages.append((float(back), 0.5))
    for m in _SESSION_ORD.finditer(text):
        word = m.group(1)
        refs.sessions.append(_ORDINALS[word] if word in _ORDINALS else int(re.sub(r"\D", "", word)))
    if _SESSION_BEFORE_LAST.search(text):
        refs.sessions_back.append(2)
    elif _SESSION_LAST.search(text):
        refs.sessions_back.append(1)
    refs.sessions_back += [_count(m.group(1)) for m in _SESSIONS_AGO.finditer(text)]
    return refs
