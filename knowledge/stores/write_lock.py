"""One writer at a time for an index on this machine: an OS file lock in the index directory.

The embedded index is a directory of files that any process may open. Two ingests writing it at
once (the scheduler's re-ingest and an admin's ``lorebot ingest``) race on creating its tables and
interleave the chunk and document writes of one document; readers need no lock (LanceDB's versions
keep them consistent). ``fcntl.flock`` is released by the kernel when its holder dies, so a
``kill -9`` never leaves the index locked.

Re-entrant within a thread: an ingest holds the lock around all its writes, and each write takes it
again, as a no-op. Another thread, or another process, waits up to ``timeout_s``, then gets an
:class:`~knowledge.errors.IndexBusyError`.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from knowledge.errors import IndexBusyError, StoreError

LOCK_FILE = ".lorebot-write.lock"
DEFAULT_TIMEOUT_S = 60.0
_POLL_S = 0.05

# {lock file: (pid, depth)} of the locks this thread holds. The pid guards a child forked while
# the parent held one: it inherits this record but not the right to write.
_held = threading.local()


class IndexWriteLock:
    """The write lock of the index in ``directory``."""

    def __init__(self, directory: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        if timeout_s < 0:
            raise ValueError(f"a lock timeout is zero or more seconds, not {timeout_s!r}")
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.timeout_s = timeout_s

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the ``with`` block: at once if this thread holds it already, else after
        waiting up to ``timeout_s`` for whoever holds it (raises IndexBusyError after that)."""
        key = str(self.path.resolve())
        mine = _records()
        pid, depth = mine.get(key, (0, 0))
        if pid == os.getpid() and depth > 0:
            mine[key] = (pid, depth + 1)
            try:
                yield
            finally:
                mine[key] = (pid, depth)
            return
        fd = self._acquire()
        mine[key] = (os.getpid(), 1)
        try:
            yield
        finally:
            del mine[key]
            os.close(fd)  # closing the descriptor releases the lock

    def _acquire(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open the index's write lock {self.path}: {e.strerror}") from e
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError as e:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexBusyError(str(self.directory), self.timeout_s) from e
                time.sleep(_POLL_S)
            except OSError as e:
                os.close(fd)
                raise StoreError(f"cannot lock the index at {self.directory}: {e.strerror}") from e


def _records() -> dict[str, tuple[int, int]]:
    if not hasattr(_held, "locks"):
        _held.locks = {}
    return _held.locks
