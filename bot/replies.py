"""Answering in a Slack thread: a sign of progress, the answer inside Slack's limits, the
interaction recorded, and a short, kind explanation instead of silence when anything fails."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.chat_stream import ChatStream

from bot.answering import Answer, AnswerDeps, answer_question
from bot.apologies import apology_for
from bot.conversations import ConversationKinds, start_lookup
from bot.generation import Turn
from bot.metrics import Metrics
from bot.people import Names
from bot.rendering import MAX_SECTION_CHARS, SlackMessage, answer_messages, split_text, stream_markdown, to_mrkdwn
from bot.slack_text import plain_text
from bot.threads import read_thread, standalone_question
from knowledge.access import Audience
from training.feedback import FeedbackStore, Interaction, UsedPassage, new_interaction_id

log = logging.getLogger(__name__)

WORKING = "_Looking through the documents…_"
ASSISTANT_STATUS = "is looking through the documents…"
# Characters buffered before each streaming call: a few words at a time, within Slack's rate limits.
STREAM_BUFFER_CHARS = 120
HOW_TO = (
    "Ask me a question in words, e.g. `@lorebot how many vacation days do we get?` "
    "I answer in the thread from the documents this channel may see, with numbered sources. "
    "`/lorebot help` shows everything I can do."
)


@dataclass(frozen=True)
class Ask:
    """A question asked in a conversation: where it was asked and where the answer goes."""

    channel_id: str
    user_id: str
    text: str  # as Slack sent it
    ts: str  # the asking message
    thread_ts: str  # the thread the answer goes into
    surface: str  # "mention", "follow_up" or "assistant"
    team_id: str | None = None

    @property
    def in_existing_thread(self) -> bool:
        return self.thread_ts != self.ts


@dataclass
class ReplyDeps:
    client: WebClient
    answering: AnswerDeps
    feedback: FeedbackStore
    bot_user_id: str | None
    metrics: Metrics
    thread_messages: int = 20
    thread_chars: int = 4_000
    # An answer ready sooner than this needs no "working" sign: a placeholder replaced a moment
    # later would only flicker and spend two calls of Slack's rate limit.
    progress_delay_s: float = 0.5
    # lorebot's bot ID (auth.test), beside its user ID: how its own earlier answers are told apart
    # from other bots' messages in a thread.
    bot_id: str | None = None
    # Where questions are asked (public channel, DM…), recorded for the training rules; None: unknown.
    conversations: ConversationKinds | None = None
    # Slack sources' authors by name (bot.people.People); None shows their user IDs as plain text.
    names: Names | None = None


def begin_reply(ask: Ask, deps: ReplyDeps) -> ThreadProgress:
    """Start showing progress for ``ask`` now, while it may still wait for a free worker."""
    progress = ThreadProgress(deps.client, channel=ask.channel_id, thread_ts=ask.thread_ts,
                              assistant=ask.surface == "assistant", delay_s=deps.progress_delay_s,
                              recipient=(ask.user_id, ask.team_id))
    progress.start()
    return progress


def answer_in_thread(ask: Ask, deps: ReplyDeps, progress: ThreadProgress | None = None) -> str | None:
    """Answer ``ask`` in its thread; the interaction ID, or None when there was nothing to answer
    or it failed (the asker then got an explanation). Never raises."""
    progress = progress or begin_reply(ask, deps)
    words = plain_text(ask.text, bot_user_id=deps.bot_user_id)
    try:
        if not words:
            progress.deliver([SlackMessage(text=HOW_TO, blocks=[])])
            return None
        conversation_kind = start_lookup(deps.conversations, ask.channel_id)  # runs beside the answer
        question, history = _in_context(ask, words, deps, progress)
        answer = answer_question(question, Audience.for_conversation(ask.channel_id), deps.answering,
                                 on_text=progress.stream, history=history)
        with progress.calling_slack():
            kind = conversation_kind()
        interaction = interaction_for(ask, words, answer, conversation_kind=kind)
        record_interaction(deps.feedback, interaction)
        posted = progress.deliver(answer_messages(answer, interaction_id=interaction.interaction_id, names=deps.names))
    except Exception as e:
        log.error("answering %s in %s failed", ask.ts, ask.channel_id, exc_info=True)
        deps.metrics.answer_failed(ask.surface)
        progress.apologise(apology_for(e))
        return None
    report_answer(deps.metrics, answer, surface=ask.surface, channel_id=ask.channel_id,
                  slack_s=progress.slack_s, total_s=progress.elapsed_s)
    link_messages(deps.feedback, interaction.interaction_id, channel_id=ask.channel_id, posted=posted)
    return interaction.interaction_id


def report_answer(metrics: Metrics, answer: Answer, *, surface: str, channel_id: str, slack_s: float,
                  total_s: float) -> None:
    """Count a delivered answer, and log one line about it: what happened, never what was said."""
    metrics.answered(answer, surface=surface, slack_s=slack_s, total_s=total_s)
    log.info("answered a %s in %s: %s, %d source%s, by %s%s, %.0f ms", surface, channel_id,
             "found" if answer.found else "not found", len(answer.citations),
             "" if len(answer.citations) == 1 else "s", answer.generator,
             f" ({answer.adapter})" if answer.adapter else "", total_s * 1000)


def _in_context(ask: Ask, words: str, deps: ReplyDeps,
                progress: ThreadProgress) -> tuple[str, tuple[Turn, ...]]:
    """The question as a search needs it (standalone), and the thread's earlier turns for a model."""
    if not ask.in_existing_thread:
        return words, ()
    with progress.calling_slack():
        earlier = read_thread(deps.client, channel=ask.channel_id, thread_ts=ask.thread_ts, before_ts=ask.ts,
                              bot_user_id=deps.bot_user_id, bot_id=deps.bot_id, max_messages=deps.thread_messages,
                              max_chars=deps.thread_chars)
    history = tuple(Turn(role="assistant" if m.from_bot else "user", text=m.text) for m in earlier)
    return standalone_question(words, earlier), history


def interaction_for(ask: Ask, words: str, answer: Answer, *, conversation_kind: str | None = None) -> Interaction:
    """The record of an answer: ``asked`` is ``words``, the asker's own; ``question`` what was searched
    for (with a thread's earlier messages folded in, by whoever wrote them)."""
    return Interaction(
        interaction_id=new_interaction_id(), channel_id=ask.channel_id, user_id=ask.user_id,
        surface=ask.surface, asked=words, question=answer.question, answer=answer.text, found=answer.found,
        generator=answer.generator, adapter=answer.adapter, team_id=ask.team_id, thread_ts=ask.thread_ts or None,
        passages=used_passages(answer), timings_ms=dict(answer.timings_ms), conversation_kind=conversation_kind,
    )


def used_passages(answer: Answer) -> tuple[UsedPassage, ...]:
    """Every passage the generator saw, with the number it is cited as (None if uncited)."""
    cited = {c.chunk_id: c for c in answer.citations}
    return tuple(
        UsedPassage(doc_id=p.doc_id, chunk_id=p.chunk_id, title=p.title, source=p.source, text=p.text,
                    scope=tuple(p.scope.as_list()), score=p.score,
                    cited_as=cited[p.chunk_id].n if p.chunk_id in cited else None,
                    quote=cited[p.chunk_id].snippet if p.chunk_id in cited else None)
        for p in answer.passages
    )


def record_interaction(feedback: FeedbackStore, interaction: Interaction) -> None:
    """Store the interaction; if the database is down the answer still goes out (votes on it
    will not count, which the voter is told)."""
    try:
        feedback.record_interaction(interaction)
    except Exception:
        log.error("could not record interaction %s", interaction.interaction_id, exc_info=True)


def link_messages(feedback: FeedbackStore, interaction_id: str, *, channel_id: str, posted: list[str]) -> None:
    """Remember which messages show the answer, so reactions on any of them become votes."""
    try:
        for ts in posted:
            feedback.link_message(interaction_id, channel_id=channel_id, ts=ts)
    except Exception:
        log.error("could not link the messages of interaction %s", interaction_id, exc_info=True)


class ThreadProgress:
    """Shows that lorebot is working, then puts the answer where that sign was.

    In an assistant thread the sign is Slack's own status line (cleared by the reply); elsewhere a
    placeholder message, posted only if the answer takes longer than ``delay_s``, is updated in
    place with the first part of the answer. An answer that a generator streams is streamed into
    the thread as it is written (Slack's chat streaming API), or, where Slack refuses that, shown
    by updating the placeholder at most once per ``update_interval_s``. Either way the finished
    answer, checked and rendered, then replaces what was streamed.

    It also keeps time, for the metrics: ``elapsed_s`` since the question was taken on, and
    ``slack_s`` spent waiting for Slack's Web API on this answer's behalf (the thread read, the
    progress sign, streaming, the answer's messages).
    """

    def __init__(self, client: WebClient, *, channel: str, thread_ts: str, assistant: bool, delay_s: float,
                 recipient: tuple[str, str | None] | None = None, update_interval_s: float = 1.0):
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.assistant, self.delay_s = assistant, delay_s
        self.recipient, self.update_interval_s = recipient, update_interval_s
        self._lock = threading.Lock()
        self._placeholder_ts: str | None = None
        self._finished = False
        self._timer: threading.Timer | None = None
        self._streamer: ChatStream | None = None
        self._streamed = ""  # the text written so far, for the chat.update fallback
        self._unsent = ""  # streamed text not yet sent to Slack
        self._last_update = 0.0
        self._started = time.monotonic()
        self._slack_s = 0.0
        self._clock = threading.Lock()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def slack_s(self) -> float:
        with self._clock:
            return self._slack_s

    @contextmanager
    def calling_slack(self) -> Iterator[None]:
        """Count the block as time spent in Slack's Web API."""
        began = time.monotonic()
        try:
            yield
        finally:
            with self._clock:
                self._slack_s += time.monotonic() - began

    def stream(self, piece: str) -> None:
        """Show the next piece of an answer being written."""
        self._stop_timer()
        with self._lock:
            if self._finished:
                return
            self._streamed += piece
            if self._placeholder_ts is None and self._stream_append(piece):
                return
            self._show_streamed_text()

    def _stream_append(self, piece: str) -> bool:
        """Append through the streaming API; False (and never again) once Slack refuses it.

        The first piece goes out at once (the asker sees the answer begin); later ones are sent a
        few words at a time, which keeps within Slack's rate limits.
        """
        self._unsent += piece
        if self._streamer is not None and len(self._unsent) < STREAM_BUFFER_CHARS:
            return True
        # Streaming takes Markdown, where a model's [label](url) or <!here> would be live: made inert first.
        ready, held = stream_markdown(self._unsent)
        if not ready:
            return True
        try:
            with self.calling_slack():
                if self._streamer is None:
                    user, team = self.recipient or (None, None)
                    # buffer_size=1: lorebot decides when to send (above), ChatStream sends what it gets.
                    self._streamer = self.client.chat_stream(channel=self.channel, thread_ts=self.thread_ts,
                                                             recipient_user_id=user, recipient_team_id=team,
                                                             buffer_size=1)
                self._streamer.append(markdown_text=ready)
            self._unsent = held
            return True
        except SlackApiError as e:
            log.info("streaming refused in %s (%s): updating a message instead", self.channel,
                     e.response.get("error"))
            self._placeholder_ts = self._streamer.ts if self._streamer else None
            self._streamer = None
            return False

    def _show_streamed_text(self) -> None:
        now = time.monotonic()
        if self._placeholder_ts is None:
            self._placeholder_ts = self._post(SlackMessage(text=WORKING, blocks=[]))
        if now - self._last_update < self.update_interval_s:
            return  # chat.update is rate limited; the finished answer replaces this anyway
        self._last_update = now
        text = split_text(to_mrkdwn(self._streamed), MAX_SECTION_CHARS)[-1] if self._streamed.strip() else WORKING
        with self.calling_slack():
            self.client.chat_update(channel=self.channel, ts=self._placeholder_ts, text=text)

    def _finish_stream(self) -> None:
        """Close an open stream; its message then becomes the one the answer replaces."""
        if self._streamer is None:
            return
        streamer, self._streamer = self._streamer, None
        try:
            with self.calling_slack():
                streamer.stop()
        except SlackApiError:
            log.warning("could not close the answer stream in %s", self.channel, exc_info=True)
        self._placeholder_ts = streamer.ts or self._placeholder_ts

    def start(self) -> None:
        if self.assistant and self._set_status(ASSISTANT_STATUS):
            return
        if self.delay_s <= 0:
            self._post_placeholder()
            return
        # In the asker's context: a failure to post it is logged under their request.
        self._timer = threading.Timer(self.delay_s, contextvars.copy_context().run, args=(self._post_placeholder,))
        self._timer.daemon = True
        self._timer.start()

    def deliver(self, messages: list[SlackMessage]) -> list[str]:
        """Post ``messages`` in the thread (the first replacing the placeholder); their ts values."""
        self._stop_timer()
        with self._lock:
            self._finished = True
            self._finish_stream()
            posted = []
            for i, message in enumerate(messages):
                if i == 0 and self._placeholder_ts:
                    with self.calling_slack():
                        self.client.chat_update(channel=self.channel, ts=self._placeholder_ts, text=message.text,
                                                blocks=message.blocks)
                    posted.append(self._placeholder_ts)
                else:
                    posted.append(self._post(message))
            return posted

    def apologise(self, text: str) -> None:
        """Tell the asker it failed, in the thread; if even that fails, the log is all there is."""
        try:
            self._finished = False  # an answer may have half-posted: the apology still goes out
            self.deliver([SlackMessage(text=text, blocks=[])])
        except Exception:
            log.error("could not tell %s/%s that answering failed", self.channel, self.thread_ts, exc_info=True)
            if self.assistant:
                self._set_status("")

    def _post(self, message: SlackMessage) -> str:
        kwargs = {"blocks": message.blocks} if message.blocks else {}
        with self.calling_slack():
            response = self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts,
                                                    text=message.text, unfurl_links=False, unfurl_media=False,
                                                    **kwargs)
        return response["ts"]

    def _post_placeholder(self) -> None:
        with self._lock:
            if self._finished or self._placeholder_ts:
                return
            try:
                self._placeholder_ts = self._post(SlackMessage(text=WORKING, blocks=[]))
            except SlackApiError:
                log.warning("could not post the progress placeholder in %s", self.channel, exc_info=True)

    def _set_status(self, status: str) -> bool:
        try:
            with self.calling_slack():
                self.client.assistant_threads_setStatus(channel_id=self.channel, thread_ts=self.thread_ts,
                                                        status=status)
            return True
        except SlackApiError as e:  # not an assistant thread after all, or the feature is off
            log.info("assistant status unavailable in %s: %s", self.channel, e.response.get("error"))
            return False

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
