"""``lorebot demo``: the bundled handbook, ingested into a throwaway index, asked from several channels.

It shows the access model at work: the same question is found from the channel that owns the
document and correctly not found from another one. Each question also names the facts its answer
must contain ("18 days"): quoting the right document is not enough if the quoted sentences miss the
point. The demo checks both, prints every check, and fails loudly if one is not met, so it doubles
as a smoke test.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule

from bot.answering import Answer, answer_question
from bot.app import build_services
from bot.config import load_settings
from bot.facts import contains_fact
from knowledge.access import Audience, Scope
from knowledge.embedding import Embedder
from knowledge.errors import DatasetError

HANDBOOK = Path(__file__).parent / "handbook"


@dataclass(frozen=True)
class DemoQuestion:
    channel: str
    channel_name: str
    question: str
    expect_found: bool
    expect_doc: str | None
    # Strings the answer must contain, as the handbook writes them; empty when it should be "not found".
    facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoResult:
    """One question's answer and its checks: access (found or not, from the right document) and facts."""

    question: DemoQuestion
    answer: Answer
    access_ok: bool
    facts_held: tuple[tuple[str, bool], ...]

    @property
    def passed(self) -> bool:
        return self.access_ok and all(held for _, held in self.facts_held)


def handbook_plan(handbook: Path = HANDBOOK) -> tuple[str, dict[Path, Scope], list[DemoQuestion]]:
    """The company name, each folder's scope, and the demo questions, from ``channels.json``.

    A question without ``facts`` (an older file) is checked for access only.
    """
    spec = json.loads((handbook / "channels.json").read_text())
    scopes = {
        handbook / folder: Scope.public() if entry["scope"] == "public" else Scope.channels([entry["scope"]])
        for folder, entry in spec["folders"].items()
    }
    questions = [_question(q) for q in spec["questions"]]
    return spec["company"], scopes, questions


def _question(q: dict) -> DemoQuestion:
    facts = tuple(q.get("facts", ()))
    if facts and not q["expect_found"]:
        # A question that should not be answered cannot also require facts in its answer.
        raise DatasetError(f"channels.json: {q['question']!r} expects 'not found' but lists facts")
    return DemoQuestion(q["channel"], q["channel_name"], q["question"], q["expect_found"], q.get("expect_doc"), facts)


def run_demo(console: Console, *, handbook: Path = HANDBOOK, embedder: Embedder | None = None) -> bool:
    """Run the demo; True when every answer came out as expected and held its facts.

    ``embedder`` is an already loaded embedding model to share (tests); by default the demo loads one.
    """
    results = run_checks(console, handbook=handbook, embedder=embedder)
    return results is not None and all(r.passed for r in results)


def run_checks(
    console: Console, *, handbook: Path = HANDBOOK, embedder: Embedder | None = None
) -> list[DemoResult] | None:
    """Ingest, ask every question, print each answer with its checks and the total; None when ingest failed."""
    company, scopes, questions = handbook_plan(handbook)
    with tempfile.TemporaryDirectory(prefix="lorebot-demo-") as data_dir:
        services = build_services(load_settings(data_dir=Path(data_dir)), embedder=embedder)
        try:
            console.print(Rule(f"lorebot demo: the {escape(company)} handbook"))
            console.print("Loading the embedding model…")
            for folder, scope in scopes.items():
                report = services.ingestor.ingest_paths([folder], scope=scope)
                console.print(f"  ingested [bold]{folder.name}/[/] as [cyan]{escape(str(scope))}[/]: {report.summary()}")
                if not report.ok:
                    return None
            results = [_ask(console, services, q, handbook) for q in questions]
        finally:
            services.close()
    _print_total(console, results)
    return results


def _ask(console: Console, services, q: DemoQuestion, handbook: Path) -> DemoResult:
    answer = answer_question(q.question, Audience.for_conversation(q.channel), services.answer_deps)
    facts_held = tuple((fact, contains_fact(answer.text, fact)) for fact in q.facts)
    result = DemoResult(q, answer, _as_expected(answer, q, handbook), facts_held)
    body = escape(answer.text)
    for c in answer.citations:
        body += f"\n\n[bold][{c.n}][/] {escape(c.title)}  [dim]{escape(_relative(c.source, handbook))} · {escape(', '.join(c.scope))}[/]"
        if not answer.already_quotes(c):
            body += f"\n    [italic]“{escape(c.snippet)}”[/]"
    body += "\n\n" + "\n".join(_check_lines(result))
    verdict = "[green]passed[/]" if result.passed else "[red]FAILED[/]"
    title = f"[bold]{escape(q.channel_name)}[/] asks: {escape(q.question)}"
    subtitle = f"{'found' if answer.found else 'not found'} · {answer.timings_ms.get('total', 0):.0f} ms · {verdict}"
    console.print(Panel(body, title=title, subtitle=subtitle, title_align="left", subtitle_align="right"))
    return result


def _check_lines(result: DemoResult) -> list[str]:
    """One ✓/✗ line per check: the access outcome first, then each fact."""
    q = result.question
    if not q.expect_found and result.access_ok:
        access = f"not found, as it should be from {q.channel_name}"
    elif not q.expect_found:
        access = f'found, but {q.channel_name} should get "not found"'
    elif not result.answer.found:
        access = "not found, but the documents answer it"
    elif q.expect_doc is not None:
        cited = "cites" if result.access_ok else "does not cite"
        access = f"found; {cited} {q.expect_doc}"
    else:
        access = "found"
    lines = [_mark(result.access_ok, escape(access))]
    lines += [_mark(held, f"fact “{escape(fact)}”" + ("" if held else " is missing")) for fact, held in result.facts_held]
    return lines


def _mark(ok: bool, text: str) -> str:
    return f"[green]✓[/] {text}" if ok else f"[red]✗[/] {text}"


def _print_total(console: Console, results: list[DemoResult]) -> None:
    passed = sum(r.passed for r in results)
    facts = [held for r in results for _, held in r.facts_held]
    access = sum(r.access_ok for r in results)
    console.print(Rule())
    colour = "green" if passed == len(results) else "red"
    console.print(f"[{colour}]{passed} of {len(results)} answers held their facts[/] "
                  f"({sum(facts)} of {len(facts)} facts found; found or not found as expected, "
                  f"from the right document, in {access} of {len(results)}).")


def _as_expected(answer: Answer, q: DemoQuestion, handbook: Path) -> bool:
    if answer.found != q.expect_found:
        return False
    if q.expect_doc is None:
        return True
    return any(Path(c.source) == (handbook / q.expect_doc).resolve() for c in answer.citations)


def _relative(source: str, handbook: Path) -> str:
    try:
        return str(Path(source).relative_to(handbook.resolve()))
    except ValueError:
        return source
