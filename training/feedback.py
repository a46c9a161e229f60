"""The feedback store: every answer the bot gave, the Slack messages that show it, and the votes on it.

Votes follow three rules: one vote per person per answer, the latest one wins (by Slack's event time,
since events arrive late, twice or out of order), and taking back a reaction removes only the vote
it made. The training pipeline later reads the answers people voted up, with the passages' full text
and scope, so both are stored as they were shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from itertools import groupby
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    distinct,
    func,
    null,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError

from training.database import create_tables, dialect_insert, reporting_outages

UP, DOWN = 1, -1
VOTE_CHANNELS = ("reaction", "button")

# Where a question was asked, as Slack describes the conversation (``conversations.info``): a
# public channel of this workspace alone, a private channel, a DM, a group DM, or a channel shared
# with people outside the workspace (Slack Connect, or across an organization's workspaces).
# None: not known (an answer recorded before lorebot looked, or the lookup failed).
PUBLIC_CHANNEL, PRIVATE_CHANNEL, DIRECT_MESSAGE, GROUP_MESSAGE, SHARED_CHANNEL = (
    "public", "private", "im", "mpim", "shared")
CONVERSATION_KINDS = (PUBLIC_CHANNEL, PRIVATE_CHANNEL, DIRECT_MESSAGE, GROUP_MESSAGE, SHARED_CHANNEL)


def new_interaction_id() -> str:
    """A fresh, unique interaction ID (32 hex digits)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class UsedPassage:
    """A passage as it was shown to the generator for one answer, and how the answer cited it."""

    doc_id: str
    chunk_id: str
    title: str
    source: str
    text: str
    scope: tuple[str, ...]
    score: float
    cited_as: int | None = None  # the [n] the answer cites it as; None if it went uncited
    quote: str | None = None  # the snippet shown under the answer for that citation

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsedPassage:
        """A passage from its stored JSON; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{key: value for key, value in data.items() if key in known}, "scope": tuple(data["scope"])})


@dataclass(frozen=True)
class Interaction:
    """One question the bot answered (or said it could not), with what it used to answer."""

    interaction_id: str
    channel_id: str
    user_id: str
    surface: str
    asked: str
    question: str
    answer: str
    found: bool
    generator: str
    passages: tuple[UsedPassage, ...] = ()
    adapter: str | None = None
    team_id: str | None = None
    thread_ts: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    conversation_kind: str | None = None  # one of CONVERSATION_KINDS, None when not known

    def as_json(self) -> dict[str, Any]:
        """Every field, JSON-ready: passages as dicts with ``scope`` a list, ``created_at`` ISO 8601."""
        data = asdict(self)
        data["passages"] = [{**p, "scope": list(p["scope"])} for p in data["passages"]]
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class FeedbackStats:
    """Totals for ``lorebot feedback stats``."""

    interactions: int
    upvotes: int
    downvotes: int
    voters: int

    def as_json(self) -> dict[str, int]:
        """The totals as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TalliedInteraction:
    """An interaction's vote totals (each person's latest vote; retracted votes gone), with the
    interaction itself when the reader asked for it."""

    interaction_id: str
    created_at: datetime
    upvotes: int
    downvotes: int
    interaction: Interaction | None = None

    @property
    def net_votes(self) -> int:
        """Upvotes minus downvotes."""
        return self.upvotes - self.downvotes


@dataclass(frozen=True)
class LinkedMessage:
    """A Slack message that shows an answer."""

    channel_id: str
    ts: str
    interaction_id: str


@dataclass(frozen=True)
class Vote:
    """One person's current vote on an answer: UP or DOWN, how it came, and its Slack event time."""

    user_id: str
    value: int
    via: str
    at: float


metadata = MetaData()

interactions = Table(
    "interactions",
    metadata,
    Column("interaction_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("team_id", String(64)),
    Column("channel_id", String(64), nullable=False),
    Column("thread_ts", String(32)),
    Column("user_id", String(64), nullable=False),
    Column("surface", String(16), nullable=False),
    Column("asked", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("found", Boolean, nullable=False),
    Column("generator", String(64), nullable=False),
    Column("adapter", String(200)),
    Column("passages", JSON, nullable=False),
    Column("timings_ms", JSON, nullable=False),
    # Added after the first release: create_tables adds it to older databases, whose rows read None.
    Column("conversation_kind", String(16)),
    # Follow-ups ask "has the bot answered in this thread?" on every message in a thread.
    Index("ix_interactions_thread", "channel_id", "thread_ts"),
)

messages = Table(
    "interaction_messages",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("ts", String(32), primary_key=True),
    Column("interaction_id", ForeignKey("interactions.interaction_id"), nullable=False),
)

votes = Table(
    "votes",
    metadata,
    # The composite key is the "one vote per person per answer" rule, enforced by the database.
    Column("interaction_id", ForeignKey("interactions.interaction_id"), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("value", SmallInteger, nullable=False),
    Column("via", String(16), nullable=False),
    Column("at", Double, nullable=False),
)


class FeedbackStore:
    """Interactions, the messages that show them, and votes, in SQLite or PostgreSQL.

    Safe to share between threads, and between replicas pointed at the same database.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        create_tables(engine, metadata)

    def record_interaction(self, interaction: Interaction) -> None:
        """Store an answer. Recording the same ``interaction_id`` again changes nothing."""
        row = {**interaction.as_json(), "created_at": _utc(interaction.created_at)}
        statement = dialect_insert(self.engine, interactions).values(**row)
        with reporting_outages(self.engine), self.engine.begin() as connection:
            connection.execute(statement.on_conflict_do_nothing(index_elements=["interaction_id"]))

    def get_interaction(self, interaction_id: str) -> Interaction | None:
        """The stored interaction, or None if there is none with that ID."""
        query = select(interactions).where(interactions.c.interaction_id == interaction_id)
        with reporting_outages(self.engine), self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _interaction_from_row(row)

    def link_message(self, interaction_id: str, *, channel_id: str, ts: str) -> None:
        """Remember that the Slack message ``channel_id``/``ts`` shows this answer.

        Linking again is harmless; a message re-linked to another answer now points to that one.
        Raises ValueError for an interaction that was never recorded.
        """
        statement = dialect_insert(self.engine, messages).values(
            channel_id=channel_id, ts=ts, interaction_id=interaction_id
        )
        statement = statement.on_conflict_do_update(
            index_elements=["channel_id", "ts"],
            set_={"interaction_id": statement.excluded.interaction_id},
        )
        try:
            with reporting_outages(self.engine), self.engine.begin() as connection:
                connection.execute(statement)
        except IntegrityError as e:
            raise ValueError(f"no interaction {interaction_id!r} to link a message to") from e

    def interaction_for_message(self, channel_id: str, ts: str) -> str | None:
        """The interaction a Slack message shows (for a reaction on it), or None."""
        query = select(messages.c.interaction_id).where(
            messages.c.channel_id == channel_id, messages.c.ts == ts
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def has_answered_in_thread(self, channel_id: str, thread_ts: str) -> bool:
        """Whether the bot has answered anything in this thread."""
        query = (
            select(interactions.c.interaction_id)
            .where(interactions.c.channel_id == channel_id, interactions.c.thread_ts == thread_ts)
            .limit(1)
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def cast_vote(self, interaction_id: str, *, user_id: str, value: int, via: str, at: float,
                  replacing: tuple[str, ...] = VOTE_CHANNELS) -> bool:
        """Record ``user_id``'s vote (UP or DOWN) on an answer, replacing their earlier one.

        ``at`` is the Slack event time: a vote older than the one stored is ignored, so a late or
        retried event cannot undo a newer choice. ``replacing`` limits which stored votes it may
        replace, by how they came (reconciling reactions never overwrites a button click). Returns
        whether the vote was stored (False for a stale vote, one it may not replace, or an unknown
        interaction). Raises ValueError for a bad ``value`` or ``via``.
        """
        _check_vote(value, user_id)
        if via not in VOTE_CHANNELS:
            raise ValueError(f"a vote comes via one of {VOTE_CHANNELS}, not {via!r}")
        statement = dialect_insert(self.engine, votes).values(
            interaction_id=interaction_id, user_id=user_id, value=value, via=via, at=at
        )
        statement = statement.on_conflict_do_update(
            index_elements=["interaction_id", "user_id"],
            set_={column: statement.excluded[column] for column in ("value", "via", "at")},
            where=and_(votes.c.at <= statement.excluded.at, votes.c.via.in_(replacing)),
        )
        try:
            with reporting_outages(self.engine), self.engine.begin() as connection:
                # An INSERT's row count is kept only on request; 0 means the stored vote is newer.
                result = connection.execute(statement, execution_options={"preserve_rowcount": True})
                return result.rowcount > 0
        except IntegrityError:
            # The only constraint left to break is the foreign key: a vote on an answer we never
            # recorded (another bot's message, or one from before the store existed).
            return False

    def retract_vote(self, interaction_id: str, *, user_id: str, value: int, at: float,
                     via: str | None = None) -> bool:
        """Take back ``user_id``'s vote of ``value`` (a removed reaction), unless it has since changed.

        A 👍 removed after a later 👎 button click leaves the 👎 alone. With ``via``, only a vote
        that came that way is taken back. Returns whether a vote was removed.
        """
        _check_vote(value, user_id)
        statement = delete(votes).where(
            votes.c.interaction_id == interaction_id,
            votes.c.user_id == user_id,
            votes.c.value == value,
            votes.c.at <= at,
            *([votes.c.via == via] if via is not None else []),
        )
        with reporting_outages(self.engine), self.engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def linked_messages(self, *, since: datetime) -> list[LinkedMessage]:
        """The Slack messages showing answers given at or after ``since``, oldest answer first."""
        query = (
            select(messages.c.channel_id, messages.c.ts, messages.c.interaction_id)
            .join(interactions, interactions.c.interaction_id == messages.c.interaction_id)
            .where(interactions.c.created_at >= _utc(since))
            .order_by(interactions.c.created_at, messages.c.interaction_id, messages.c.ts)
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return [LinkedMessage(*row) for row in connection.execute(query)]

    def votes_on(self, interaction_id: str) -> dict[str, Vote]:
        """Each person's current vote on an answer, by user ID."""
        query = select(votes.c.user_id, votes.c.value, votes.c.via, votes.c.at).where(
            votes.c.interaction_id == interaction_id
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return {row.user_id: Vote(*row) for row in connection.execute(query)}

    def stats(self) -> FeedbackStats:
        """How many answers were recorded, the votes on them, and how many people voted."""
        count_votes = select(
            func.count().filter(votes.c.value == UP),
            func.count().filter(votes.c.value == DOWN),
            func.count(distinct(votes.c.user_id)),
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            answered = connection.execute(select(func.count()).select_from(interactions)).scalar_one()
            upvotes, downvotes, voters = connection.execute(count_votes).one()
        return FeedbackStats(interactions=answered, upvotes=upvotes, downvotes=downvotes, voters=voters)

    def export(self) -> Iterator[dict[str, Any]]:
        """Every interaction, oldest first, as a JSON-ready dict with its ``votes``
        (``user_id``, ``value``, ``via``, ``at``)."""
        query = (
            select(
                interactions,
                votes.c.user_id.label("vote_user_id"),
                votes.c.value.label("vote_value"),
                votes.c.via.label("vote_via"),
                votes.c.at.label("vote_at"),
            )
            .outerjoin(votes, votes.c.interaction_id == interactions.c.interaction_id)
            .order_by(interactions.c.created_at, interactions.c.interaction_id, votes.c.at)
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            rows = connection.execute(query).mappings()
            for _, group in groupby(rows, key=lambda row: row["interaction_id"]):
                joined = list(group)
                record = _interaction_from_row(joined[0]).as_json()
                record["votes"] = [_vote_from_row(row) for row in joined if row["vote_user_id"] is not None]
                yield record

    def tallied_interactions(
        self, *, since: datetime | None = None, min_upvotes: int | None = None, min_net_votes: int | None = None,
        batch_size: int = 500,
    ) -> Iterator[TalliedInteraction]:
        """Every interaction, oldest first, with its vote totals: one grouped query, streamed in batches.

        One query, so the totals add up even while people vote; streamed, so a large store never
        sits in memory at once. Only interactions created at/after ``since`` with at least
        ``min_upvotes`` upvotes and a net (up − down) of at least ``min_net_votes`` come with the full
        :class:`Interaction`; the others bring their totals alone (``interaction`` is None), and
        their text and passages are never read (each condition left as None is no condition).
        """
        up, down = func.coalesce(_tallies.c.up, 0), func.coalesce(_tallies.c.down, 0)
        conditions = []
        if since is not None:
            conditions.append(interactions.c.created_at >= _utc(since))
        if min_upvotes is not None:
            conditions.append(up >= min_upvotes)
        if min_net_votes is not None:
            conditions.append(up - down >= min_net_votes)
        wanted = and_(true(), *conditions)
        light = ("interaction_id", "created_at", "channel_id", "user_id", "surface", "found", "generator")
        query = (
            select(
                *(interactions.c[name] for name in light),
                *(case((wanted, column), else_=null()).label(column.name)
                  for column in interactions.columns if column.name not in light),
                up.label("upvotes"),
                down.label("downvotes"),
                case((wanted, 1), else_=0).label("wanted"),
            )
            .outerjoin(_tallies, _tallies.c.interaction_id == interactions.c.interaction_id)
            .order_by(interactions.c.created_at, interactions.c.interaction_id)
        )
        with reporting_outages(self.engine), self.engine.connect() as connection:
            if self.engine.dialect.name == "postgresql":
                # Through a cursor PostgreSQL plans for the first rows, and may then rescan the vote
                # totals once per interaction; every row is read, so plan for all of them.
                connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            for row in connection.execution_options(yield_per=batch_size).execute(query).mappings():
                yield TalliedInteraction(
                    interaction_id=row["interaction_id"],
                    created_at=_utc(row["created_at"]),
                    upvotes=int(row["upvotes"]),
                    downvotes=int(row["downvotes"]),
                    interaction=_interaction_from_row(row) if row["wanted"] else None,
                )


# Each person's vote counts once (the table's key), so counting rows is counting people.
_tallies = (
    select(
        votes.c.interaction_id,
        func.count().filter(votes.c.value == UP).label("up"),
        func.count().filter(votes.c.value == DOWN).label("down"),
    )
    .group_by(votes.c.interaction_id)
    .subquery("tallies")
)


def _check_vote(value: int, user_id: str) -> None:
    if value not in (UP, DOWN):
        raise ValueError(f"a vote is UP ({UP}) or DOWN ({DOWN}), not {value!r}")
    if not user_id:
        raise ValueError("a vote needs the ID of the person who cast it")


def _vote_from_row(row: Any) -> dict[str, Any]:
    return {name: row[f"vote_{name}"] for name in ("user_id", "value", "via", "at")}


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no time zone: store UTC everywhere, and read a naive value back as UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _interaction_from_row(row: Any) -> Interaction:
    return Interaction(
        interaction_id=row["interaction_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        surface=row["surface"],
        asked=row["asked"],
        question=row["question"],
        answer=row["answer"],
        found=bool(row["found"]),
        generator=row["generator"],
        passages=tuple(UsedPassage.from_json(p) for p in row["passages"]),
        adapter=row["adapter"],
        team_id=row["team_id"],
        thread_ts=row["thread_ts"],
        timings_ms=dict(row["timings_ms"]),
        created_at=_utc(row["created_at"]),
        conversation_kind=row["conversation_kind"],
    )
