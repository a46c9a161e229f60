"""``/lorebot``: an answer only the asker sees (with a button to share it), ``help`` and ``sources``."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.answering import Answer, AnswerDeps, Citation, answer_question
from bot.apologies import apology_for
from bot.conversations import ConversationKinds, start_lookup
from bot.metrics import Metrics
from bot.people import Names, People, bare_ids
from bot.rendering import (
    SlackMessage,
    answer_messages,
    escape,
    one_line,
    section,
    slack_source_line,
    source_link,
    split_text,
)
from bot.replies import (
    Ask,
    interaction_for,
    link_messages,
    record_interaction,
    report_answer,
)
from bot.slack_retries import slack_retry_handlers
from bot.slack_sources import listed_slack_source
from bot.slack_text import plain_text
from knowledge.access import Audience, filter_for
from knowledge.stores.base import VectorStore
from knowledge.types import DocumentInfo
from training.feedback import FeedbackStore, Interaction

log = logging.getLogger(__name__)

HELP = (
    "*lorebot* answers questions from your organization's documents, with numbered sources, using only "
    "the documents this conversation may see.\n"
    "• `@lorebot &lt;question&gt;` in a channel: I answer in the thread, for everyone there. Follow-ups in the "
    "thread (\u201cand for contractors?\u201d) are understood.\n"
    "• `/lorebot &lt;question&gt;`: the answer is shown only to you, with a button to share it.\n"
    "• `/lorebot sources`: the documents this conversation may draw on.\n"
    "• React with :+1: or :-1: (or use the buttons) on an answer: it is how I get better."
)
MAX_LISTED_DOCUMENTS = 60
_HELP_WORDS = ("", "help", "?")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def is_question(text: str) -> bool:
    """False for ``/lorebot``'s own words (help, sources), True for anything to answer."""
    return text.strip().lower() not in (*_HELP_WORDS, "sources")


@dataclass(frozen=True)
class Command:
    channel_id: str
    user_id: str
    text: str
    response_url: str
    team_id: str | None = None
    # When lorebot took the command on (time.monotonic()), for the answer's total time.
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass
class SlashDeps:
    client: WebClient
    answering: AnswerDeps
    feedback: FeedbackStore
    store: VectorStore
    metrics: Metrics
    conversations: ConversationKinds | None = None  # the kind of conversation asked in, for training
    names: Names | None = None  # Slack sources' authors by name; by default People(client)

    def __post_init__(self) -> None:
        if self.names is None:
            self.names = People(self.client)


def run_command(command: Command, deps: SlashDeps) -> None:
    """Answer a ``/lorebot`` command through its response URL. Never raises."""
    reply = ResponseUrl(command.response_url)
    words = plain_text(command.text)
    try:
        if words.lower() in _HELP_WORDS:
            reply.send([SlackMessage(text="How to use lorebot", blocks=[section(HELP)])])
        elif words.lower() == "sources":
            reply.send(sources_messages(deps.store, command.channel_id, names=deps.names))
        else:
            _answer(command, words, deps, reply)
    except Exception as e:
        log.error("/lorebot in %s failed", command.channel_id, exc_info=True)
        if is_question(words):
            deps.metrics.answer_failed("slash")
        reply.send_quietly(apology_for(e))


def _answer(command: Command, words: str, deps: SlashDeps, reply: ResponseUrl) -> None:
    conversation_kind = start_lookup(deps.conversations, command.channel_id)  # runs beside the answer
    answer = answer_question(words, Audience.for_conversation(command.channel_id), deps.answering)
    ask = Ask(channel_id=command.channel_id, user_id=command.user_id, text=words, ts="", thread_ts="",
              surface="slash", team_id=command.team_id)
    interaction = interaction_for(ask, words, answer,
                                  conversation_kind=conversation_kind())
    record_interaction(deps.feedback, interaction)
    sending = time.monotonic()
    reply.send(answer_messages(answer, interaction_id=interaction.interaction_id, shareable=True,
                               names=deps.names), replace_original=True)
    report_answer(deps.metrics, answer, surface="slash", channel_id=command.channel_id,
                  slack_s=time.monotonic() - sending, total_s=time.monotonic() - command.received_at)


def sources_messages(store: VectorStore, channel_id: str, *, names: Names | None = None) -> list[SlackMessage]:
    """The documents a conversation may draw on, as one message (a long list is cut, with a count).
    Slack sources show their channel, day, authors and permalink: all of it from documents this
    conversation may see, so nothing about another channel's threads."""
    documents = store.list_documents(filter_for(Audience.for_conversation(channel_id)))
    return documents_messages(documents, store=store, names=names)


def documents_messages(documents: list[DocumentInfo], *, store: VectorStore | None = None,
                       names: Names | None = None) -> list[SlackMessage]:
    """Documents (already only those the conversation may see) listed as one message; ``store``
    gives Slack sources their authors (shown by ``names``)."""
    if not documents:
        return [SlackMessage(text="No documents yet", blocks=[section(
            "No documents are visible to this conversation yet. Whoever runs lorebot can add some with "
            "`lorebot ingest PATH --channel &lt;this channel's ID&gt;` (or `--public`).")])]
    lines = [_document_line(d, store, names or bare_ids) for d in documents[:MAX_LISTED_DOCUMENTS]]
    if len(documents) > MAX_LISTED_DOCUMENTS:
        lines.append(f"…and {len(documents) - MAX_LISTED_DOCUMENTS} more.")
    heading = f"*{len(documents)} document{'s' if len(documents) != 1 else ''} this conversation may draw on:*"
    blocks = [section(heading)] + [section(piece) for piece in split_text("\n".join(lines), 3_000)]
    return [SlackMessage(text=heading.strip("*"), blocks=blocks)]


def _document_line(document: DocumentInfo, store: VectorStore | None, names: Names) -> str:
    slack = listed_slack_source(document, store)
    if slack is not None:
        name = slack_source_line(slack, names, title=document.title)
    else:
        # Titles and sources come from file names and URLs: source_link lets only a clean http(s) URL be a link.
        url = source_link(document.source)
        label = one_line(document.title) or "(untitled)"
        name = f"<{url}|{label}>" if url else label
    return f"• {name}{'' if document.scope.is_public else '  _(this channel only)_'}"


def share_answer(*, interaction_id: str, user_id: str, channel_id: str, response_url: str | None,
                 deps: SlashDeps) -> None:
    """Post an answer that only its asker saw into the channel it was asked in. Never raises."""
    reply = ResponseUrl(response_url)
    try:
        interaction = deps.feedback.get_interaction(interaction_id)
        if interaction is None or interaction.channel_id != channel_id or interaction.user_id != user_id:
            # Another channel's answer may rest on documents this one may not see.
            reply.send_quietly("I can only share an answer in the conversation it was asked in, for the person who asked.")
            return
        asker = f"<@{interaction.user_id}>" if _USER_ID.fullmatch(interaction.user_id) else "Someone"
        heading = f"{asker} asked: {escape(interaction.asked)}"
        messages = answer_messages(answer_from(interaction), interaction_id=interaction_id, heading=heading,
                                   names=deps.names)
        posted = _post_in_channel(deps.client, channel_id, messages, reply)
        link_messages(deps.feedback, interaction_id, channel_id=channel_id, posted=posted)
        reply.send_quietly("Shared in the channel.", replace_original=True)
    except Exception as e:
        log.error("sharing interaction %s failed", interaction_id, exc_info=True)
        reply.send_quietly(apology_for(e))


def _post_in_channel(client: WebClient, channel_id: str, messages: list[SlackMessage], reply: ResponseUrl) -> list[str]:
    """Post as the bot (reactions on it then count as votes); where the bot is not a member,
    the response URL can still post in the channel, without a message ID to vote on."""
    posted: list[str] = []
    try:
        for message in messages:
            response = client.chat_postMessage(channel=channel_id, text=message.text, blocks=message.blocks,
                                               unfurl_links=False, unfurl_media=False)
            posted.append(response["ts"])
    except SlackApiError as e:
        if posted or e.response.get("error") not in ("not_in_channel", "channel_not_found"):
            raise
        reply.send(messages, response_type="in_channel")
    return posted


def answer_from(interaction: Interaction) -> Answer:
    """The answer as it was shown, rebuilt from its record (for sharing it later)."""
    cited = sorted((p for p in interaction.passages if p.cited_as is not None), key=lambda p: p.cited_as or 0)
    citations = tuple(
        Citation(n=p.cited_as or 0, title=p.title, source=p.source, snippet=p.quote or "", score=p.score,
                 doc_id=p.doc_id, chunk_id=p.chunk_id, scope=list(p.scope))
        for p in cited
    )
    return Answer(question=interaction.question, text=interaction.answer, found=interaction.found,
                  citations=citations, generator=interaction.generator, adapter=interaction.adapter)


class ResponseUrl:
    """Messages through a command's or a button's response URL (ephemeral unless told otherwise)."""

    def __init__(self, url: str | None):
        self.client = WebhookClient(url, retry_handlers=slack_retry_handlers()) if url else None

    def send(self, messages: list[SlackMessage], *, response_type: str = "ephemeral",
             replace_original: bool = False) -> None:
        if self.client is None:
            raise ValueError("this request came without a response URL")
        for i, message in enumerate(messages):
            response = self.client.send(text=message.text, blocks=message.blocks or None, response_type=response_type,
                                        replace_original=replace_original and i == 0)
            if response.status_code != 200:
                raise SlackApiError(f"response_url answered {response.status_code}", {"error": response.body})

    def send_quietly(self, text: str, *, replace_original: bool = False) -> None:
        """Best effort: a failure here can only be logged."""
        try:
            self.send([SlackMessage(text=text, blocks=[])], replace_original=replace_original)
        except Exception:
            log.error("could not answer through the response URL", exc_info=True)

