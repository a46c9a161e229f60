"""Keeping listed channels' documents current: Slack's events as they come, and a scheduled catch-up.

A channel is *listed* once ``lorebot ingest-slack`` has read it (it has a cursor row); events of
any other conversation are ignored. Each message event (a new message or reply, an edit, a
deletion) re-reads the one thing it touched, the thread (``conversations.replies``) or the run of
messages around it outside threads (``conversations.history`` near its ts), and writes that
document again through the Ingestor with the scope the channel's documents have (never wider); a
thread or a group with nothing left is removed. Channel events narrow (made private, shared with
another organization) or remove (archived, deleted) a channel's documents at once. The catch-up
(:meth:`SlackSync.catch_up`, the scheduler's ``slack-sync`` job) checks each listed channel with
``conversations.info`` and then syncs it from its cursor, re-reading the threads in the look-back
whose listing changed. After events may have been missed (the bot started listening, or failed to
apply one), and at least once per ``LOREBOT_SLACK_FULL_READ_HOURS``, it reads the channel's whole
history instead, every thread in the look-back re-read: that finds messages of any age deleted
while no event arrived, and edits the listing shows (outside threads, a parent, a reply also sent
to the channel); an old reply's edit waits for the rotation (see ``ingest``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.conversations import ConversationKinds, conversation_kind
from bot.slack_history import reader
from bot.slack_history.documents import (
    KNOWLEDGE_SUBTYPES,
    group_documents,
    is_knowledge,
    slack_doc_id,
    slack_path,
    thread_document,
    ts_seconds,
)
from bot.slack_history.ingest import (
    SlackIngest,
    SlackIngestReport,
    _is_standalone,
    _is_thread_parent,
    build_slack_ingest,
)
from bot.slack_history.reader import Channel, ChannelUnreadable, Identity
from bot.slack_history.sync_state import Cursor, read_fingerprint, ts_order
from knowledge.access import Scope
from knowledge.errors import WideningRefused
from knowledge.types import Document, DocumentInfo
from training.feedback import PUBLIC_CHANNEL

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)

CHANNEL_TTL_S = 300.0


@dataclass(frozen=True)
class Change:
    """What one message event touched: a message (``ts``) in a thread (``thread_ts``, the parent's
    ts; the parent itself has ``thread_ts == ts``) or outside any (``thread_ts`` None)."""

    channel_id: str
    ts: str
    thread_ts: str | None = None
    new_reply: bool = False


def message_change(event: dict, me: Identity) -> Change | None:
    """The change a ``message`` event makes to indexed history, or None when it changes nothing:
    lorebot's or another bot's message (or its edit or deletion), Slack's notices, a question to
    lorebot, an edit that left the text as it was (an unfurl, a reply count).

    >>> me = Identity("https://acme.slack.com/", "U0BOT", "B0BOT")
    >>> message_change({"channel": "C1", "user": "U1", "ts": "2.0", "thread_ts": "1.0", "text": "yes"}, me)
    Change(channel_id='C1', ts='2.0', thread_ts='1.0', new_reply=True)
    >>> message_change({"channel": "C1", "subtype": "message_deleted", "deleted_ts": "3.0",
    ...                 "previous_message": {"user": "U1", "ts": "3.0", "text": "x"}}, me)
    Change(channel_id='C1', ts='3.0', thread_ts=None, new_reply=False)
    >>> message_change({"channel": "C1", "user": "U0BOT", "bot_id": "B0BOT", "ts": "4.0", "text": "[1]"}, me)
    """
    channel_id, subtype = _text(event.get("channel")), event.get("subtype")
    if not channel_id or not (subtype is None or isinstance(subtype, str)):
        return None  # the listener calls this before it answers: no event shape may make it raise
    if subtype == "message_changed":
        message, previous = _object(event.get("message")), event.get("previous_message")
        if _by_a_bot(message, me) or not _text(message.get("ts")):
            return None
        if isinstance(previous, dict) and previous.get("text") == message.get("text"):
            return None
        return Change(channel_id, message["ts"], _text(message.get("thread_ts")))
    if subtype == "message_deleted":
        previous = _object(event.get("previous_message"))
        ts = _text(event.get("deleted_ts")) or _text(previous.get("ts"))
        if not ts or (previous and _by_a_bot(previous, me)):
            return None
        return Change(channel_id, ts, _text(previous.get("thread_ts")))
    ts, thread_ts = _text(event.get("ts")), _text(event.get("thread_ts"))
    if subtype in KNOWLEDGE_SUBTYPES and ts and is_knowledge(event, me):
        return Change(channel_id, ts, thread_ts, new_reply=bool(thread_ts) and thread_ts != ts)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _by_a_bot(message: dict, me: Identity) -> bool:
    return bool(message.get("bot_id")) or message.get("user") in (None, "", me.user_id)


@dataclass
class CatchUpReport:
    """What one scheduled catch-up did, channel by channel (IDs only: it is shown in the App Home)."""

    synced: SlackIngestReport = field(default_factory=SlackIngestReport)
    narrowed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # archived, deleted or left: documents removed
    kept: list[str] = field(default_factory=list)  # archived, deleted or left: documents kept (setting)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and self.synced.ok

    def summary(self) -> str:
        parts = [self.synced.summary()]
        if self.synced.read_whole:
            parts.append(f"whole history read: {', '.join(self.synced.read_whole)}")
        if self.narrowed:
            parts.append(f"narrowed to their channel (no longer public): {', '.join(self.narrowed)}")
        if self.removed:
            parts.append(f"archived, deleted or left by lorebot, documents removed: {', '.join(self.removed)}")
        if self.kept:
            parts.append(f"archived, deleted or left by lorebot, documents kept: {', '.join(self.kept)}")
        failed = self.failed + self.synced.failed
        if failed:
            parts.append("not synced: " + "; ".join(f"{c}: {r}" for c, r in failed))
        return "; ".join(parts)


@dataclass
class SlackSync:
    """Live updates and catch-up of listed channels, on top of part A's reader (``history``)."""

    history: SlackIngest
    keep_archived: bool = False
    full_read_every: timedelta | None = None  # the catch-up reads a channel's whole history this often
    conversations: ConversationKinds | None = None
    channel_ttl_s: float = CHANNEL_TTL_S
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _channels: dict[str, tuple[float, Channel]] = field(default_factory=dict, init=False, repr=False)

    @property
    def me(self) -> Identity:
        return self.history.me

    # ---- message events

    def on_message(self, event: dict) -> str:
        """Apply one ``message`` event; returns what was done, in words (for the log). Never raises:
        a failure is logged, and the next catch-up repairs it."""
        change = message_change(event, self.me)
        if change is None:
            return "nothing to index"
        try:
            return self.apply(change)
        except Exception:
            log.error("could not update the index for a message in %s; the next sync will", change.channel_id,
                      exc_info=True)
            _ask_for_full_read(lambda: self.history.sync_state.request_full_read(change.channel_id))
            return "failed"

    def events_missed(self) -> None:
        """Events may not have reached lorebot until now (a bot process starts listening): the next
        catch-up reads every listed channel whole. Never raises."""
        _ask_for_full_read(self.history.sync_state.events_missed)

    def apply(self, change: Change) -> str:
        with self._lock(change.channel_id):
            # The cursor is read under the lock: a narrowing that ran while this waited is seen.
            cursor = self.history.sync_state.cursor(change.channel_id)
            if cursor is None:
                return "channel not listed"
            try:
                channel = self._channel(change.channel_id)
            except ChannelUnreadable as e:
                log.warning("message in %s not indexed: %s", change.channel_id, e.reason)
                return f"not read: {e.reason}"
            if cursor.public and not channel.is_public:  # made private or shared, and that event missed
                self._narrow(change.channel_id, "is no longer public")
                cursor = replace(cursor, public=False)
            scope = _scope(channel.id, cursor)
            if change.thread_ts is None:
                return self.refresh_group(channel, change.ts, scope=scope)
            replies = self.refresh_thread(channel, change.thread_ts, scope=scope)
            if change.new_reply and replies == 1:
                # Its first reply made the parent a thread: it leaves the group it was part of.
                self.refresh_group(channel, change.thread_ts, scope=scope)
            return f"thread with {replies} replies written" if replies >= 0 else "thread removed"

    def refresh_thread(self, channel: Channel, thread_ts: str, *, scope: Scope) -> int:
        """Read the thread again and write its document; returns how many replies it has, or -1
        when nothing in it is left to index (its document is removed)."""
        state = self.history.sync_state
        began = state.now()  # its mark says what was known then: a run that began earlier writes no older copy
        messages = reader.thread(self.history.client, channel.id, thread_ts, page_size=self.history.options.page_size)
        doc = thread_document(channel, messages, me=self.me, scope=scope, options=self.history.options.documents)
        # Written and marked under one hold of the write lock: a run's write sees both or neither.
        with self.history.ingestor.store.exclusive_writer():
            if doc is None:
                self._remove([slack_doc_id(channel.id, thread_ts)])
            elif not self._write(channel.id, [doc]):
                return len(messages) - 1  # not marked: the next full read reads it again
            if messages:
                state.mark_threads(channel.id, {thread_ts: read_fingerprint(messages)}, checked_at=began)
        return -1 if doc is None else len(messages) - 1

    def refresh_group(self, channel: Channel, ts: str, *, scope: Scope) -> str:
        """Rebuild the messages outside threads chained to ``ts`` (no gap longer than the window),
        and remove the channel's group documents in that stretch that no longer begin a group."""
        window = self.history.options.documents.window_s
        began = self.history.sync_state.now()
        earlier, parents_before = self._chain_back(channel.id, ts, window)
        later, parents_after = self._chain_forward(channel.id, ts, window)
        messages = earlier + later
        docs = group_documents(channel, messages, me=self.me, scope=scope, options=self.history.options.documents)
        span = [m["ts"] for m in messages] + [ts]
        low, high = min(span, key=ts_order), max(span, key=ts_order)
        emitted = {doc.doc_id for doc in docs}
        parents = parents_before | parents_after
        stale = [info.doc_id for info in self._indexed(channel.id)
                 if info.doc_id not in emitted and _first_ts(info) not in parents
                 and ts_order(low) <= ts_order(_first_ts(info)) <= ts_order(high)]
        with self.history.ingestor.store.exclusive_writer():  # a run's write sees the groups and the stamp, or neither
            if not self._write(channel.id, docs):
                # Nothing removed either (the old groups still hold these messages) and no stamp:
                # the next run's copy is the freshest there is.
                return f"{len(docs)} group(s) not written"
            removed = self._remove(stale)
            self.history.sync_state.groups_changed(channel.id, began)
        return f"{len(docs)} group(s) written, {removed} removed"

    def _chain_back(self, channel_id: str, ts: str, window: float) -> tuple[list[dict], set[str]]:
        """Standalone messages at or before ``ts``, newest first, while each is within the window
        of the one after it; and the thread parents seen on the way."""
        chained, parents, boundary = [], set(), ts_seconds(ts)
        for message in reader.history(self.history.client, channel_id, latest=_after(ts),
                                      page_size=self.history.options.page_size):
            if boundary - ts_seconds(message["ts"]) > window:
                break
            if _is_thread_parent(message):
                parents.add(message["ts"])
            elif _is_standalone(message) and is_knowledge(message, self.me):
                chained.append(message)
                boundary = ts_seconds(message["ts"])
        return chained, parents

    def _chain_forward(self, channel_id: str, ts: str, window: float) -> tuple[list[dict], set[str]]:
        """Standalone messages after ``ts`` while each is within the window of the one before, read
        a window at a time (history lists newest first: reading to now would read everything)."""
        chained, parents, boundary = [], set(), ts
        while True:
            step = list(reader.history(self.history.client, channel_id, oldest=boundary,
                                       latest=_after(boundary, window), page_size=self.history.options.page_size))
            parents |= {m["ts"] for m in step if _is_thread_parent(m)}
            kept = [m for m in step if _is_standalone(m) and is_knowledge(m, self.me)]
            if not kept:
                return chained, parents
            chained += kept
            boundary = max((m["ts"] for m in kept), key=ts_order)

    # ---- channel events

    def narrow(self, channel_id: str, reason: str) -> int:
        """The channel is no longer public (made private, shared with another organization): its
        public documents narrow to the channel now. Returns how many were narrowed."""
        self._forget_channel(channel_id)
        with self._lock(channel_id):
            return self._narrow(channel_id, reason)

    def _narrow(self, channel_id: str, reason: str) -> int:
        """:meth:`narrow`, the channel's lock held."""
        if self.history.sync_state.cursor(channel_id) is None:
            return 0
        scope = Scope.channels([channel_id])
        store = self.history.ingestor.store
        with store.exclusive_writer():  # as a sync's writes are: one that read the channel as public sees this
            self.history.sync_state.set_public(channel_id, False)
            public = [info for info in self._indexed(channel_id) if info.scope.is_public]
            for info in public:
                store.rescope_document(info.doc_id, scope)
        log.info("channel %s %s: %d documents narrowed to it", channel_id, reason, len(public))
        return len(public)

    def gone(self, channel_id: str, *, deleted: bool, what: str | None = None) -> bool:
        """The channel was archived (``deleted`` False), deleted, or lorebot was removed from it
        (``what`` says so): its documents are removed, or kept with their scope when
        LOREBOT_SLACK_KEEP_ARCHIVED is on. A deleted channel, or one whose documents were removed, is
        no longer listed; one whose documents are kept stays listed, so its sync resumes if it is
        unarchived or lorebot invited back. Returns whether documents were removed."""
        self._forget_channel(channel_id)
        state = self.history.sync_state
        if state.cursor(channel_id) is None:
            return False
        what = what or ("deleted" if deleted else "archived")
        with self._lock(channel_id):
            if self.keep_archived:
                if deleted:
                    state.forget(channel_id)
                log.info("channel %s %s: its documents are kept (LOREBOT_SLACK_KEEP_ARCHIVED)", channel_id, what)
                return False
            with self.history.ingestor.store.exclusive_writer():  # a sync writing meanwhile sees it unlisted
                state.forget(channel_id)
                removed = self._remove(info.doc_id for info in self._indexed(channel_id))
        log.info("channel %s %s: %d documents removed", channel_id, what, removed)
        return True

    # ---- the scheduled catch-up

    def catch_up(self) -> CatchUpReport:
        """Check every listed channel (``conversations.info``) and sync it: from its cursor, or
        its whole history when a full read is due (events may have been missed since the last, or
        it is ``full_read_every`` old), so that what changed while the bot was not listening (new,
        edited and deleted messages) is in the index after this run."""
        report = CatchUpReport()
        by_scope: dict[bool, dict[str, Channel]] = {True: {}, False: {}}
        for cursor in self.history.sync_state.channels():
            checked = self._check(cursor, report)
            if checked is not None:
                public, channel = checked
                by_scope[public][channel.id] = channel
        thorough = replace(self.history, options=replace(self.history.options, catch_up=True,
                                                         full_read_every=self.full_read_every))
        for public, channels in by_scope.items():
            if not channels:
                continue
            try:
                done = thorough.run(list(channels), public=public, channels=channels)
            except WideningRefused as e:  # never widen on a schedule: the admin decides
                report.failed += [(c, f"{len(e.widened)} documents would widen; not synced") for c in channels]
                continue
            _merge(report.synced, done)
        return report

    def left(self, channel_id: str) -> bool:
        """lorebot is no longer a member of the channel (removed, or it left): it can no longer see
        edits and deletions there, so the channel's documents go as an archived channel's do."""
        return self.gone(channel_id, deleted=False, what="left by lorebot")

    def _check(self, cursor: Cursor, report: CatchUpReport) -> tuple[bool, Channel] | None:
        """Whether to sync the channel, for which scope (``public``) and what Slack said of it (the
        one ``conversations.info`` of the run); None: not now."""
        channel_id = cursor.channel_id
        try:
            info = self.history.client.conversations_info(channel=channel_id).get("channel") or {}
        except SlackApiError as e:
            if e.response.get("error") == "channel_not_found":
                (report.removed if self.gone(channel_id, deleted=True) else report.kept).append(channel_id)
            else:
                report.failed.append((channel_id, reader.refusal(e)))
            return None
        except (SlackClientError, OSError) as e:
            report.failed.append((channel_id, f"could not reach Slack: {type(e).__name__}"))
            return None
        if info.get("is_archived"):
            (report.removed if self.gone(channel_id, deleted=False) else report.kept).append(channel_id)
            return None
        if info.get("is_member") is False:  # lorebot was removed, and the event missed
            (report.removed if self.left(channel_id) else report.kept).append(channel_id)
            return None
        public = cursor.public
        if public and conversation_kind(info) != PUBLIC_CHANNEL:
            self.narrow(channel_id, "is no longer public")
            report.narrowed.append(channel_id)
            public = False
        try:
            channel = reader.readable_channel(channel_id, info)
        except ChannelUnreadable as e:  # e.g. Slack no longer calls it a channel: kept, reported
            report.failed.append((channel_id, e.reason))
            return None
        self._channels[channel_id] = (time.monotonic() + self.channel_ttl_s, channel)
        return public, channel

    # ---- shared

    def _channel(self, channel_id: str) -> Channel:
        now = time.monotonic()
        known = self._channels.get(channel_id)
        if known is not None and known[0] > now:
            return known[1]
        channel = reader.open_channel(self.history.client, channel_id)
        self._channels[channel_id] = (now + self.channel_ttl_s, channel)
        return channel

    def _forget_channel(self, channel_id: str) -> None:
        self._channels.pop(channel_id, None)
        if self.conversations is not None:
            self.conversations.forget(channel_id)

    def _lock(self, channel_id: str) -> threading.Lock:
        """One update of a channel at a time: two events read and written in turn, so an older read
        never overwrites a newer one."""
        with self._locks_guard:
            return self._locks.setdefault(channel_id, threading.Lock())

    def _indexed(self, channel_id: str) -> list[DocumentInfo]:
        prefix = slack_path(channel_id, "")
        return [info for info in self.history.ingestor.store.list_documents() if info.path.startswith(prefix)]

    def _write(self, channel_id: str, docs: list[Document]) -> bool:
        """Write the documents, never wider than the channel's documents already are: a run that
        narrowed them (``ingest-slack`` without ``--public``, another process) may have ended since
        this event read the channel's cursor. Checked and written under the index's write lock.
        False when they were not written (a widening refused, or a document the Ingestor failed)."""
        if not docs:
            return True
        store = self.history.ingestor.store
        try:
            with store.exclusive_writer():
                if any(doc.scope.is_public for doc in docs) and any(
                        not info.scope.is_public for info in self._indexed(channel_id)):
                    docs = [replace(doc, scope=Scope.channels([channel_id])) for doc in docs]
                report = self.history.ingestor.ingest_documents(docs)
        except WideningRefused as e:
            log.warning("%d Slack documents not updated: they would widen (run ingest-slack with --allow-widen)",
                        len(e.widened))
            return False
        return report.ok

    def _remove(self, doc_ids: Iterable[str]) -> int:
        return self.history._remove([list(doc_ids)])


def _ask_for_full_read(record: Callable[[], None]) -> None:
    """Record that a full read is wanted; never raises (the database may be down: the daily full
    read still comes)."""
    try:
        record()
    except Exception:
        log.warning("could not record that a full read of Slack history is wanted", exc_info=True)


def _scope(channel_id: str, cursor: Cursor) -> Scope:
    """The scope the channel was listed with; never wider (the Ingestor refuses a widening)."""
    return Scope.public() if cursor.public else Scope.channels([channel_id])


def _first_ts(info: DocumentInfo) -> str:
    return info.path.rsplit("/", 1)[-1]


def _after(ts: str, seconds: float = 0.0) -> str:
    """The ts ``seconds`` (and one microsecond) after ``ts``, exactly: Slack's ``latest`` excludes itself.

    >>> _after("1700000000.000100"), _after("1700000000.999999", 1800)
    ('1700000000.000101', '1700001801.000000')
    """
    whole, micros = ts_order(ts)
    total = whole * 1_000_000 + micros + round(seconds * 1_000_000) + 1
    return f"{total // 1_000_000}.{total % 1_000_000:06d}"


def _merge(into: SlackIngestReport, report: SlackIngestReport) -> None:
    into.channels += report.channels
    into.failed += report.failed
    into.read_whole += report.read_whole
    into.threads += report.threads
    into.messages += report.messages
    into.seconds += report.seconds
    d, r = into.documents, report.documents
    for name in ("added", "updated", "rescoped", "unchanged", "removed", "chunks_written", "chunks_embedded"):
        setattr(d, name, getattr(d, name) + getattr(r, name))
    d.failed += r.failed


def build_slack_sync(services: Services, client: WebClient, me: Identity, *,
                     conversations: ConversationKinds | None = None) -> SlackSync:
    """The sync with everything it needs, from the composition root's services (the bot and the
    scheduler's job build it alike; ``ingest-slack`` reads with the same options)."""
    settings = services.settings
    return SlackSync(history=build_slack_ingest(services, client, me), keep_archived=settings.slack_keep_archived,
                     full_read_every=timedelta(hours=settings.slack_full_read_hours), conversations=conversations)
