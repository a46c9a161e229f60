"""A thread pool that knows how much work it holds: for a graceful stop, the health check, and
anyone who needs to wait until everything accepted so far is done."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor


class CountingExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that counts tasks submitted and not yet finished, and runs each in
    a copy of the submitter's context (the request ID it is logged under goes with the work)."""

    def __init__(self, max_workers: int, *, name: str):
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._pending = 0
        self._idle = threading.Condition()

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        with self._idle:
            self._pending += 1
        try:
            future = super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def wait_idle(self, timeout: float) -> bool:
        """Block until no task is pending; False if that took longer than ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _done(self, _: Future | None) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
