"""A circuit breaker, so a dead generation server costs one slow question, not every question.

Closed: requests go through. After ``failures`` server faults in a row it opens: requests are
refused at once (the answer falls back to quoting) for ``cooldown_s``. Then it lets one request
through as a trial (half-open): success closes it, failure opens it for another cooldown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, *, failures: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.cooldown_s, self._clock = failures, cooldown_s, clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (a trial request may go through now)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """True if a request may go to the server now (in half-open, only one at a time)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._consecutive, self._opened_at, self._trial_running = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._trial_running or self._consecutive >= self.failures:
                self._opened_at = self._clock()
            self._trial_running = False

    def release(self) -> None:
        """A request that ended without telling anything about the server's health (e.g. it was
        refused for the prompt's length) gives back its trial slot."""
        with self._lock:
            self._trial_running = False

    def seconds_until_trial(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
