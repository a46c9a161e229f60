"""Where each channel's history was read up to: one row per channel in lorebot's database.

The cursor is the newest ts Slack reported when the channel was last read (a message's ts or a
thread's ``latest_reply``), taken from the history listing itself rather than from replies read
afterwards: a reply posted while a sync runs is then newer than the cursor and read next time,
never skipped. It lives beside the feedback tables (SQLite by default, PostgreSQL for replicas),
so every replica and the scheduler share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Engine, MetaData, String, Table, delete, select, update

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
)


@dataclass(frozen=True)
class Cursor:
    channel_id: str
    newest_ts: str
    synced_at: datetime
    public: bool = False


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
            return connection.execute(delete(slack_sync).where(slack_sync.c.channel_id == channel_id)).rowcount > 0

    def advance(self, channel_id: str, newest_ts: str | None, *, synced_at: datetime | None = None,
                public: bool | None = None) -> Cursor:
        """Record a sync of ``channel_id`` that saw up to ``newest_ts`` (None: nothing new) with the
        scope it was read for (``public``; None keeps what was recorded). The cursor never moves
        back: a ``--since`` re-read of old history keeps the newer one."""
        synced_at = synced_at or datetime.now(UTC)
        with reporting_outages(self.engine), self.engine.begin() as connection:
            row = connection.execute(select(slack_sync.c.newest_ts, slack_sync.c.public)
                                     .where(slack_sync.c.channel_id == channel_id).with_for_update()).first()
            candidates = [ts for ts in (newest_ts, row.newest_ts if row else None) if ts]
            newest = max(candidates, key=ts_order) if candidates else "0"
            public = bool(row.public) if public is None and row is not None else bool(public)
            values = {"newest_ts": newest, "synced_at": synced_at, "public": public}
            insert = dialect_insert(self.engine, slack_sync).values(channel_id=channel_id, **values)
            connection.execute(insert.on_conflict_do_update(index_elements=[slack_sync.c.channel_id], set_=values))
        return Cursor(channel_id, newest, synced_at, public)


def _cursor(row) -> Cursor:
    synced_at = row.synced_at if row.synced_at.tzinfo else row.synced_at.replace(tzinfo=UTC)
    return Cursor(row.channel_id, row.newest_ts, synced_at, bool(row.public))
