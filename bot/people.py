"""Slack user IDs as the names people know each other by (``users.info``, scope ``users:read``).

Slack sources keep their authors as bare user IDs (``bot/slack_history/documents.py``); the names
are looked up only when a source is shown, through one cache shared by every thread that renders.
A lookup that fails (missing scope, a deleted user, Slack unreachable, rate limited) shows the bare
ID: a source is never held back for a name. A name is plain text, never ``<@U…>``: showing a source
must not notify its authors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

# A name seldom changes; a failed lookup is tried again sooner (the scope may have been added).
NAME_TTL_S = 3_600.0
FAILURE_TTL_S = 300.0
MAX_CACHED = 10_000

Names = Callable[[str], str]


class People:
    """User ID → display name, cached and safe to share between threads.

    >>> People(None)("U0ANA")  # no Slack client (the CLI without a token): the bare ID
    'U0ANA'
    """

    def __init__(self, client: WebClient | None, *, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}  # user ID → (name, valid until)
        self._pending: dict[str, threading.Event] = {}  # lookups in flight: one call per ID at a time
        self._unreachable_until = 0.0  # Slack did not answer: no lookups (bare IDs) until then

    def __call__(self, user_id: str) -> str:
        return self.name(user_id)

    def name(self, user_id: str) -> str:
        """The user's display name (else real name, else handle); the bare ID where Slack does not say."""
        if self.client is None or not user_id:
            return user_id
        while True:
            with self._lock:
                if self._unreachable_until > self._clock():
                    return user_id
                cached = self._cache.get(user_id)
                if cached is not None and cached[1] > self._clock():
                    return cached[0]
                waiting = self._pending.get(user_id)
                if waiting is None:
                    done = self._pending[user_id] = threading.Event()
                    break
            waiting.wait(timeout=30)
        try:
            name, ttl = self._look_up(user_id)
            with self._lock:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[user_id] = (name, self._clock() + ttl)
            return name
        finally:
            with self._lock:
                self._pending.pop(user_id, None)
            done.set()

    def _look_up(self, user_id: str) -> tuple[str, float]:
        try:
            user = self.client.users_info(user=user_id).get("user") or {}
        except SlackApiError as e:
            # The reason (missing_scope: users:read, user_not_found, ratelimited …) is for the logs only.
            log.warning("users.info for %s refused (%s); showing the bare ID", user_id, e.response.get("error"))
            return user_id, FAILURE_TTL_S
        except Exception:
            # Slack unreachable: every other lookup would wait as long, so none is tried for a while.
            log.warning("users.info for %s failed; showing bare IDs for a while", user_id, exc_info=True)
            with self._lock:
                self._unreachable_until = self._clock() + FAILURE_TTL_S
            return user_id, FAILURE_TTL_S
        return display_name(user) or user_id, NAME_TTL_S


def display_name(user: dict) -> str:
    """What Slack shows for a user: the display name, else the real name, else the handle.

    >>> display_name({"name": "ana", "profile": {"display_name": "", "real_name": "Ana Lopez"}})
    'Ana Lopez'
    """
    profile = user.get("profile") or {}
    for candidate in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return ""


def bare_ids(user_id: str) -> str:
    """The names of no one: each author shown as its user ID (where no lookup is wired)."""
    return user_id
