"""What kind of conversation a question was asked in, as Slack describes it (``conversations.info``).

Recorded with every answer, because what people say in a private channel, a DM or a channel shared
with another organization must never become training data that every channel's model learns from.
Looking it up never holds an answer back: a failure records the kind as unknown (None), and the
dataset builder treats unknown as private.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from training.feedback import DIRECT_MESSAGE, GROUP_MESSAGE, PRIVATE_CHANNEL, PUBLIC_CHANNEL, SHARED_CHANNEL

log = logging.getLogger(__name__)

# Any of these means people outside this workspace are in the conversation (Slack Connect, another
# workspace of an Enterprise Grid organization, or an invitation to either not yet accepted).
_SHARED_FLAGS = ("is_ext_shared", "is_shared", "is_org_shared", "is_pending_ext_shared")


def conversation_kind(info: dict) -> str | None:
    """The kind of a conversation from its ``conversations.info`` object, or None if it does not say.

    A DM or a group DM is that, whoever is in it; any other conversation shared outside the
    workspace is ``shared``; then ``private`` or ``public`` as Slack marks it.

    >>> conversation_kind({"is_channel": True, "is_private": False})
    'public'
    >>> conversation_kind({"is_channel": True, "is_private": False, "is_ext_shared": True})
    'shared'
    >>> [conversation_kind(c) for c in ({"is_im": True}, {"is_mpim": True, "is_private": True},
    ...                                 {"is_group": True, "is_private": True}, {"id": "C0NEW"})]
    ['im', 'mpim', 'private', None]
    """
    if info.get("is_im"):
        return DIRECT_MESSAGE
    if info.get("is_mpim"):
        return GROUP_MESSAGE
    if any(info.get(flag) for flag in _SHARED_FLAGS):
        return SHARED_CHANNEL
    if info.get("is_private") or info.get("is_group"):
        return PRIVATE_CHANNEL
    # Public only when Slack says so: a conversation object missing the flag is not guessed at.
    return PUBLIC_CHANNEL if info.get("is_private") is False else None


class ConversationKinds:
    """Looks up conversations' kinds, remembering each for ``ttl_s`` (a failure for ``failure_ttl_s``),
    so a busy channel costs one ``conversations.info`` call a minute (short, so a channel made private
    is soon known as private). Safe to share between threads.

    The client should not wait out rate limits: a lookup Slack refuses for now is better recorded as
    unknown than an answer held back for it.
    """

    def __init__(self, client: WebClient, *, ttl_s: float = 60.0, failure_ttl_s: float = 30.0,
                 max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.ttl_s, self.failure_ttl_s, self.max_entries = ttl_s, failure_ttl_s, max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._known: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        # Lookups run here, beside the answer's retrieval and generation (see start()).
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lorebot-kinds")

    def start(self, channel_id: str) -> Callable[[], str | None]:
        """Begin finding the kind now; call the result (it waits for the lookup, if one was needed)
        when the interaction is recorded. A remembered kind costs nothing; a lookup overlaps the
        answer instead of delaying it."""
        remembered = self._remembered(channel_id)
        if remembered is not None:
            return lambda: remembered[1]
        return self._pool.submit(self.kind_of, channel_id).result

    def kind_of(self, channel_id: str) -> str | None:
        """The conversation's kind (see :func:`conversation_kind`), or None if Slack would not say. Never raises."""
        now = self._clock()
        remembered = self._remembered(channel_id)
        if remembered is not None:
            return remembered[1]
        kind, failed = self._look_up(channel_id)
        with self._lock:
            self._known[channel_id] = (now + (self.failure_ttl_s if failed else self.ttl_s), kind)
            self._known.move_to_end(channel_id)
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        return kind

    def forget(self, channel_id: str) -> None:
        """Drop what is remembered of a conversation (it was made private, archived, …): the next
        answer there looks its kind up again."""
        with self._lock:
            self._known.pop(channel_id, None)

    def _remembered(self, channel_id: str) -> tuple[float, str | None] | None:
        """(expiry, kind) while the remembered kind is fresh, else None."""
        with self._lock:
            remembered = self._known.get(channel_id)
        return remembered if remembered is not None and remembered[0] > self._clock() else None

    def _look_up(self, channel_id: str) -> tuple[str | None, bool]:
        try:
            info = self.client.conversations_info(channel=channel_id).get("channel") or {}
        except Exception as e:  # Slack said no, the network, a timeout: the answer goes out all the same
            reason = e.response.get("error") if isinstance(e, SlackApiError) else type(e).__name__
            log.warning("could not tell what kind of conversation %s is (%s): its answers will not be learned",
                        channel_id, reason)
            return None, True
        kind = conversation_kind(info)
        if kind is None:
            log.warning("Slack did not say what kind of conversation %s is: its answers will not be learned",
                        channel_id)
        return kind, False


def start_lookup(conversations: ConversationKinds | None, channel_id: str) -> Callable[[], str | None]:
    """``conversations.start(channel_id)``; where nothing looks kinds up, the kind is unknown (None)."""
    return conversations.start(channel_id) if conversations is not None and channel_id else lambda: None
