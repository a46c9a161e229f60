"""Who may see what: document scopes, answer audiences, and the one filter between them.

Every passage a store returns has passed :func:`filter_for`; stores apply it *inside* their
query (a pre-filter), so a private passage never even competes for a rank.

>>> doc = Scope.channels(["C0ENG"])
>>> filter_for(Audience.for_conversation("C0ENG")).allows(doc)
True
>>> filter_for(Audience.for_conversation("C0FIN")).allows(doc)
False
>>> filter_for(Audience.for_conversation("D0DM")).allows(Scope.public())
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.errors import AccessError

PUBLIC = "public"

# Slack conversation IDs: C… public channels, G… private channels / group DMs, D… direct messages.
# Matched whole (fullmatch), never with "$": that also matches before a trailing newline, and
# "C0ENG\n" is not a channel ID.
_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")


def is_channel_id(value: str) -> bool:
    """True for a Slack channel ID a document may be scoped to (``C…`` or ``G…``), exactly.

    >>> [is_channel_id(v) for v in ("C024BE91L", "G0SECRET", "D0DM", "C0ENG\\n", " C0ENG")]
    [True, True, False, False, False]
    """
    return isinstance(value, str) and _CHANNEL_ID.fullmatch(value) is not None


def is_conversation_id(value: str) -> bool:
    """True for a Slack conversation ID an answer may be posted in (``C…``, ``G…`` or ``D…``), exactly."""
    return isinstance(value, str) and _CONVERSATION_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Scope:
    """Where a document may be shown: ``public`` or an explicit set of channel IDs.

    Stored as a list of labels (``["public"]`` or ``["C1", "C2"]``), which is what the stores'
    label-list indexes and ``contains any`` filters work on.
    """

    labels: frozenset[str]

    @classmethod
    def public(cls) -> Scope:
        return cls(frozenset({PUBLIC}))

    @classmethod
    def channels(cls, channel_ids: list[str] | tuple[str, ...] | frozenset[str]) -> Scope:
        ids = frozenset(channel_ids)
        if not ids:
            raise AccessError("a document needs a scope: give --channel ID (repeatable) or --public")
        bad = sorted(i for i in ids if not is_channel_id(i))
        if bad:
            raise AccessError(
                f"not a Slack channel ID: {', '.join(bad)} (channel IDs look like C024BE91L or G024BE91L)"
            )
        return cls(ids)

    @classmethod
    def from_labels(cls, labels: list[str] | tuple[str, ...] | frozenset[str]) -> Scope:
        """Rebuild a scope read back from a store."""
        labels = frozenset(labels)
        if labels == {PUBLIC}:
            return cls.public()
        return cls.channels(labels)

    @classmethod
    def from_options(cls, *, channels: list[str] | None, public: bool) -> Scope:
        """The scope an ingest command asked for; exactly one of the two must be given."""
        if public and channels:
            raise AccessError("give either --public or --channel, not both")
        if public:
            return cls.public()
        if not channels:
            raise AccessError(
                "no scope given: every document needs one. Use --channel ID (repeatable) for "
                "channel-only documents, or --public for documents every conversation may see"
            )
        return cls.channels(channels)

    @property
    def is_public(self) -> bool:
        return PUBLIC in self.labels

    def as_list(self) -> list[str]:
        return sorted(self.labels)

    def __str__(self) -> str:
        return PUBLIC if self.is_public else ",".join(self.as_list())


@dataclass(frozen=True)
class Audience:
    """Everyone who will read an answer: the members of the conversation it is posted in."""

    conversation_id: str

    @classmethod
    def for_conversation(cls, conversation_id: str | None) -> Audience:
        """The audience of one conversation; its ID must be exactly a Slack conversation ID
        (nothing around it: an ID that had to be cleaned up came from somewhere it should not)."""
        if not (conversation_id or "").strip():
            raise AccessError("refusing to search without an audience: a conversation ID is required")
        if not is_conversation_id(conversation_id):
            raise AccessError(
                f"not a Slack conversation ID: {conversation_id!r} (they look like C024BE91L, G…, or D…)"
            )
        return cls(conversation_id)

    @property
    def is_direct_message(self) -> bool:
        return self.conversation_id.startswith("D")


@dataclass(frozen=True)
class AccessFilter:
    """The scope labels an audience may draw on. Built only by :func:`filter_for`."""

    allowed: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return bool(self.allowed & scope.labels)

    def lance_where(self) -> str:
        """The SQL predicate LanceDB evaluates as a pre-filter (served by the label-list index)."""
        quoted = ", ".join("'" + label.replace("'", "''") + "'" for label in sorted(self.allowed))
        return f"array_has_any(scope, [{quoted}])"

    def weaviate_filter(self):
        """The same predicate as a Weaviate filter: ``scope`` contains any of the allowed labels.

        (weaviate is imported here, not at the top: the embedded default never loads it.)
        """
        from weaviate.classes.query import Filter

        return Filter.by_property("scope").contains_any(sorted(self.allowed))


def filter_for(audience: Audience) -> AccessFilter:
    """The filter for one audience: ``public`` plus the conversation itself.

    A DM sees ``public`` documents only: its ID can never be a document scope.
    """
    if not isinstance(audience, Audience) or not audience.conversation_id:
        raise AccessError("refusing to search without an audience")
    if not is_conversation_id(audience.conversation_id):  # built around for_conversation
        raise AccessError(f"not a Slack conversation ID: {audience.conversation_id!r}")
    if audience.is_direct_message:
        return AccessFilter(frozenset({PUBLIC}))
    return AccessFilter(frozenset({PUBLIC, audience.conversation_id}))
