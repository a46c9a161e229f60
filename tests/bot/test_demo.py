"""The bundled handbook and `lorebot demo`: the private answer is found from its channel only."""

from __future__ import annotations

from collections import Counter

from rich.console import Console

from bot.demo import handbook_plan, run_demo
from knowledge.loaders import discover


def test_the_handbook_spans_formats_and_scopes(handbook_dir):
    company, scopes, questions = handbook_plan(handbook_dir)
    files = discover(list(scopes)).files
    assert 12 <= len(files) <= 20
    assert {"md", "html", "pdf"} <= {f.suffix.lstrip(".") for f in files}
    assert sum(s.is_public for s in scopes.values()) == 1 and len(scopes) == 4
    assert 4 <= len(questions) <= 6 and len({q.channel for q in questions}) >= 3
    # The same question is asked from the channel that owns the answer and from one that must not see it.
    repeated = [q for q, n in Counter(q.question for q in questions).items() if n > 1]
    assert repeated
    outcomes = {q.expect_found for q in questions if q.question == repeated[0]}
    assert outcomes == {True, False}


def test_demo_answers_every_question_as_expected(handbook_dir):
    console = Console(record=True, width=120)
    assert run_demo(console, handbook=handbook_dir) is True
    output = console.export_text()
    assert "6 of 6 answers came out as expected" in output
    assert "not found" in output and "[1]" in output
