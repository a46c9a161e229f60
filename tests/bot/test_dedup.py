"""Each Slack post is answered once: across retries, twin events, restarts and racing replicas."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from bot.dedup import EventLedger

POST = "message:C0GENERAL:1700000000.000100"


@pytest.fixture
def ledger(open_database) -> EventLedger:
    return EventLedger(open_database())


def test_a_retried_event_is_handled_once(ledger):
    assert ledger.first_sighting("event:Ev01", POST)
    assert not ledger.first_sighting("event:Ev01", POST)
    assert not ledger.first_sighting("event:Ev01")


def test_the_twin_event_of_a_post_is_dropped_and_leaves_nothing_behind(ledger):
    assert ledger.first_sighting("event:Ev01", POST)  # app_mention

    assert not ledger.first_sighting("event:Ev02", POST)  # message, same post
    # Ev02 was not recorded by the refused call: were it a different post, it would still be answered.
    assert ledger.first_sighting("event:Ev02")


def test_empty_keys_are_skipped_but_some_key_is_required(ledger):
    assert ledger.first_sighting("event:Ev01", "", None)
    assert not ledger.first_sighting(None, "event:Ev01")
    with pytest.raises(ValueError):
        ledger.first_sighting()
    with pytest.raises(ValueError):
        ledger.first_sighting("", None)


def test_a_restarted_bot_remembers_what_it_answered(open_database, ledger):
    ledger.first_sighting("event:Ev01", POST)

    restarted = EventLedger(open_database())

    assert not restarted.first_sighting("event:Ev01")
    assert not restarted.first_sighting("event:Ev09", POST)


def test_replicas_racing_on_one_event_answer_it_once(open_database):
    replicas = [EventLedger(open_database()), EventLedger(open_database())]
    rounds, handlers = 10, 8
    wins = [0] * rounds
    errors = []
    start = threading.Barrier(handlers)

    def handle(n: int) -> None:
        ledger = replicas[n % 2]
        for r in range(rounds):
            start.wait()
            try:
                if ledger.first_sighting(f"event:Race{r}", f"message:C0GENERAL:1700000000.{r:06d}"):
                    wins[r] += 1
            except Exception as e:  # collected so a failure in a thread fails the test
                errors.append(e)

    threads = [threading.Thread(target=handle, args=(n,)) for n in range(handlers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert wins == [1] * rounds


def test_old_keys_are_forgotten_and_recent_ones_kept(open_database):
    now = [1_700_000_000.0]
    ledger = EventLedger(open_database(), clock=lambda: now[0])
    ledger.first_sighting("event:Old", "message:C0GENERAL:1.0")
    now[0] += 3 * 3600
    ledger.first_sighting("event:Recent")

    assert ledger.forget_older_than(timedelta(hours=1)) == 2
    assert ledger.forget_older_than(timedelta(hours=1)) == 0
    assert ledger.first_sighting("event:Old")
    assert not ledger.first_sighting("event:Recent")
