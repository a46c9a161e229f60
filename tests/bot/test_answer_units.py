"""The extractive answer leads with the unit that answers: the right type, the asked words, no repeats."""

from __future__ import annotations

import doctest
import re

import pytest

from bot.answering import answer_question
from bot.generation import (
    QUOTED_LABEL,
    ExtractiveGenerator,
    GenerationRequest,
    answer_units,
    extractive,
)
from bot.generation.answer_units import answer_type, holds
from knowledge.access import Audience, Scope
from knowledge.types import Passage

_LINE = re.compile(r"^> (?P<quote>.*) \[(?P<n>\d+)\]$")


def _passage(n: int, text: str, heading: tuple[str, ...] = ()) -> Passage:
    return Passage(doc_id=f"d{n}", chunk_id=f"d{n}:0", title=f"Doc {n}", source=f"docs/{n}.md",
                   heading_path=heading, text=text, scope=Scope.public(), score=1.0 / n, similarity=0.6)


def _quotes(text: str) -> list[tuple[str, int]]:
    """The answer's quoted lines as (quote, n); every line after the label must be one."""
    label, *lines = text.splitlines()
    assert label == QUOTED_LABEL
    matches = [_LINE.match(line) for line in lines]
    assert all(matches), text
    return [(m["quote"], int(m["n"])) for m in matches]


def _answer(generator: ExtractiveGenerator, question: str, *texts: str) -> list[tuple[str, int]]:
    passages = [_passage(n, text) for n, text in enumerate(texts, start=1)]
    return _quotes(generator.generate(GenerationRequest(question=question, passages=passages)).text)


@pytest.mark.parametrize(("question", "kind"), [
    ("how many vacation days do I get in my first couple of years?", "amount"),
    ("how much does the company put into the 401k", "amount"),
    ("what percent of the premium is covered?", "amount"),
    ("whats the hotel cap in new york", "amount"),
    ("when are promo packets due for the fall cycle?", "date"),
    ("what day is the on-call handoff", "date"),
    ("what time do I show up on day one", "date"),
    ("deadline for the expense report?", "date"),
    ("how long until a page goes to the secondary?", "duration"),
    ("how often is demo friday", "frequency"),
    ("who has to sign off on a 30k payment to a new vendor?", "person"),
    ("is there a phone number for the ethics hotline", "contact"),
    ("is there a dress code?", None),
])
def test_the_answer_type_follows_the_way_the_question_asks(question, kind):
    assert answer_type(question) == kind


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("Less than 3 years: 18 days", "amount", True),
    ("Retirement savings 401(k) plan (United States)", "amount", False),
    ("Packets are due September 12.", "date", True),
    ("The draft is due within 5 working days.", "date", True),
    ("Shadow the support team for half a day.", "duration", True),
    ("Page escalates to the VP Engineering, Kwame Asante-Reyes", "person", True),
    ("Call the hotline at 1-888-555-0147.", "contact", True),
    ("Rest is part of the job.", "amount", False),
])
def test_a_unit_holds_the_asked_type_or_not(text, kind, expected):
    assert holds(text, kind) is expected


def test_a_table_row_with_the_amount_wins_over_a_same_topic_sentence_without_one(real_embedder):
    passage = ("## Vacation allowance\n\nVacation days are something everyone here enjoys and plans around.\n\n"
               "| Years of service | Vacation days per year |\n|---|---|\n| Less than 3 years | 18 days |\n")
    quotes = _answer(ExtractiveGenerator(real_embedder), "how many vacation days do new people get?", passage)
    assert quotes[0] == ("Years of service: Less than 3 years; Vacation days per year: 18 days", 1)


def test_a_when_question_leads_with_the_unit_holding_the_date(real_embedder):
    passage = ("## Promotion packets\n\nPromotion packets are written by managers and reviewed by the whole team. "
               "Packets for the fall cycle are due on September 12. Good packets show concrete examples of work.")
    quotes = _answer(ExtractiveGenerator(real_embedder), "when are promotion packets due?", passage)
    assert quotes[0] == ("Packets for the fall cycle are due on September 12.", 1)


def test_a_supporting_unit_that_repeats_the_lead_is_dropped(real_embedder):
    # Overlapping chunks of one document repeat a sentence; a near copy adds nothing either.
    first = "Sick days: every employee receives 8 sick days each calendar year. Unused sick days do not carry over."
    second = "Every employee receives 8 sick days each calendar year! Unused sick days never carry over."
    quotes = _answer(ExtractiveGenerator(real_embedder), "how many sick days do we get?", first, first, second)
    shown = [q for q, _ in quotes]
    assert shown[0] == "Sick days: every employee receives 8 sick days each calendar year."
    assert len(shown) == len(set(shown))
    assert "Every employee receives 8 sick days each calendar year!" not in shown


def test_rows_of_one_table_with_different_figures_are_not_repeats(real_embedder):
    table = ("| Years of service | Vacation days per year |\n|---|---|\n| Less than 3 years | 18 days |\n"
             "| 3 to 5 years | 22 days |\n| More than 5 years | 26 days |\n")
    quotes = _answer(ExtractiveGenerator(real_embedder), "how many vacation days do I get per year?", table)
    assert sorted(q for q, _ in quotes) == [
        "Years of service: 3 to 5 years; Vacation days per year: 22 days",
        "Years of service: Less than 3 years; Vacation days per year: 18 days",
        "Years of service: More than 5 years; Vacation days per year: 26 days",
    ]


def test_budgets_bound_the_units_and_the_characters_after_the_lead(real_embedder):
    table = ("## Office opening hours\n\n| Day | Opens | Closes |\n|---|---|---|\n| Monday | 08:00 | 18:00 |\n"
             "| Tuesday | 08:30 | 18:00 |\n| Wednesday | 09:00 | 17:00 |\n| Saturday | 10:00 | 14:00 |\n")
    question = "what time does the office open on weekdays?"
    assert len(_answer(ExtractiveGenerator(real_embedder), question, table)) == 3
    assert len(_answer(ExtractiveGenerator(real_embedder, max_units=2), question, table)) == 2
    lead_only = _answer(ExtractiveGenerator(real_embedder, max_chars=10), question, table)
    assert len(lead_only) == 1 and len(lead_only[0][0]) > 10  # the lead is quoted whole
    capped = _answer(ExtractiveGenerator(real_embedder, max_chars=45), question, table)
    assert len(capped) == 2 and len(capped[1][0]) <= 45  # a second row would pass 45


def test_settings_reach_the_generator(tmp_path, real_embedder):
    from bot.app import build_services
    from bot.config import load_settings

    settings = load_settings(data_dir=tmp_path).model_copy(update={"answer_max_units": 2, "answer_max_chars": 120})
    services = build_services(settings, embedder=real_embedder)
    try:
        assert (services.generator.max_units, services.generator.max_chars) == (2, 120)
    finally:
        services.close()


_DEMO = [
    (("how many vacation days do I get in my first couple of years here? and if I don't use them all, "
      "do they roll over into next year?"), "C0GENERAL", "Less than 3 years", "18 days"),
    ("I'm primary on-call next week - if I sleep through a page, how long until it goes to someone else?",
     "C0ENGINEER", None, "7 minutes"),
    ("what happens at day 90 of onboarding", "C0ENGINEER", None, "Formal review of your 30-60-90 plan"),
    (("we're about to pay a brand-new drone survey contractor around $30k for their first job. "
      "who has to sign off on that payment?"), "C0FINANCE", None, "CFO"),
    ("when are promo packets due for the fall cycle, and which week is calibration?", "C0PEOPLE", None,
     "September 12"),
]


@pytest.mark.parametrize(("question", "channel", "lead", "fact"), _DEMO)
def test_handbook_answers_hold_the_fact_and_quote_only_the_documents(handbook_services, question, channel, lead,
                                                                     fact):
    answer = answer_question(question, Audience.for_conversation(channel), handbook_services.answer_deps)
    assert answer.found
    quotes = _quotes(answer.text)
    if lead:
        assert lead in quotes[0][0]
    assert fact.lower() in answer.text.lower()
    cited = {c.n: c for c in answer.citations}
    for quote, n in quotes:
        assert n in cited  # every unit is cited, with a real source
        passage = next(p for p in answer.passages if p.chunk_id == cited[n].chunk_id)
        _assert_quoted_from(quote, passage.text)


def _assert_quoted_from(quote: str, text: str) -> None:
    """A sentence is a substring of its passage; a table row's header and cells each are."""
    plain = text.replace("**", "").replace("__", "").replace("`", "")
    if quote in plain:
        return
    for cell in re.split(r"; |: ", quote):
        assert cell in plain, f"{cell!r} is not in the passage"


def test_the_doctests_of_answer_selection_pass():
    for module in (answer_units, extractive):
        assert doctest.testmod(module).failed == 0
