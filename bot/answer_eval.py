"""``lorebot eval answers``: does the answer a user reads contain the facts that answer the question?

A data set is JSONL, one labelled question a line::

    {"question": "how many pto days do i get", "channel": "C0GENERAL",
     "facts": ["18 days"], "sources": ["public/paid-time-off.md"]}

``facts`` are strings a correct answer must contain (empty: the channel should get "not found");
``sources`` (optional) are the documents that hold them, for the reader and the data set's own tests.

Each question goes through the real answering path (``answer_question``: retrieval for the
channel's audience, then the configured generator), and the answers are scored by the pure
functions below, which the benchmark (benchmarks/answer_quality.py) shares.

Facts are matched as :mod:`bot.facts` says (whole words, forgiving layout).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.answering import Answer, AnswerDeps, answer_question, shorten
from bot.facts import contains_fact, missing_facts
from knowledge.access import Audience, is_conversation_id
from knowledge.errors import DatasetError
from knowledge.evaluation.beir import json_object

if TYPE_CHECKING:
    from bot.app import Services
    from knowledge.embedding import Embedder

MISSES_SHOWN = 15  # per-question misses listed under the table; the rest are counted


@dataclass(frozen=True)
class LabelledQuestion:
    """One line of a data set: a question asked in a channel, and what its answer must contain."""

    question: str
    channel: str
    facts: tuple[str, ...]
    sources: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """False when the channel should be told "not found" (no facts)."""
        return bool(self.facts)


@dataclass(frozen=True)
class Outcome:
    """What one question got: the answer text, whether it was found, the cited passages' text."""

    item: LabelledQuestion
    text: str
    found: bool
    cited_texts: tuple[str, ...]
    generate_ms: float | None = None

    @classmethod
    def of(cls, item: LabelledQuestion, answer: Answer) -> Outcome:
        """The outcome of ``answer``; each citation is scored by its whole passage, not its snippet."""
        by_chunk = {p.chunk_id: p.text for p in answer.passages}
        cited = tuple(by_chunk.get(c.chunk_id, c.snippet) for c in answer.citations)
        return cls(item, answer.text, answer.found, cited, answer.timings_ms.get("generate"))

    @property
    def missing(self) -> list[str]:
        """The facts the answer does not contain (all of them when it was not found)."""
        return missing_facts(self.item.facts, self.text if self.found else "")


# --- The data set ------------------------------------------------------------------------------


def load_dataset(path: Path) -> list[LabelledQuestion]:
    """Every labelled question of a JSONL file; a bad line is a ``DatasetError`` naming it.

    Blank lines are skipped. Unknown keys are refused (a misspelt "fact" would otherwise turn a
    question into an unanswerable one without a word).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read the data set {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text") from e
    items = [parse_line(line, f"{path}:{number}") for number, line in enumerate(lines, start=1) if line.strip()]
    if not items:
        raise DatasetError(f"{path} holds no questions")
    return items


_KEYS = {"question", "channel", "facts", "sources"}


def parse_line(line: str, where: str = "line") -> LabelledQuestion:
    """One JSONL line as a labelled question; ``where`` (file:line) starts every error message.

    >>> parse_line('{"question": "pto?", "channel": "C0GENERAL", "facts": ["18 days"]}').facts
    ('18 days',)
    >>> parse_line('{"question": "pto?", "channel": "general", "facts": []}', "a.jsonl:3")
    Traceback (most recent call last):
    ...
    knowledge.errors.DatasetError: a.jsonl:3: "channel" must be a Slack conversation ID (C…, G… or D…), not 'general'
    """
    row = json_object(line, where)
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise DatasetError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f'{where}: "question" must be a non-empty string')
    channel = row.get("channel")
    if not is_conversation_id(channel):
        raise DatasetError(f'{where}: "channel" must be a Slack conversation ID (C…, G… or D…), not {channel!r}')
    facts = _strings(row, "facts", where, required=True)
    sources = _strings(row, "sources", where, required=False)
    return LabelledQuestion(question=question, channel=channel, facts=facts, sources=sources)


def _strings(row: dict, key: str, where: str, *, required: bool) -> tuple[str, ...]:
    if key not in row:
        if required:
            raise DatasetError(f'{where}: "{key}" is missing (use [] for a question that should be not found)')
        return ()
    value = row[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DatasetError(f'{where}: "{key}" must be a list of non-empty strings')
    return tuple(value)


# --- Metrics (pure: outcomes in, numbers out) --------------------------------------------------


def fact_recall(outcomes: Iterable[Outcome]) -> float | None:
    """Facts found / facts asked for, over the answerable questions (a not-found answer finds none).

    >>> q = LabelledQuestion("pto?", "C0G", ("18 days", "5 days"))
    >>> fact_recall([Outcome(q, "18 days a year [1]", True, ())])
    0.5
    >>> fact_recall([Outcome(LabelledQuestion("wifi?", "C0G", ()), "", False, ())]) is None
    True
    """
    asked = found = 0
    for o in outcomes:
        asked += len(o.item.facts)
        found += len(o.item.facts) - len(o.missing)
    return found / asked if asked else None


def citation_precision(outcomes: Iterable[Outcome]) -> float | None:
    """Cited passages holding at least one of the question's facts / cited passages, pooled over
    the answerable questions (an answer citing nothing adds nothing to either side).

    >>> q = LabelledQuestion("pto?", "C0G", ("18 days",))
    >>> citation_precision([Outcome(q, "…", True, ("Less than 3 years: 18 days", "Sick time: 8 days"))])
    0.5
    """
    cited = holding = 0
    for o in outcomes:
        if not o.item.answerable:
            continue
        cited += len(o.cited_texts)
        holding += sum(1 for t in o.cited_texts if any(contains_fact(t, f) for f in o.item.facts))
    return holding / cited if cited else None


def not_found_accuracy(outcomes: Iterable[Outcome]) -> dict[str, float | None]:
    """How often "found" was right: unanswerable questions told "not found", answerable ones answered.

    >>> yes, no = LabelledQuestion("a", "C0G", ("x",)), LabelledQuestion("b", "C0G", ())
    >>> not_found_accuracy([Outcome(yes, "x", True, ()), Outcome(no, "y", True, ()), Outcome(no, "", False, ())])
    {'unanswerable': 0.5, 'answerable': 1.0}
    """
    outcomes = list(outcomes)
    unanswerable = [not o.found for o in outcomes if not o.item.answerable]
    answerable = [o.found for o in outcomes if o.item.answerable]
    return {"unanswerable": _share(unanswerable), "answerable": _share(answerable)}


def percentiles(values: Iterable[float], digits: int = 1) -> dict[str, float | None]:
    """p50 and p95 (linear interpolation), rounded; None for no values.

    >>> percentiles([100, 200, 300, 400])
    {'p50': 250.0, 'p95': 385.0}
    >>> percentiles([])
    {'p50': None, 'p95': None}
    """
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(array, [50, 95])
    return {"p50": round(float(p50), digits), "p95": round(float(p95), digits)}


def summarise(outcomes: list[Outcome], generator: str) -> dict:
    """The figures of one run: the ``lorebot eval answers --json`` line.

    Answer length counts the characters of the answers given (found ones: the fixed "not found"
    sentence is not an answer); the generate latency is over the questions that reached the
    generator (retrieval finding nothing skips it).
    """
    recall, precision = fact_recall(outcomes), citation_precision(outcomes)
    return {
        "fact_recall": _round(recall),
        "citation_precision": _round(precision),
        "not_found_accuracy": {k: _round(v) for k, v in not_found_accuracy(outcomes).items()},
        "answer_chars": percentiles((len(o.text) for o in outcomes if o.found), digits=0),
        "generate_ms": percentiles(o.generate_ms for o in outcomes if o.generate_ms is not None),
        "questions": len(outcomes),
        "generator": generator,
    }


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- Running -----------------------------------------------------------------------------------


@contextmanager
def handbook_services(
    *, embedder: Embedder | None = None, long_running: bool = False, **overrides: object
) -> Iterator[Services]:
    """Services over a throwaway index holding the bundled handbook, each folder with its scope
    (as ``lorebot demo`` ingests it). Settings come from the environment (TGI_URL included) and
    ``overrides``, except where the index lives: never LOREBOT_DATA_DIR's or a configured Weaviate."""
    from bot.app import build_services
    from bot.config import load_settings
    from bot.demo import handbook_plan

    _company, scopes, *_ = handbook_plan()
    with tempfile.TemporaryDirectory(prefix="lorebot-answers-") as data_dir:
        settings = load_settings(**{**overrides, "data_dir": Path(data_dir), "weaviate_url": None})
        services = build_services(settings, embedder=embedder, long_running=long_running)
        try:
            for folder, scope in scopes.items():
                report = services.ingestor.ingest_paths([folder], scope=scope)
                if not report.ok:
                    raise DatasetError(f"could not ingest the handbook's {folder.name}/: {report.summary()}")
            yield services
        finally:
            services.close()



def run_questions(
    items: list[LabelledQuestion], deps: AnswerDeps, *, progress: Callable[[int, int], None] | None = None
) -> list[Outcome]:
    """Ask every question from its channel through the real answering path."""
    outcomes = []
    for done, item in enumerate(items, start=1):
        answer = answer_question(item.question, Audience.for_conversation(item.channel), deps)
        outcomes.append(Outcome.of(item, answer))
        if progress is not None:
            progress(done, len(items))
    return outcomes


def misses(outcomes: list[Outcome]) -> list[tuple[Outcome, str]]:
    """Each question that went wrong, with what went wrong, in data set order."""
    wrong = []
    for o in outcomes:
        if not o.item.answerable:
            if o.found:
                wrong.append((o, "answered; should be not found"))
        elif not o.found:
            wrong.append((o, "not found; missing " + ", ".join(o.item.facts)))
        elif o.missing:
            wrong.append((o, "missing " + ", ".join(o.missing)))
    return wrong


def render(summary: dict, outcomes: list[Outcome], console: Console, *, title: str | None = None) -> None:
    """The figures as a table, then the first ``MISSES_SHOWN`` questions that went wrong."""
    table = Table(title=title or f"answers: {summary['questions']} questions, generator {summary['generator']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    nf = summary["not_found_accuracy"]
    table.add_row("fact recall", _cell(summary["fact_recall"]))
    table.add_row("citation precision", _cell(summary["citation_precision"]))
    table.add_row("not found when unanswerable", _cell(nf["unanswerable"]))
    table.add_row("found when answerable", _cell(nf["answerable"]))
    table.add_row("answer chars p50 / p95", f"{_cell(summary['answer_chars']['p50'], 0)} / {_cell(summary['answer_chars']['p95'], 0)}")
    table.add_row("generate ms p50 / p95", f"{_cell(summary['generate_ms']['p50'], 1)} / {_cell(summary['generate_ms']['p95'], 1)}")
    console.print(table)
    render_misses(outcomes, console)


def render_misses(outcomes: list[Outcome], console: Console, *, title: str = "misses") -> None:
    """The first ``MISSES_SHOWN`` questions that went wrong, and how many more there are."""
    wrong = misses(outcomes)
    if not wrong:
        return
    listing = Table(title=f"{title} ({len(wrong)})")
    for column in ("channel", "question", "what went wrong"):
        listing.add_column(column, overflow="fold")
    for o, why in wrong[:MISSES_SHOWN]:
        listing.add_row(o.item.channel, escape(shorten(o.item.question, 90)), escape(why))
    console.print(listing)
    if len(wrong) > MISSES_SHOWN:
        console.print(f"… and {len(wrong) - MISSES_SHOWN} more.")


def _cell(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"
