"""The content words of a question, as the keyword index sees them: what a passage or a quotable
unit must hold to be about the question.

Both sides are analyzed as the keyword index analyzes text (Snowball stems, its stop words), and the
filler of Slack questions ("pls", "anyone know", "how many") is dropped too: it says nothing about
what is asked.
"""

from __future__ import annotations

import re

from knowledge.stores.memory_keywords import Analyzer

_ANALYZER = Analyzer()
SLACK_FILLER = frozenset(_ANALYZER.terms("""
hey hi hello pls please thanks thank quick question wondering wonder trying figure tell anyone anybody
anything someone something ever still really actually need needs get gets getting got know let like want
many much long often soon im ive id dont cant isnt doesnt whos whats hows wheres whens whys thats theres heres
"""))
_LETTER_IN_PARENS = re.compile(r"\((\w)\)")  # "401(k)" is asked as "401k"


def terms(text: str) -> set[str]:
    """The content words of a text as the keyword index sees them (Snowball stems), filler out.

    >>> sorted(terms("How many vacation days do I get in my first years?"))
    ['day', 'first', 'vacat', 'year']
    >>> terms("our 401(k) match") == terms("401k match")
    True
    """
    found = _ANALYZER.terms(_LETTER_IN_PARENS.sub(r"\1", text))
    return {t for t in found if len(t) > 1 and t not in SLACK_FILLER}


_PART_BREAK = re.compile(
    r"\?\s+(?=\S)|;\s+|,?\s+(?:and|also|plus|or)\s+(?=(?:if|when|what|which|who|how|where|do|does|is|are|can|"
    r"by\s+when|until\s+when)\b)", re.IGNORECASE)

_LEADING_CONJUNCTION = re.compile(r"^\s*(?:and|also|plus|or|but)\s+", re.IGNORECASE)


def question_parts(question: str, *, most: int = 3) -> list[str]:
    """The questions asked in one message, the first one first (a Slack message often asks two).

    >>> question_parts("when are promo packets due for the fall cycle, and which week is calibration?")
    ['when are promo packets due for the fall cycle', 'which week is calibration?']
    >>> question_parts("does it roll over? and by when do i have to use it")
    ['does it roll over', 'by when do i have to use it']
    >>> question_parts("how many sick days do we get a year")
    ['how many sick days do we get a year']
    """
    pieces = _PART_BREAK.split(question.strip())
    parts = [_LEADING_CONJUNCTION.sub("", p).strip(" ,.!" if i == len(pieces) - 1 else " ,.?!")
             for i, p in enumerate(pieces)]
    parts = [p for p in parts if terms(p)] or [question]
    return parts[: most - 1] + [" ".join(parts[most - 1:])] if len(parts) > most else parts

