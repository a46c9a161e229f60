"""What a question asks for, and how much of it a quotable unit holds: cheap text evidence that the
extractive generator adds to embedding similarity when it picks the unit that answers.

Two signals, both regular expressions over a few dozen short units (well under a millisecond):

- keyword evidence: the question's content words (analyzed as the keyword index analyzes text)
  found in the unit and its heading, weighted by how rare each is among the candidate units;
- the answer type: "how many" wants an amount, "when" a date or time, "how long" a duration, "who"
  a person or role. A unit holding the asked type is what a reader wants to see first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from knowledge.question_terms import terms

AnswerType = Literal["amount", "date", "duration", "person", "frequency", "contact"]

# "When" asks for a date where it starts a question ("when's all hands", "ok and when is it due"), not
# where it joins a clause ("what standard do we use when deciding", "who do I call when it breaks").
_WHEN_ASKED = r"(?:^|[?.!;:,(-]\s*|\b(?:and|or|but|so|ok|okay|hey|hi|then|by|until|till|since|from)\s+)when\b"

# Checked in order: "how long ago" is a date, "how much time" a duration, before the broader kinds.
_QUESTION_KINDS: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    ("duration", re.compile(r"\bhow\s+(?:long|soon)\b|\bhow\s+(?:much|many)\s+(?:time|days|hours|weeks|months|years|minutes)\b")),
    ("frequency", re.compile(r"\bhow\s+often\b|\bhow\s+frequently\b")),
    ("contact", re.compile(r"\b(?:phone|telephone|hotline|number\s+to\s+call|e-?mail\s+address|url|website|web\s+page)\b")),
    ("amount", re.compile(
        r"\bhow\s+(?:many|much)\b|\bwhat\s+(?:percent|percentage)\b|\bhow\s+big\b|"
        r"\bwhat(?:'s|s|\s+is|\s+are|\s+was)?\s+(?:the\s+|our\s+|my\s+)?(?:\w+\s+)?"
        r"(?:percent|percentage|rate|cost|price|fee|budget|cap|limit|amount|stipend|salary|allowance|max|maximum|minimum)\b")),
    ("date", re.compile(
        rf"{_WHEN_ASKED}|\bwhat\s+(?:days?|dates?|times?|weeks?|months?|year|hours?)\b|\bwhich\s+(?:days?|dates?|weeks?|months?)\b|"
        r"\bdeadline\b|\bdue\s+(?:date|by)\b|\bby\s+when\b|\buntil\s+when\b|"
        r"\b(?:core|office|opening|working|business)\s+hours\b")),
    ("person", re.compile(r"\bwho(?:m|se|'s)?\b|\bwhich\s+(?:person|people|team|manager|role)\b")),
)

_NUMBER_WORDS = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
                 r"forty|fifty|sixty|ninety|hundred|a\s+dozen|half|a\s+few)")
_TIME_UNITS = r"(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|quarters?|seconds?)"
# A number standing for a quantity, not part of a name such as "401(k)", "IC4" or "SEV1".
_NUMBER = r"(?<![\w(/-])[$€£]?\d[\d,]*(?:\.\d+)?(?![\w(]|/\d)"
_MONTHS = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_WEEKDAYS = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"

_HAS: dict[AnswerType, re.Pattern[str]] = {
    "amount": re.compile(rf"{_NUMBER}|\b{_NUMBER_WORDS}\s+\w+|\b(?:once|twice)\b|\bunlimited\b|\bnone\b", re.IGNORECASE),
    "duration": re.compile(
        rf"(?:{_NUMBER}|\b{_NUMBER_WORDS}|\b(?:a|an))[\s-]*(?:an?\s+)?(?:(?:business|working|calendar|consecutive|full)\s+)?{_TIME_UNITS}\b|"
        r"\b(?:weekly|daily|monthly|annually|overnight|immediately)\b", re.IGNORECASE),
    "date": re.compile(
        rf"\b{_MONTHS}\b\.?\s*\d|\b\d{{1,2}}\s+{_MONTHS}\b|\b{_WEEKDAYS}s?\b|\b\d{{1,2}}:\d{{2}}\b|"
        r"\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)|\bnoon\b|\bmidnight\b|\b(?:19|20)\d\d\b|\b\d{4}-\d\d-\d\d\b|"
        rf"\bQ[1-4]\b|\bend\s+of\s+(?:the\s+)?(?:day|week|month|quarter|year)\b|\b{_MONTHS}\b|"
        rf"\bwithin\s+(?:{_NUMBER}|{_NUMBER_WORDS})\s+(?:\w+\s+)?{_TIME_UNITS}\b", re.IGNORECASE),
    "frequency": re.compile(
        r"\bevery\b|\beach\s+(?:day|week|month|quarter|year)\b|\b(?:weekly|daily|monthly|quarterly|yearly|annually)\b|"
        r"\b(?:once|twice|\w+\s+times)\s+(?:a|per|each)\b|\bper\s+(?:day|week|month|quarter|year)\b", re.IGNORECASE),
    "contact": re.compile(r"\+?\d[\d ().-]{6,}\d|[\w.+-]+@[\w-]+\.[\w.]+|\bhttps?://\S+|\bwww\.\S+|(?<!\w)#[a-z][\w-]+", re.IGNORECASE),
    "person": re.compile(
        r"\b(?:manager|director|VP|vice\s+president|CFO|CEO|CTO|COO|controller|head\s+of|lead|owner|admin|"
        r"administrator|team|commander|secondary|primary|on-call|engineer|officer|chair|committee|board|"
        r"HR|People\s+team|Legal|Finance|IT|payroll|buddy|approver|supervisor|president|founder)s?\b|"
        r"(?<=\w\s)[A-Z][a-z]+(?:-[A-Z][a-z]+)?\s+[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b"),
}

# "When" is also answered by a duration ("within 5 working days"), so either type counts.
ACCEPTS: dict[AnswerType, tuple[AnswerType, ...]] = {
    "amount": ("amount",),
    "duration": ("duration",),
    "date": ("date", "duration"),
    "frequency": ("frequency", "duration"),
    "person": ("person",),
    "contact": ("contact",),
}



def answer_type(question: str) -> AnswerType | None:
    """The kind of thing the question asks for, or None when it asks for no particular kind.

    >>> answer_type("how many vacation days do I get?"), answer_type("when are promo packets due?")
    ('amount', 'date')
    >>> answer_type("how long until a page escalates?"), answer_type("who signs off on a 30k payment?")
    ('duration', 'person')
    >>> answer_type("is there a dress code") is None
    True
    """
    lowered = question.lower()
    for kind, pattern in _QUESTION_KINDS:
        if pattern.search(lowered):
            return kind
    return None


def holds(text: str, kind: AnswerType) -> bool:
    """True when ``text`` holds something of the asked kind (or of a kind that answers it).

    >>> holds("Less than 3 years: 18 days", "amount"), holds("Retirement savings 401(k) plan", "amount")
    (True, False)
    >>> holds("Packets are due September 12.", "date"), holds("The draft is due within 5 working days.", "date")
    (True, True)
    >>> holds("Page escalates to the VP Engineering, Kwame Asante-Reyes", "person")
    True
    >>> holds("Unacknowledged: 0 minutes; Primary is paged", "duration"), holds("after 7 minutes", "duration")
    (False, True)
    """
    return any(not _ZERO.fullmatch(m.group()) for accepted in ACCEPTS[kind] for m in _HAS[accepted].finditer(text))


# "0 minutes" is where a table starts counting, not how long something takes or how much it is.
_ZERO = re.compile(r"[$€£]?0+(?:\.0+)?(?:[\s-]+\w+)?", re.IGNORECASE)


_FIGURE = re.compile(r"\d[\d,.:/-]*\d|\d")


def figures(text: str) -> set[str]:
    """The numbers, amounts, dates and times a text states.

    >>> sorted(figures("Less than 3 years: 18 days, 0.75 days per period, from 10:00"))
    ['0.75', '10:00', '18', '3']
    """
    return set(_FIGURE.findall(text))


_QUESTION_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?(?![\w.,]\d)")


def figure_evidence(question: str, units: Sequence[str]) -> list[float]:
    """For each unit, the share of the numbers the question names that the unit states too.

    "What happens at day 90" is about the Day 90 row, whatever its neighbours' wording; a number in
    a question is the most specific word it has.

    >>> figure_evidence("what happens at day 90?", ["Day 60: a survey", "Day 90: formal review (30-60-90 plan)"])
    [0.0, 1.0]
    >>> figure_evidence("how many sick days", ["8 sick days"])
    [0.0]
    """
    wanted = set(_QUESTION_NUMBER.findall(question))
    if not wanted:
        return [0.0] * len(units)
    patterns = [re.compile(rf"(?<![\w.,]){re.escape(n)}(?![\w]|[.,]\d)") for n in wanted]
    return [sum(1 for p in patterns if p.search(u)) / len(patterns) for u in units]


def keyword_evidence(question: str, units: Sequence[str]) -> list[float]:
    """For each unit, the IDF-weighted share (0..1) of the question's content words it contains.

    Words rare among the candidates weigh most: "packets" tells these units apart, "promo" hardly.
    Question words found in no unit are left out of the share, so a typo does not lower every unit.

    >>> units = ["Promo packets are due in March.", "The promo cycle runs twice.", "Promo decisions come in April."]
    >>> [round(e, 2) for e in keyword_evidence("when are promo packets due?", units)]
    [1.0, 0.2, 0.2]
    >>> keyword_evidence("when are packets due?", ["Packets are due in March.", "Nothing here."])
    [1.0, 0.0]
    """
    wanted = terms(question)
    unit_terms = [terms(u) for u in units]
    counts: Counter[str] = Counter(t for ts in unit_terms for t in ts & wanted)
    if not counts:
        return [0.0] * len(units)
    idf = {t: math.log(1 + len(units) / df) for t, df in counts.items()}
    total = sum(idf.values())
    return [sum(idf[t] for t in ts & idf.keys()) / total for ts in unit_terms]


def type_evidence(kind: AnswerType | None, units: Iterable[str]) -> list[int]:
    """+1 for a unit holding the asked kind, -1 for one without it, 0 for every unit when none is asked."""
    if kind is None:
        return [0 for _ in units]
    return [1 if holds(u, kind) else -1 for u in units]
