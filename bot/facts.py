"""Does an answer state a fact? One matcher for the demo, ``lorebot eval answers`` and the benchmark.

Matching a fact (``contains_fact``) is deliberately simple, so a reader can predict it: both sides
are put in Unicode's compatibility form (NFKC) and case-folded, Markdown emphasis (``**``, ``__``, backticks) is dropped, curly quotes become
straight ones, thousands separators between digits are dropped ("1,500" matches "1500") and runs of
whitespace become one space; then the fact must occur in the answer as whole words ("8 days" is not
found in "18 days"). Nothing else (no "$2,500" for "2,500 USD"): a generator that rewords a number
is scored as missing it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_EMPHASIS = re.compile(r"\*\*|__|`")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalise(text: str) -> str:
    """The form facts and answers are compared in (see the module docstring).

    >>> normalise("  Up to **2,500**\\n USD — it’s  1,000,000 ")
    "up to 2500 usd — it's 1000000"
    """
    text = _EMPHASIS.sub("", unicodedata.normalize("NFKC", text).translate(_QUOTES)).casefold()
    return " ".join(_THOUSANDS.sub("", text).split())


def contains_fact(text: str, fact: str) -> bool:
    """True when ``text`` states ``fact``: normalised, as whole words.

    >>> contains_fact("Less than 3 years: **18 days** [1]", "18 DAYS")
    True
    >>> contains_fact("up to 1,500 USD", "1500 usd"), contains_fact("18 days", "8 days")
    (True, False)
    """
    return re.search(rf"(?<!\w){re.escape(normalise(fact))}(?!\w)", normalise(text)) is not None


def missing_facts(facts: Iterable[str], text: str) -> list[str]:
    """The facts ``text`` does not contain, in order.

    >>> missing_facts(["5 days", "March 31"], "carry over 5 days")
    ['March 31']
    """
    return [f for f in facts if not contains_fact(text, f)]
