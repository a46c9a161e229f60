"""Where each channel's history was read up to: one row per channel in lorebot's database.

The cursor is the newest ts Slack reported when the channel was last read (a message's ts or a
thread's ``latest_reply``), taken from the history listing itself rather than from replies read
afterwards: a reply posted while a sync runs is then newer than the cursor and read next time,
never skipped. It lives beside the feedback tables (SQLite by default, PostgreSQL for replicas),
so every replica and the scheduler share it.

Beside it, each thread's *mark*: a fingerprint of what Slack's history listing shows of the thread
(its parent's text, the number of replies, the latest reply) when it was last read, and when that
was. A full read of a channel's history (:meth:`SyncState.due_full_read`) compares the listing with
the marks and re-reads only the threads whose mark changed (a reply deleted or added, the parent
edited or deleted), plus a few of those checked longest ago: an edited reply changes nothing in the
listing, so only reading the thread again finds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, Column, DateTime, Engine, MetaData, PrimaryKeyConstraint, String, Table, delete, select
from sqlalchemy import func, or_, update

from training.database import create_tables, dialect_insert, reporting_outages

metadata = MetaData()

slack_sync = Table(
    "slack_sync",
    metadata,
    Column("channel_id", String(32), primary_key=True),
    Column("newest_ts", String(32), nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    # Whether the channel was listed with --public (NULL: before this column existed, or not public).
    Column("public", Boolean, nullable=True),
    # When the last read of the channel's whole history began (NULL: never, or before this column
    # existed).
    Column("full_read_at", DateTime(timezone=True), nullable=True),
    # When one of the channel's events could not be applied: a full read that began before then
    # does not answer it (one that was already reading when the event failed may have listed too early).
    Column("full_read_wanted_at", DateTime(timezone=True), nullable=True),
    # When a message event last re-read (and rewrote) messages outside threads, as of its read.
    Column("groups_changed_at", DateTime(timezone=True), nullable=True),
)

# When events may last have been missed by every channel: a bot process began listening (what
# happened before it started, while no process listened, came as events to no one). An event one
# channel could not apply is that channel's own (``slack_sync.full_read_wanted_at``).
slack_listening = Table(
    "slack_listening",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("missed_at", DateTime(timezone=True), nullable=False),
)
_EVENTS = "events"

slack_threads = Table(
    "slack_threads",
    metadata,
    Column("channel_id", String(32), nullable=False),
    Column("thread_ts", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("channel_id", "thread_ts"),
)


@dataclass(frozen=True)
class Cursor:
    channel_id: str
    newest_ts: str
    synced_at: datetime
    public: bool = False
    full_read_at: datetime | None = None
    groups_changed_at: datetime | None = None
    full_read_wanted_at: datetime | None = None


@dataclass(frozen=True)
class ThreadMark:
    fingerprint: str
    checked_at: datetime


def listed_fingerprint(parent: dict, broadcasts: Iterable[dict] = ()) -> str:
    """A thread as the history listing shows it: its parent's text and subtype (a deleted parent
    turns into a tombstone), its reply count and latest reply, and the replies also sent to the
    channel (``broadcasts``: Slack lists them too, so their edits show). Equal to
    :func:`read_fingerprint` of the same thread read with ``conversations.replies``.

    >>> parent = {"ts": "1.0", "text": "Which port?", "reply_count": 2, "latest_reply": "3.0"}
    >>> told = {"ts": "3.0", "text": "6380 now", "subtype": "thread_broadcast", "thread_ts": "1.0"}
    >>> listed_fingerprint(parent, [told]) == read_fingerprint([parent, {"ts": "2.0", "text": "6379"}, told])
    True
    """
    return _fingerprint(parent, int(parent.get("reply_count") or 0), str(parent.get("latest_reply") or ""),
                        broadcasts)


def read_fingerprint(messages: list[dict]) -> str:
    """A thread read with ``conversations.replies`` (parent first), as :func:`listed_fingerprint` sees it."""
    parent, replies = messages[0], messages[1:]
    latest = max((m["ts"] for m in replies), key=ts_order, default="")
    return _fingerprint(parent, len(replies), latest, (m for m in replies if m.get("subtype") == "thread_broadcast"))


def _fingerprint(parent: dict, replies: int, latest: str, broadcasts: Iterable[dict]) -> str:
    told = sorted((str(m.get("ts")), str(m.get("text") or "")) for m in broadcasts)
    seen = [str(parent.get("text") or ""), str(parent.get("subtype") or ""), replies, latest, told]
    return hashlib.sha256(json.dumps(seen).encode()).hexdigest()


def ts_order(ts: str) -> tuple[int, int]:
    """Exact order of Slack timestamps (``float`` would round 16 digits).

    >>> max(["1700000001.000100", "1700000000.900000"], key=ts_order)
    '1700000001.000100'
    """
    seconds, _, micros = ts.partition(".")
    return int(seconds), int((micros + "000000")[:6])


class SyncState:
    """Per-channel sync cursors; creates its table (and any column a later version adds) on first use."""

    def __init__(self, engine: Engine):
        self.engine = engine
        create_tables(engine, metadata)

    def cursor(self, channel_id: str) -> Cursor | None:
        with reporting_outages(self.engine), self.engine.connect() as connection:
            row = connection.execute(select(slack_sync).where(slack_sync.c.channel_id == channel_id)).first()
        return None if row is None else _cursor(row)

    def channels(self) -> list[Cursor]:
        """Every listed channel (one ``ingest-slack`` has read), in channel ID order: the channels
        whose events and scheduled syncs keep their documents current."""
        with reporting_outages(self.engine), self.engine.connect() as connection:
            rows = connection.execute(select(slack_sync).order_by(slack_sync.c.channel_id)).all()
        return [_cursor(row) for row in rows]

    def set_public(self, channel_id: str, public: bool) -> None:
        """Record the scope a channel's documents now have (narrowed when it stopped being public)."""
        with reporting_outages(self.engine), self.engine.begin() as connection:
            connection.execute(update(slack_sync).where(slack_sync.c.channel_id == channel_id).values(public=public))

    def forget(self, channel_id: str) -> bool:
        """The channel is no longer listed (deleted, or archived and its documents removed)."""
        with reporting_outages(self.engine), self.engine.begin() as connection:
            connection.execute(delete(slack_threads).where(slack_threads.c.channel_id == channel_id))
            return connection.execute(delete(slack_sync).where(slack_sync.c.channel_id == channel_id)).rowcount > 0

    def due_full_read(self, cursor: Cursor, every: timedelta, *, now: datetime | None = None) -> bool:
        """Whether the channel's whole history should be read this time: never read whole since
        this was recorded, events may have been missed since the last full read began, or that was
        ``every`` ago or more."""
        if cursor.full_read_at is None:
            return True
        if cursor.full_read_wanted_at is not None and cursor.full_read_wanted_at >= cursor.full_read_at:
            return True
        missed = self.events_missed_at()
        if missed is not None and missed >= cursor.full_read_at:
            return True
        return (now or self.now()) - cursor.full_read_at >= every

    def now(self) -> datetime:
        """The time by the database's clock: the bot and the scheduler may run on hosts whose clocks
        differ, and the times recorded here (reads begun, threads checked, events missed) are
        compared across them. SQLite lives on one host: its clock is this process's."""
        if self.engine.dialect.name != "postgresql":
            return datetime.now(UTC)
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return _utc(connection.execute(select(func.clock_timestamp())).scalar())

    def request_full_read(self, channel_id: str, at: datetime | None = None) -> None:
        """The channel's next catch-up reads its whole history: an event of it could not be applied
        at ``at`` (now). A full read already under way began too early to count."""
        at = at or self.now()
        with reporting_outages(self.engine), self.engine.begin() as connection:
            connection.execute(update(slack_sync).where(
                slack_sync.c.channel_id == channel_id,
                or_(slack_sync.c.full_read_wanted_at.is_(None), slack_sync.c.full_read_wanted_at < at),
            ).values(full_read_wanted_at=at))

    def groups_changed(self, channel_id: str, at: datetime) -> None:
        """An event rewrote messages outside threads, from a read begun ``at``: a run that began
        reading before then does not write its older groups over them."""
        with reporting_outages(self.engine), self.engine.begin() as connection:
            row = connection.execute(select(slack_sync.c.groups_changed_at).where(slack_sync.c.channel_id == channel_id)
                                     .with_for_update()).first()
            if row is None:
                return
            latest = max(at, _utc(row.groups_changed_at)) if row.groups_changed_at else at
            connection.execute(update(slack_sync).where(slack_sync.c.channel_id == channel_id)
                               .values(groups_changed_at=latest))

    def events_missed(self, at: datetime | None = None) -> None:
        """Record that message events may not have reached lorebot before ``at`` (now): a bot
        process starts listening. The next catch-up reads every listed channel whole."""
        at = at or self.now()
        with reporting_outages(self.engine), self.engine.begin() as connection:
            row = connection.execute(select(slack_listening.c.missed_at).where(slack_listening.c.name == _EVENTS)
                                     .with_for_update()).first()
            latest = max(at, _utc(row.missed_at)) if row else at
            insert = dialect_insert(self.engine, slack_listening).values(name=_EVENTS, missed_at=latest)
            connection.execute(insert.on_conflict_do_update(index_elements=[slack_listening.c.name],
                                                            set_={"missed_at": latest}))

    def events_missed_at(self) -> datetime | None:
        with reporting_outages(self.engine), self.engine.connect() as connection:
            value = connection.execute(select(slack_listening.c.missed_at)
                                       .where(slack_listening.c.name == _EVENTS)).scalar()
        return _utc(value)

    def thread_marks(self, channel_id: str) -> dict[str, ThreadMark]:
        """Each marked thread of the channel, by its ts."""
        with reporting_outages(self.engine), self.engine.connect() as connection:
            rows = connection.execute(select(slack_threads).where(slack_threads.c.channel_id == channel_id)).all()
        return {row.thread_ts: ThreadMark(row.fingerprint, _utc(row.checked_at)) for row in rows}

    def mark_threads(self, channel_id: str, fingerprints: Mapping[str, str], *,
                     checked_at: datetime | None = None) -> None:
        """Record the threads just read (ts → :func:`read_fingerprint`)."""
        if not fingerprints:
            return
        checked_at = checked_at or self.now()
        rows = [{"channel_id": channel_id, "thread_ts": ts, "fingerprint": fingerprint, "checked_at": checked_at}
                for ts, fingerprint in fingerprints.items()]
        with reporting_outages(self.engine), self.engine.begin() as connection:
            for batch in _batches(rows):
                insert = dialect_insert(self.engine, slack_threads).values(batch)
                connection.execute(insert.on_conflict_do_update(
                    index_elements=[slack_threads.c.channel_id, slack_threads.c.thread_ts],
                    set_={"fingerprint": insert.excluded.fingerprint, "checked_at": insert.excluded.checked_at}))

    def unmark_threads(self, channel_id: str, thread_ts: Iterable[str]) -> None:
        """Forget threads no longer in the channel's history."""
        stamps = list(thread_ts)
        with reporting_outages(self.engine), self.engine.begin() as connection:
            for batch in _batches(stamps):
                connection.execute(delete(slack_threads).where(
                    slack_threads.c.channel_id == channel_id, slack_threads.c.thread_ts.in_(batch)))

    def advance(self, channel_id: str, newest_ts: str | None, *, synced_at: datetime | None = None,
                public: bool | None = None, full_read_at: datetime | None = None) -> Cursor:
        """Record a sync of ``channel_id`` that saw up to ``newest_ts`` (None: nothing new) with the
        scope it was read for (``public``; None keeps what was recorded); ``full_read_at``: it read
        the whole history, from then (None keeps what was recorded). The cursor never moves back: a
        ``--since`` re-read of old history keeps the newer one."""
        synced_at = synced_at or datetime.now(UTC)
        with reporting_outages(self.engine), self.engine.begin() as connection:
            row = connection.execute(select(slack_sync.c.newest_ts, slack_sync.c.public, slack_sync.c.full_read_at,
                                            slack_sync.c.groups_changed_at, slack_sync.c.full_read_wanted_at)
                                     .where(slack_sync.c.channel_id == channel_id).with_for_update()).first()
            candidates = [ts for ts in (newest_ts, row.newest_ts if row else None) if ts]
            newest = max(candidates, key=ts_order) if candidates else "0"
            public = bool(row.public) if public is None and row is not None else bool(public)
            full_read_at = full_read_at or (_utc(row.full_read_at) if row else None)
            values = {"newest_ts": newest, "synced_at": synced_at, "public": public, "full_read_at": full_read_at}
            insert = dialect_insert(self.engine, slack_sync).values(channel_id=channel_id, **values)
            connection.execute(insert.on_conflict_do_update(index_elements=[slack_sync.c.channel_id], set_=values))
        return Cursor(channel_id, newest, synced_at, public, full_read_at, _utc(row.groups_changed_at) if row else None,
                      _utc(row.full_read_wanted_at) if row else None)


def _cursor(row) -> Cursor:
    return Cursor(row.channel_id, row.newest_ts, _utc(row.synced_at), bool(row.public), _utc(row.full_read_at),
                  _utc(row.groups_changed_at), _utc(row.full_read_wanted_at))


def _batches(items: list, size: int = 500) -> Iterable[list]:
    """Slices of ``items``: a statement's parameters stay well under SQLite's limit."""
    return (items[start:start + size] for start in range(0, len(items), size))


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes of what was written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
