"""``lorebot eval answers``: scoring hand-made answers, the data set's errors, and the command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.answer_eval import (
    LabelledQuestion,
    Outcome,
    citation_precision,
    fact_recall,
    load_dataset,
    misses,
    not_found_accuracy,
    summarise,
)
from bot.answering import NOT_FOUND, Answer, Citation
from bot.cli import app
from knowledge.access import Scope
from knowledge.errors import DatasetError
from knowledge.types import Passage

PTO = Passage("pto", "pto:0", "Paid Time Off", "public/paid-time-off.md", (),
              "Vacation is earned by service. Less than 3 years: 18 days a year. 3 to 5 years: 22 days.",
              Scope.public(), 1.0, 0.8)
SICK = Passage("pto", "pto:1", "Paid Time Off", "public/paid-time-off.md", (),
               "Every employee receives 8 sick days (64 hours).", Scope.public(), 0.5, 0.6)


def _cite(n: int, p: Passage, snippet: str | None = None) -> Citation:
    return Citation(n, p.title, p.source, snippet or p.text[:40], p.score, p.doc_id, p.chunk_id, ["public"])


def _answer(text: str, *cited: Passage, generate_ms: float = 4.0) -> Answer:
    return Answer(question="q", text=text, found=True, citations=tuple(_cite(n, p) for n, p in enumerate(cited, 1)),
                  generator="hand", passages=(PTO, SICK), timings_ms={"generate": generate_ms})


def _not_found() -> Answer:
    return Answer(question="q", text=NOT_FOUND, found=False, citations=(), generator="hand")


VACATION = LabelledQuestion("how many pto days", "C0GENERAL", ("18 days",))
ROLLOVER = LabelledQuestion("pto roll over?", "C0GENERAL", ("5 unused vacation days", "March 31"))
WIFI = LabelledQuestion("wifi password?", "C0GENERAL", ())


def test_a_right_answer_citing_one_right_and_one_wrong_passage():
    o = Outcome.of(VACATION, _answer("Less than 3 years: **18 Days** a year [1]. Sick: 8 sick days [2].", PTO, SICK))
    assert fact_recall([o]) == 1.0
    assert citation_precision([o]) == 0.5  # the sick-days passage holds no fact of this question
    assert not_found_accuracy([o]) == {"unanswerable": None, "answerable": 1.0}


def test_citations_are_judged_by_the_whole_passage_not_the_snippet():
    answer = Answer(question="q", text="18 days [1]", found=True, generator="hand", passages=(PTO,),
                    citations=(_cite(1, PTO, snippet="Vacation is earned…"),))
    assert citation_precision([Outcome.of(VACATION, answer)]) == 1.0


def test_not_found_on_an_answerable_question_misses_every_fact():
    outcomes = [Outcome.of(ROLLOVER, _not_found()), Outcome.of(VACATION, _answer("18 days [1]", PTO))]
    assert fact_recall(outcomes) == pytest.approx(1 / 3)
    assert not_found_accuracy(outcomes)["answerable"] == 0.5
    assert [why for _, why in misses(outcomes)] == ["not found; missing 5 unused vacation days, March 31"]


def test_unanswerable_questions_score_not_found_and_stay_out_of_recall_and_precision():
    honest, invented = Outcome.of(WIFI, _not_found()), Outcome.of(WIFI, _answer("8 sick days [1]", SICK))
    outcomes = [honest, invented, Outcome.of(VACATION, _answer("18 days [1]", PTO))]
    assert not_found_accuracy(outcomes) == {"unanswerable": 0.5, "answerable": 1.0}
    assert fact_recall(outcomes) == 1.0 and citation_precision(outcomes) == 1.0
    assert [why for _, why in misses(outcomes)] == ["answered; should be not found"]


def test_summary_lengths_count_answers_given_and_latency_the_generator_step():
    outcomes = [Outcome.of(VACATION, _answer("x" * 100, PTO, generate_ms=2.0)),
                Outcome.of(VACATION, _answer("x" * 300, PTO, generate_ms=10.0)),
                Outcome.of(WIFI, _not_found())]
    summary = summarise(outcomes, "hand")
    assert summary["answer_chars"] == {"p50": 200.0, "p95": 290.0}
    assert summary["generate_ms"] == {"p50": 6.0, "p95": 9.6}
    assert summary["questions"] == 3 and summary["generator"] == "hand"
    assert summary["fact_recall"] == 0.0 and summary["not_found_accuracy"]["unanswerable"] == 1.0


@pytest.mark.parametrize("line, message", [
    ('{"question": "pto?", "channel": "C0GENERAL", "facts": ["18 days"]', "not valid JSON"),
    ('["pto?", "C0GENERAL"]', "expected a JSON object"),
    ('{"question": "pto?", "channel": "#general", "facts": []}', '"channel" must be a Slack conversation ID'),
    ('{"question": "pto?", "channel": "C0GENERAL"}', '"facts" is missing'),
    ('{"question": "pto?", "channel": "C0GENERAL", "fact": ["18 days"], "facts": []}', "unknown key(s) fact"),
    ('{"question": "", "channel": "C0GENERAL", "facts": []}', '"question" must be a non-empty string'),
    ('{"question": "pto?", "channel": "C0GENERAL", "facts": "18 days"}', '"facts" must be a list'),
])
def test_a_bad_line_is_an_error_naming_it(tmp_path, line, message):
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "ok?", "channel": "C0GENERAL", "facts": []}\n\n' + line + "\n")
    with pytest.raises(DatasetError) as raised:
        load_dataset(path)
    assert str(raised.value).startswith(f"{path}:3: ") and message in str(raised.value)


SMALL_SET = [
    {"question": "how many vacation days do I get in my first couple of years here?", "channel": "C0GENERAL",
     "facts": ["18 days"], "sources": ["public/paid-time-off.md"]},
    {"question": "whats the fy2026 revenue target", "channel": "C0FINANCE", "facts": ["31.0M USD"],
     "sources": ["finance/fy2026-budget-planning-memo.md"]},
    # The same question from #sales: the answer is in finance/, which #sales may not see.
    {"question": "whats the fy2026 revenue target", "channel": "C0SALES", "facts": [],
     "sources": ["finance/fy2026-budget-planning-memo.md"]},
    {"question": "how do I bake sourdough bread?", "channel": "C0GENERAL", "facts": []},
]


@pytest.fixture
def run(handbook_data_dir, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(handbook_data_dir))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture
def small_set(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SMALL_SET))
    return path


def test_eval_answers_prints_one_json_line(run, small_set):
    result = run("eval", "answers", str(small_set), "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert {"fact_recall", "citation_precision", "not_found_accuracy", "answer_chars", "generate_ms",
            "questions", "generator"} <= set(summary)
    assert summary["questions"] == 4 and summary["generator"] == "extractive"
    assert set(summary["not_found_accuracy"]) == {"unanswerable", "answerable"}
    # Finance's revenue target is found in #finance and kept from #sales.
    assert summary["not_found_accuracy"] == {"unanswerable": 1.0, "answerable": 1.0}
    assert 0.0 <= summary["fact_recall"] <= 1.0
    assert set(summary["answer_chars"]) == set(summary["generate_ms"]) == {"p50", "p95"}


def test_eval_answers_table_for_people(run, small_set):
    result = run("eval", "answers", str(small_set))
    assert result.exit_code == 0, result.output
    assert "fact recall" in result.stdout and "not found when unanswerable" in result.stdout


def test_eval_answers_malformed_line_is_a_clear_error(run, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SMALL_SET[0]) + "\n" + '{"question": "pto?", "channel": "C0GENERAL", "facts": [18]}\n')
    result = run("eval", "answers", str(path), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{path}:2" in result.stderr and '"facts" must be a list of non-empty strings' in result.stderr
    assert "Traceback" not in result.output


def test_eval_answers_missing_file_is_a_clear_error(run, tmp_path):
    result = run("eval", "answers", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "cannot read the data set" in result.stderr


def test_eval_answers_handbook_needs_no_index(tmp_path, monkeypatch, small_set):
    """--handbook answers from a throwaway index of the bundled handbook: a fresh machine works."""
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["eval", "answers", str(small_set), "--handbook", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["not_found_accuracy"] == {"unanswerable": 1.0, "answerable": 1.0}
    assert not (tmp_path / "empty").exists()


def test_eval_answers_without_an_index_says_so(tmp_path, monkeypatch, small_set):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["eval", "answers", str(small_set)])
    assert result.exit_code == 2 and "there is no index" in result.stderr
