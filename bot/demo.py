"""``lorebot demo``: the bundled handbook, ingested into a throwaway index, asked from several channels.

It shows the access model at work: the same question is found from the channel that owns the
document and correctly not found from another one. The demo checks each expectation and fails
loudly if one is not met, so it doubles as a smoke test.
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
from knowledge.access import Audience, Scope

HANDBOOK = Path(__file__).parent / "handbook"


@dataclass(frozen=True)
class DemoQuestion:
    channel: str
    channel_name: str
    question: str
    expect_found: bool
    expect_doc: str | None


def handbook_plan(handbook: Path = HANDBOOK) -> tuple[str, dict[Path, Scope], list[DemoQuestion]]:
    """The company name, each folder's scope, and the demo questions, from ``channels.json``."""
    spec = json.loads((handbook / "channels.json").read_text())
    scopes = {
        handbook / folder: Scope.public() if entry["scope"] == "public" else Scope.channels([entry["scope"]])
        for folder, entry in spec["folders"].items()
    }
    questions = [
        DemoQuestion(q["channel"], q["channel_name"], q["question"], q["expect_found"], q.get("expect_doc"))
        for q in spec["questions"]
    ]
    return spec["company"], scopes, questions


def run_demo(console: Console, *, handbook: Path = HANDBOOK) -> bool:
    """Run the demo; True when every question came out as expected."""
    company, scopes, questions = handbook_plan(handbook)
    with tempfile.TemporaryDirectory(prefix="lorebot-demo-") as data_dir:
        services = build_services(load_settings(data_dir=Path(data_dir)))
        try:
            console.print(Rule(f"lorebot demo: the {escape(company)} handbook"))
            console.print("Loading the embedding model…")
            for folder, scope in scopes.items():
                report = services.ingestor.ingest_paths([folder], scope=scope)
                console.print(f"  ingested [bold]{folder.name}/[/] as [cyan]{escape(str(scope))}[/]: {report.summary()}")
                if not report.ok:
                    return False
            results = [_ask(console, services, q, handbook) for q in questions]
        finally:
            services.close()
    passed = sum(results)
    console.print(Rule())
    console.print(f"{passed} of {len(results)} answers came out as expected.")
    return passed == len(results)


def _ask(console: Console, services, q: DemoQuestion, handbook: Path) -> bool:
    answer = answer_question(q.question, Audience.for_conversation(q.channel), services.answer_deps)
    ok = _as_expected(answer, q, handbook)
    body = escape(answer.text)
    for c in answer.citations:
        body += f"\n\n[bold][{c.n}][/] {escape(c.title)}  [dim]{escape(_relative(c.source, handbook))} · {escape(', '.join(c.scope))}[/]"
        if not answer.already_quotes(c):
            body += f"\n    [italic]“{escape(c.snippet)}”[/]"
    verdict = "[green]as expected[/]" if ok else "[red]NOT as expected[/]"
    title = f"[bold]{escape(q.channel_name)}[/] asks: {escape(q.question)}"
    subtitle = f"{'found' if answer.found else 'not found'} · {answer.timings_ms.get('total', 0):.0f} ms · {verdict}"
    console.print(Panel(body, title=title, subtitle=subtitle, title_align="left", subtitle_align="right"))
    return ok


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
