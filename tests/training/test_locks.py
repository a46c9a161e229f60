"""Database locks: one holder at a time, a crashed holder blocks nobody for long, only the holder releases."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from training.locks import DatabaseLocks, db_lock, new_holder_id


@pytest.fixture
def locks(open_database):
    return DatabaseLocks(open_database())


@pytest.fixture
def other_locks(open_database):
    """The same table through another engine: another scheduler process's connections."""
    return DatabaseLocks(open_database())


def test_a_free_lock_is_taken_and_a_held_one_is_refused_naming_its_holder(locks, other_locks):
    first = locks.acquire("train", holder="host-a:1:aaaa", lease_s=60)
    second = other_locks.acquire("train", holder="host-b:2:bbbb", lease_s=60)

    assert first and first.obtained
    assert not second and second.held_by == "host-a:1:aaaa"
    assert other_locks.holder("train") == "host-a:1:aaaa"
    assert other_locks.acquire("export", holder="host-b:2:bbbb", lease_s=60), "locks are per name"


def test_of_many_holders_racing_for_a_lock_exactly_one_gets_it(open_database):
    engines = [open_database() for _ in range(2)]
    DatabaseLocks(engines[0])  # the table exists before the race; creating it is tested elsewhere
    start = threading.Barrier(8)
    results, errors = [], []

    def race(n: int) -> None:
        contender = DatabaseLocks(engines[n % 2])
        start.wait()
        try:
            results.append(contender.acquire("train", holder=f"contender-{n}", lease_s=60).obtained)
        except Exception as e:  # collected so a failure in a thread fails the test
            errors.append(e)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results) == [False] * 7 + [True]


def test_an_expired_lease_is_taken_over(locks, other_locks):
    assert locks.acquire("train", holder="crashed", lease_s=0.3)
    assert not other_locks.acquire("train", holder="next", lease_s=60)

    time.sleep(0.5)

    assert other_locks.acquire("train", holder="next", lease_s=60)
    assert locks.holder("train") == "next"
    assert not locks.renew("train", holder="crashed", lease_s=60), "the old holder has lost it"


def test_only_the_holder_releases(locks, other_locks):
    locks.acquire("train", holder="owner", lease_s=60)

    assert not other_locks.release("train", holder="someone-else")
    assert not other_locks.acquire("train", holder="someone-else", lease_s=60)
    assert locks.release("train", holder="owner")
    assert other_locks.acquire("train", holder="someone-else", lease_s=60)


def test_the_context_manager_holds_renews_and_releases(open_database, other_locks):
    engine = open_database()
    with db_lock(engine, "train", lease_s=0.3) as held:
        assert held and held.holder.count(":") == 2
        time.sleep(0.8)  # well past the lease: the heartbeat kept renewing it
        assert not other_locks.acquire("train", holder="other", lease_s=60)
        assert not held.lost.is_set()
        with db_lock(engine, "train", lease_s=60) as second:
            assert not second and second.held_by == held.holder

    assert other_locks.holder("train") is None
    assert other_locks.acquire("train", holder="other", lease_s=60)


def test_a_lease_taken_over_while_held_is_reported_lost(open_database, other_locks):
    engine = open_database()
    with db_lock(engine, "train", lease_s=0.3) as held:
        # The holder's database went quiet for longer than the lease, and someone took over.
        other_locks.release("train", holder=held.holder)
        assert other_locks.acquire("train", holder="other", lease_s=60)
        assert held.lost.wait(2)

    assert other_locks.holder("train") == "other", "leaving the block does not free someone else's lock"


def test_a_non_positive_lease_is_refused(locks):
    with pytest.raises(ValueError):
        locks.acquire("train", holder="h", lease_s=0)


def test_holder_ids_name_the_host_and_process_and_are_unique():
    import socket

    first, second = new_holder_id(), new_holder_id()

    assert first.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert first != second


# Takes the lock, says so, and vanishes without releasing it: a crash, as far as the lock can tell.
_HOLD_AND_DIE = """
import os, sys
from training.database import open_engine
from training.locks import DatabaseLocks
lease = DatabaseLocks(open_engine(sys.argv[1])).acquire("train", holder=f"doomed:{os.getpid()}", lease_s=3)
print("obtained" if lease else "refused", flush=True)
os._exit(0)
"""


def test_a_process_that_dies_holding_the_lock_blocks_others_only_until_its_lease_ends(database_url, open_database):
    locks = DatabaseLocks(open_database())
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run([sys.executable, "-c", _HOLD_AND_DIE, database_url], cwd=root, capture_output=True,
                           text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(root)})
    assert child.stdout.strip() == "obtained", child.stderr

    assert not locks.acquire("train", holder="survivor", lease_s=60)
    deadline = time.monotonic() + 10
    while not locks.acquire("train", holder="survivor", lease_s=60):
        assert time.monotonic() < deadline, "the dead holder's lease never ran out"
        time.sleep(0.1)
    assert locks.holder("train") == "survivor"
