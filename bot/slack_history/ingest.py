"""``lorebot ingest-slack``: read listed channels and write their threads and conversations to the index.

What a sync reads, per channel:

- With ``--since``: history from that date, every thread (an edited message is re-read and
  replaces its old text).
- First time (no cursor): the whole history, every thread; an indexed document of the channel
  that the whole history no longer yields is removed.
- Later: history from the cursor less a look-back (``LOREBOT_SLACK_LOOKBACK_DAYS``). A thread's
  parent carries ``latest_reply``, so a thread is re-read only when it is new or got a reply after
  the cursor: an old thread's new reply is caught without re-reading every thread, at the price of
  one history page or so for the look-back. Threads older than the look-back that get a reply wait
  for the message events (or a ``--since`` run). Messages outside threads in the look-back are all
  rebuilt, which costs no Slack calls, and an unchanged group is "unchanged" at ingest. The
  scheduled catch-up reads the same span but picks threads by their marks (below).
- When the requested scope differs from the one the channel's documents have (``--public`` added
  or dropped), the whole history again, as the first time, so every document moves to the new
  scope, not only the ones a sync happens to touch.
- A full read (the scheduled catch-up, once per ``LOREBOT_SLACK_FULL_READ_HOURS``): the whole
  history listing again, one call per page, which finds what changed before the look-back while
  the bot was not listening. Messages outside threads are all rebuilt (a deleted or edited one is
  gone or replaced); a thread is re-read when its mark (``sync_state``) differs from what the listing
  shows (a reply deleted or added, the parent edited or deleted), or when it is among the
  ``LOREBOT_SLACK_RECHECK_THREADS`` checked longest ago (an edited reply shows nowhere else).

All channels are read before anything is written, so a refused widening (``WideningRefused``,
from the Ingestor) leaves the index as it was; a channel that could not be read is reported with
its reason and the others are still ingested. A channel's cursor advances only when all of its
documents were written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack_history import reader
from bot.slack_history.documents import (
    DocumentOptions,
    group_documents,
    is_knowledge,
    slack_doc_id,
    slack_path,
    thread_document,
    ts_seconds,
)
from bot.slack_history.reader import Channel, ChannelUnreadable, Identity
from bot.slack_history.sync_state import Cursor, SyncState, ThreadMark, listed_fingerprint, read_fingerprint, ts_order
from knowledge.access import Scope
from knowledge.ingest import Ingestor, IngestReport
from knowledge.types import Document, DocumentInfo
from training.feedback import PRIVATE_CHANNEL, SHARED_CHANNEL

if TYPE_CHECKING:
    from bot.app import Services


@dataclass(frozen=True)
class SyncOptions:
    documents: DocumentOptions
    lookback_s: float = 14 * 86_400
    page_size: int = reader.DEFAULT_PAGE_SIZE
    # The scheduled catch-up (``SlackSync.catch_up``): a thread in the look-back is re-read when its
    # listing differs from its mark (a new, deleted or edited parent or reply count; while the bot
    # listens, events keep the rest current), and a full read re-reads every thread in the
    # look-back, since an edited reply changes nothing in the listing. ``ingest-slack`` re-reads
    # the threads with a reply after the cursor.
    catch_up: bool = False
    # Read a channel's whole history when its last full read is this old (None: never, but for a
    # first read or a change of scope); the scheduled catch-up sets it.
    full_read_every: timedelta | None = None
    # Threads whose listing did not change, re-read anyway at each full read, longest unchecked first.
    recheck_per_full_read: int = 100


@dataclass
class SlackIngestReport:
    """What ``ingest-slack`` did: channels read or not (with why), Slack messages read, and the
    index's side (``documents``, as ``lorebot ingest`` reports it)."""

    channels: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    read_whole: list[str] = field(default_factory=list)  # channels whose whole history was read
    threads: int = 0
    messages: int = 0
    documents: IngestReport = field(default_factory=IngestReport)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and self.documents.ok

    def summary(self) -> str:
        d = self.documents
        failed = f", {len(self.failed)} not read" if self.failed else ""
        return (f"{len(self.channels)} channels read{failed}; {self.threads} threads, {self.messages} messages; "
                f"documents: {d.added} added, {d.updated} updated, {d.unchanged} unchanged, {d.removed} removed"
                f"{f', {len(d.failed)} failed' if d.failed else ''} in {self.seconds:.1f}s")

    def as_dict(self) -> dict:
        d = self.documents.as_dict()
        return {"channels": self.channels, "failed": [{"channel": c, "reason": r} for c, r in self.failed],
                "threads": self.threads, "messages": self.messages,
                **{k: d[k] for k in ("added", "updated", "rescoped", "unchanged", "removed", "chunks_written",
                                     "chunks_embedded")},
                "documents_failed": d["failed"], "seconds": round(self.seconds, 3)}


@dataclass
class _ChannelRead:
    channel: Channel
    public: bool = False
    documents: list[Document] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # doc_ids of threads with nothing left to index
    newest_ts: str | None = None
    threads: int = 0
    messages: int = 0
    start: str | None = None  # history was read from here (None: all of it)
    parents: set[str] = field(default_factory=set)  # the ts of every thread parent in the history read
    listed_public: bool | None = None  # the channel's cursor said public when the read began (None: not listed)
    began: datetime | None = None  # when reading the channel began, by the database's clock (set by _read)
    whole_from: datetime | None = None  # the whole history was read, beginning then
    marks: dict[str, str] = field(default_factory=dict)  # each thread read: its read_fingerprint
    unmark: list[str] = field(default_factory=list)  # marked threads no longer in the history


@dataclass
class SlackIngest:
    """Everything one run needs: Slack, the index, the cursors, and how to read."""

    client: WebClient
    me: Identity
    ingestor: Ingestor
    sync_state: SyncState
    options: SyncOptions

    def run(self, channel_ids: list[str], *, since: datetime | None = None, public: bool = False,
            allow_widen: bool = False, progress: Callable[[int, int], None] | None = None,
            channels: Mapping[str, Channel] | None = None) -> SlackIngestReport:
        """Read each channel and ingest what changed. Raises ``WideningRefused`` before any write
        when a document would become visible to more conversations, unless ``allow_widen``.
        ``channels``: what ``conversations.info`` just said of them (else it is asked here)."""
        started = time.perf_counter()
        report = SlackIngestReport()
        indexed = self._indexed_by_channel()
        reads: list[_ChannelRead] = []
        for done, channel_id in enumerate(channel_ids, start=1):
            try:
                reads.append(self._read(channel_id, since=since, public=public, indexed=indexed.get(channel_id, []),
                                        channel=(channels or {}).get(channel_id)))
            except ChannelUnreadable as e:
                report.failed.append((channel_id, e.reason))
            except SlackApiError as e:  # e.g. the channel deleted mid-read, or rate limited past every retry
                report.failed.append((channel_id, reader.refusal(e)))
            except (SlackClientError, OSError) as e:  # the connection, after slack_sdk's own retries
                report.failed.append((channel_id, f"could not reach Slack: {type(e).__name__}"))
            if progress:
                progress(done, len(channel_ids))
        # Under the index's write lock, as a narrowing (SlackSync.narrow) is: checked, written and the
        # cursors moved on as the channels are now, not as they were when the read began.
        with self.ingestor.store.exclusive_writer():
            reads = self._changed_meanwhile(reads, report)
            documents = [doc for read in reads for doc in read.documents]
            self.ingestor.ingest_documents(documents, report=report.documents, allow_widen=allow_widen)
            report.documents.removed += self._remove(read.gone for read in reads)
            self._advance(reads, report)
        report.seconds = time.perf_counter() - started
        return report

    def _read(self, channel_id: str, *, since: datetime | None, public: bool, indexed: list[DocumentInfo],
              channel: Channel | None = None) -> _ChannelRead:
        began = self.sync_state.now()  # a change after this may be missed by what is read below
        cursor = self.sync_state.cursor(channel_id)
        channel = channel or reader.open_channel(self.client, channel_id)
        if public and not channel.is_public:
            raise ChannelUnreadable(channel_id, _public_refusal(channel))
        scope = Scope.public() if public else Scope.channels([channel_id])
        rescoping = any(info.scope != scope for info in indexed)
        if since is not None and not rescoping:
            read = self._read_from(channel, scope=scope, start=f"{since.timestamp():.6f}", changed_after=None)
        elif cursor is None or rescoping or self._full_read_due(cursor):
            marks = self.sync_state.thread_marks(channel_id)
            # A first read or a change of scope reads every thread; a scheduled full read, only
            # those the listing shows changed, those a catch-up would re-read (in the look-back),
            # and the ones checked longest ago.
            recent = f"{self._lookback_start(cursor):.6f}" if cursor and self.options.catch_up else None
            read = self._read_from(channel, scope=scope, start=None, changed_after=None,
                                   marks=None if cursor is None or rescoping else marks, recent_from=recent)
            read.whole_from = began
            read.unmark = sorted(set(marks) - read.parents)
        elif self.options.catch_up:
            read = self._read_from(channel, scope=scope, start=f"{self._lookback_start(cursor):.6f}",
                                   changed_after=None, marks=self.sync_state.thread_marks(channel_id), recheck=0)
        else:
            read = self._read_from(channel, scope=scope, start=f"{self._lookback_start(cursor):.6f}",
                                   changed_after=cursor.newest_ts)
        read.began = began
        read.public = public
        read.listed_public = None if cursor is None else cursor.public
        read.gone += _vanished(read, indexed)
        return read

    def _lookback_start(self, cursor: Cursor) -> float:
        return max(0.0, ts_seconds(cursor.newest_ts) - self.options.lookback_s)

    def _full_read_due(self, cursor: Cursor) -> bool:
        every = self.options.full_read_every
        return every is not None and self.sync_state.due_full_read(cursor, every)

    def _changed_meanwhile(self, reads: list[_ChannelRead], report: SlackIngestReport) -> list[_ChannelRead]:
        """The reads still to write, as the channels are now: a channel archived or deleted while it
        was read (no longer listed) is dropped, and one made private meanwhile (its cursor narrowed
        by the channel event) is written for the channel alone, leaving out what events rewrote
        meanwhile (:meth:`_drop_superseded`). A read takes many Tier 3 calls: minutes in which the
        bot may have narrowed the channel or applied its events. (A channel read for the first time
        has no events applied: they wait for it to be listed.)"""
        kept = []
        for read in reads:
            if read.listed_public is None:
                kept.append(read)
                continue
            now = self.sync_state.cursor(read.channel.id)
            if now is None:
                report.failed.append((read.channel.id, "archived, deleted or left while it was read: not written"))
                continue
            if read.public and read.listed_public and not now.public:
                scope = Scope.channels([read.channel.id])
                read.documents = [replace(doc, scope=scope) for doc in read.documents]
                read.public = False
            self._drop_superseded(read, now)
            kept.append(read)
        return kept

    def _drop_superseded(self, read: _ChannelRead, cursor: Cursor) -> None:
        """Leave out what a message event re-read after this read began: what the event wrote is at
        least as fresh (a change after its read has an event of its own), and a run reads for
        minutes, so its older copy must not overwrite it. Threads are told apart by their marks;
        for messages outside threads the channel has one stamp, so on a conflict none of this
        read's groups are written or removed, and a full read stays due (it is done again next time)."""
        channel_id = read.channel.id
        marks = self.sync_state.thread_marks(channel_id) if read.marks else {}
        newer = {ts for ts in read.marks if ts in marks and marks[ts].checked_at > read.began}
        superseded = {slack_doc_id(channel_id, ts) for ts in newer}
        for ts in newer:
            del read.marks[ts]
        if cursor.groups_changed_at is not None and cursor.groups_changed_at > read.began:
            threads = {slack_doc_id(channel_id, ts) for ts in read.parents}
            superseded |= {doc.doc_id for doc in read.documents if doc.doc_id not in threads}
            superseded |= {doc_id for doc_id in read.gone if doc_id not in threads}
            read.whole_from = None
        read.documents = [doc for doc in read.documents if doc.doc_id not in superseded]
        read.gone = [doc_id for doc_id in read.gone if doc_id not in superseded]

    def _read_from(self, channel: Channel, *, scope: Scope, start: str | None, changed_after: str | None,
                   marks: dict[str, ThreadMark] | None = None, recent_from: str | None = None,
                   recheck: int | None = None) -> _ChannelRead:
        """Read history from ``start`` (None: all of it) and the threads to re-read: those with a
        reply after ``changed_after`` (None: all), or, given the channel's thread ``marks``, the ones
        :func:`_threads_to_reread` picks (every one begun at ``recent_from`` or later, and ``recheck``
        others, by default ``recheck_per_full_read``)."""
        read = _ChannelRead(channel, start=start)
        top = list(reader.history(self.client, channel.id, oldest=start, page_size=self.options.page_size))
        parents = [m for m in top if _is_thread_parent(m)]
        read.parents = {m["ts"] for m in parents}
        read.messages += len(top)
        read.newest_ts = max((ts for m in top for ts in (m["ts"], m.get("latest_reply")) if ts),
                             key=ts_order, default=None)
        if marks is not None:
            recheck = self.options.recheck_per_full_read if recheck is None else recheck
            broadcasts: dict[str, list[dict]] = {}
            for message in top:  # replies also sent to the channel, listed on their own
                if message.get("thread_ts") not in (None, "", message["ts"]):
                    broadcasts.setdefault(message["thread_ts"], []).append(message)
            parents = _threads_to_reread(parents, marks, recheck=recheck, recent_from=recent_from,
                                         broadcasts=broadcasts)
        elif changed_after is not None:  # neither new nor replied to since the last sync: not re-read
            parents = [m for m in parents if ts_order(m.get("latest_reply") or m["ts"]) > ts_order(changed_after)]
        for parent in parents:
            messages = reader.thread(self.client, channel.id, parent["ts"], page_size=self.options.page_size)
            if messages:
                read.marks[parent["ts"]] = read_fingerprint(messages)
            read.threads += 1
            read.messages += max(0, len(messages) - 1)  # the parent was counted with the history
            doc = thread_document(channel, messages, me=self.me, scope=scope, options=self.options.documents)
            if doc is None:
                read.gone.append(slack_doc_id(channel.id, parent["ts"]))
            else:
                read.documents.append(doc)
        standalone = [m for m in top if _is_standalone(m)]
        standalone += self._earlier_neighbours(channel, standalone, start)
        read.documents += group_documents(channel, standalone, me=self.me, scope=scope, options=self.options.documents)
        return read

    def _earlier_neighbours(self, channel: Channel, standalone: list[dict], start: str | None) -> list[dict]:
        """Messages before ``start`` in the same conversation as the first one read: without them a
        group that began before ``start`` would be cut short and indexed again under a new first ts."""
        kept = sorted((m for m in standalone if is_knowledge(m, self.me)), key=lambda m: ts_order(m["ts"]))
        window = self.options.documents.window_s
        if start is None or not kept or ts_seconds(kept[0]["ts"]) - ts_seconds(start) > window:
            return []
        earlier, boundary = [], ts_seconds(kept[0]["ts"])
        for message in reader.history(self.client, channel.id, latest=kept[0]["ts"], page_size=self.options.page_size):
            if not (_is_standalone(message) and is_knowledge(message, self.me)):
                continue
            if boundary - ts_seconds(message["ts"]) > window:
                break
            earlier.append(message)
            boundary = ts_seconds(message["ts"])
        return earlier

    def _indexed_by_channel(self) -> dict[str, list[DocumentInfo]]:
        indexed: dict[str, list[DocumentInfo]] = {}
        for info in self.ingestor.store.list_documents():
            if info.path.startswith("slack://"):
                indexed.setdefault(info.path.split("/")[2], []).append(info)
        return indexed

    def _remove(self, gone_lists) -> int:
        """Delete the documents of threads that no longer hold anything to index (a deleted parent
        and no human reply left, say); the rest of a deletion is the message events' work."""
        gone = {doc_id for gone in gone_lists for doc_id in gone}
        if not gone:
            return 0
        store = self.ingestor.store
        with store.exclusive_writer():
            present = {info.doc_id for info in store.list_documents()} & gone
            for doc_id in present:
                store.delete_document(doc_id)
        return len(present)

    def _advance(self, reads: list[_ChannelRead], report: SlackIngestReport) -> None:
        failed_paths = [path for path, _ in report.documents.failed]
        for read in reads:
            prefix = slack_path(read.channel.id, "")
            report.threads += read.threads
            report.messages += read.messages
            if any(path.startswith(prefix) for path in failed_paths):
                report.failed.append((read.channel.id, "some documents could not be written: the next sync reads them again"))
                continue
            self.sync_state.advance(read.channel.id, read.newest_ts, synced_at=datetime.now(UTC), public=read.public,
                                    full_read_at=read.whole_from)
            # As of when they were read, as an event marks them: runs and events compare like for like.
            self.sync_state.mark_threads(read.channel.id, read.marks, checked_at=read.began)
            self.sync_state.unmark_threads(read.channel.id, read.unmark)
            report.channels.append(read.channel.id)
            if read.whole_from:
                report.read_whole.append(read.channel.id)


def _threads_to_reread(parents: list[dict], marks: dict[str, ThreadMark], *, recheck: int,
                       recent_from: str | None = None, broadcasts: dict[str, list[dict]] | None = None) -> list[dict]:
    """The threads a full read re-reads: each one the listing shows differently from its mark (or
    never marked) or begun at ``recent_from`` or later, then the ``recheck`` others checked longest ago.

    >>> from datetime import datetime, UTC
    >>> a, b, c = ({"ts": ts, "text": ts, "reply_count": 1, "latest_reply": "9.0"} for ts in ("1.0", "2.0", "3.0"))
    >>> marks = {p["ts"]: ThreadMark(listed_fingerprint(p), datetime(2026, 1, day, tzinfo=UTC))
    ...          for p, day in ((a, 2), (b, 1))}
    >>> [p["ts"] for p in _threads_to_reread([a, b, c], marks, recheck=1)]  # c: never marked; b: oldest check
    ['3.0', '2.0']
    """
    changed, unchanged = [], []
    for parent in parents:
        mark = marks.get(parent["ts"])
        recent = recent_from is not None and ts_order(parent["ts"]) >= ts_order(recent_from)
        listed = listed_fingerprint(parent, (broadcasts or {}).get(parent["ts"], ()))
        same = mark is not None and mark.fingerprint == listed
        (unchanged if same and not recent else changed).append(parent)
    unchanged.sort(key=lambda parent: marks[parent["ts"]].checked_at)
    return changed + unchanged[:max(0, recheck)]


def _vanished(read: _ChannelRead, indexed: list[DocumentInfo]) -> list[str]:
    """Indexed documents of the channel that begin where history was read (all of it, or from the
    look-back's start) and that the read did not rebuild: their messages are gone from Slack (a
    deleted message that began a group, a deleted parent without replies). A thread not re-read
    keeps its document: its parent was in the listing."""
    emitted = {doc.doc_id for doc in read.documents}
    start = ts_order(read.start) if read.start else (0, 0)
    gone = []
    for info in indexed:
        first_ts = info.path.rsplit("/", 1)[-1]
        if info.doc_id in emitted or first_ts in read.parents:
            continue
        if ts_order(first_ts) >= start:
            gone.append(info.doc_id)
    return gone


def _is_thread_parent(message: dict) -> bool:
    return bool(message.get("reply_count")) or (message.get("thread_ts") == message["ts"])


def _is_standalone(message: dict) -> bool:
    """Outside any thread: not a parent, and not a reply also sent to the channel (it belongs to its thread)."""
    return not _is_thread_parent(message) and message.get("thread_ts") in (None, "")


def _public_refusal(channel: Channel) -> str:
    if channel.kind == SHARED_CHANNEL:
        what = "it is shared with another organization (Slack Connect)"
    elif channel.kind == PRIVATE_CHANNEL:
        what = "it is a private channel"
    else:
        what = "Slack did not say it is public"
    return f"--public refused: {what}; only a public channel of this workspace may be indexed for everyone"


def build_slack_ingest(services: Services, client: WebClient, me: Identity) -> SlackIngest:
    """The history reader on the composition root's services, with the settings' options
    (``ingest-slack``, the bot's events and the scheduler's catch-up read alike)."""
    settings = services.settings
    options = SyncOptions(
        documents=DocumentOptions(chunking=services.chunking, window_s=settings.slack_window_minutes * 60),
        lookback_s=settings.slack_lookback_days * 86_400, page_size=settings.slack_page_size,
        recheck_per_full_read=settings.slack_recheck_threads)
    return SlackIngest(client=client, me=me, ingestor=services.ingestor, sync_state=SyncState(services.database),
                       options=options)
