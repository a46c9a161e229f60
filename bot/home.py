"""The App Home tab: what lorebot is, how to ask, what it knows, how it is doing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.people import Names, bare_ids
from bot.rendering import clip, one_line, section, slack_source_line
from bot.slack_sources import SlackSource, listed_slack_source
from bot.slash import HELP
from knowledge.stores.base import DocumentInfo, VectorStore
from training.feedback import FeedbackStats
from training.jobs_log import JobRun


@dataclass(frozen=True)
class HomeFacts:
    documents: list[DocumentInfo]
    stats: FeedbackStats | None  # None when the feedback database could not be read
    generator: str
    adapter: str | None
    jobs: dict[str, JobRun] | None = None  # the scheduled jobs' latest runs; None when unreadable
    # Public Slack documents shown with their authors (``public_slack_sources``), by doc_id, and
    # the names to show them by (bot.people.People); a Slack document missing here shows no authors.
    slack_sources: Mapping[str, SlackSource] = field(default_factory=dict)
    names: Names | None = None


MAX_LISTED_PUBLIC = 20


def public_slack_sources(store: VectorStore, documents: list[DocumentInfo]) -> dict[str, SlackSource]:
    """The Slack documents among those the Home tab lists (public ones only), with their authors."""
    shown = [d for d in documents if d.scope.is_public][:MAX_LISTED_PUBLIC]
    sources = {d.doc_id: listed_slack_source(d, store) for d in shown}
    return {doc_id: source for doc_id, source in sources.items() if source is not None}


def home_view(facts: HomeFacts) -> dict:
    """The Home tab as a Block Kit view.

    Only totals are shown for channel-only documents: whoever opens the tab may not be in those
    channels, and even a title can say too much.
    """
    public = [d for d in facts.documents if d.scope.is_public]
    restricted = len(facts.documents) - len(public)
    knowledge = f"*What I know:* {len(facts.documents)} document{'s' if len(facts.documents) != 1 else ''}"
    knowledge += f" — {len(public)} for everyone, {restricted} for specific channels only."
    if public:
        titles = ", ".join(_title(d, facts) for d in public[:MAX_LISTED_PUBLIC])
        knowledge += f"\nFor everyone: {titles}" + (" …" if len(public) > MAX_LISTED_PUBLIC else "")
    if facts.stats is None:
        feedback = "*Feedback:* not available right now."
    else:
        s = facts.stats
        feedback = (f"*Feedback:* {s.interactions} answer{'s' if s.interactions != 1 else ''} given, "
                    f":+1: {s.upvotes}, :-1: {s.downvotes}.")
    if facts.generator == "extractive":
        model = "*Answers written by:* quoting the documents (no language model configured)."
    else:
        adapter = (f" with adapter `{one_line(facts.adapter)}`" if facts.adapter
                   else " (base model; no fine-tuned adapter yet)")
        model = f"*Answers written by:* the {one_line(facts.generator)} model{adapter}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "lorebot", "emoji": True}},
        section(HELP),
        {"type": "divider"},
        section(clip(knowledge, 3_000)),
        section(feedback),
        section(model),
        section(_schedule(facts.jobs)),
    ]
    return {"type": "home", "blocks": blocks}


def _title(document: DocumentInfo, facts: HomeFacts) -> str:
    """A public document's title; a Slack one as its channel, day, authors and permalink."""
    slack = facts.slack_sources.get(document.doc_id) or listed_slack_source(document, None)
    if slack is None:
        return one_line(document.title)
    return slack_source_line(slack, facts.names or bare_ids, title=document.title)


def _schedule(jobs: dict[str, JobRun] | None) -> str:
    """The scheduled jobs' last runs, one line each, times in the reader's own time zone.

    Outcomes only: a run's detail can name a channel-only document or a private file's path, and
    anyone in the workspace may open this tab. The detail is in ``lorebot feedback stats``.
    """
    if jobs is None:
        return "*Training schedule:* not available right now."
    if not jobs:
        return "*Training schedule:* no scheduled job has run yet."
    lines = ["*Training schedule* (last runs):"]
    for name, run in jobs.items():
        when = f"<!date^{int(run.started_at.timestamp())}^{{date_short_pretty}} {{time}}|{run.started_at:%Y-%m-%d %H:%M} UTC>"
        lines.append(f"• `{one_line(name, 80)}` {one_line(run.outcome, 20)} {when}")
    lines.append("_Details of each run: `lorebot feedback stats`, or lorebot's logs._")
    return clip("\n".join(lines), 3_000)
