"""Per-channel sync cursors, on SQLite and PostgreSQL (skipped, with the reason, without a server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text

from bot.slack_history.sync_state import SyncState, listed_fingerprint, read_fingerprint


def test_a_cursor_is_kept_per_channel_and_survives_a_restart(open_database) -> None:
    state = SyncState(open_database())
    assert state.cursor("C0ENG") is None

    when = datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
    state.advance("C0ENG", "1772619300.000100", synced_at=when)
    state.advance("C0OPS", None, synced_at=when)  # read, nothing in it yet

    restarted = SyncState(open_database())
    cursor = restarted.cursor("C0ENG")
    assert (cursor.newest_ts, cursor.synced_at) == ("1772619300.000100", when)
    assert restarted.cursor("C0OPS").newest_ts == "0"


def test_a_cursor_never_moves_back(open_database) -> None:
    state = SyncState(open_database())
    state.advance("C0ENG", "1772619300.000100")
    state.advance("C0ENG", "999999999.000000")  # a --since re-read of older history: 9 digits, older
    state.advance("C0ENG", None)
    assert state.cursor("C0ENG").newest_ts == "1772619300.000100"
    state.advance("C0ENG", "1772619300.000200")
    assert state.cursor("C0ENG").newest_ts == "1772619300.000200"


def test_the_table_lives_in_lorebots_database(open_database) -> None:
    engine = open_database()
    SyncState(engine).advance("C0ENG", "1772619300.000100")
    assert "slack_sync" in inspect(engine).get_table_names()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT channel_id FROM slack_sync")).scalars().all() == ["C0ENG"]


def test_thread_marks_are_kept_replaced_and_forgotten_per_channel(open_database) -> None:
    state = SyncState(open_database())
    earlier, later = datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    state.advance("C0ENG", "1772619300.000100")
    state.advance("C0OPS", "1772619300.000100")
    state.mark_threads("C0ENG", {"1.0": "a", "2.0": "b"}, checked_at=earlier)
    state.mark_threads("C0OPS", {"1.0": "z"}, checked_at=earlier)
    state.mark_threads("C0ENG", {"2.0": "c"}, checked_at=later)  # read again: replaced

    marks = SyncState(open_database()).thread_marks("C0ENG")
    assert {ts: (m.fingerprint, m.checked_at) for ts, m in marks.items()} == {"1.0": ("a", earlier), "2.0": ("c", later)}
    state.unmark_threads("C0ENG", ["1.0", "9.0"])
    assert list(state.thread_marks("C0ENG")) == ["2.0"]
    state.forget("C0ENG")
    assert state.thread_marks("C0ENG") == {} and list(state.thread_marks("C0OPS")) == ["1.0"]


def test_many_marks_are_written_and_removed_in_batches(open_database) -> None:
    state = SyncState(open_database())
    stamps = [f"{1_700_000_000 + i}.000100" for i in range(1_234)]  # more than one statement's worth
    state.mark_threads("C0ENG", dict.fromkeys(stamps, "f"))
    assert len(state.thread_marks("C0ENG")) == 1_234
    state.unmark_threads("C0ENG", stamps[:1_000])
    assert sorted(state.thread_marks("C0ENG")) == stamps[1_000:]


def test_a_full_read_is_due_when_never_recorded_or_old_enough(open_database) -> None:
    state = SyncState(open_database())
    then = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    state.advance("C0ENG", "1772619300.000100", synced_at=then)
    day = timedelta(hours=24)
    assert state.due_full_read(state.cursor("C0ENG"), day, now=then)  # never read whole
    state.advance("C0ENG", None, synced_at=then + timedelta(minutes=5), full_read_at=then)
    state.advance("C0ENG", None, synced_at=then + timedelta(hours=1))  # an ordinary catch-up keeps it
    cursor = SyncState(open_database()).cursor("C0ENG")
    assert cursor.full_read_at == then
    assert not state.due_full_read(cursor, day, now=then + timedelta(hours=23))
    assert state.due_full_read(cursor, day, now=then + day)


def test_a_table_made_before_full_reads_gains_the_column(open_database) -> None:
    engine = open_database()
    with engine.begin() as connection:  # the table as the version before this one made it
        connection.execute(text("CREATE TABLE slack_sync (channel_id VARCHAR(32) PRIMARY KEY, "
                                "newest_ts VARCHAR(32) NOT NULL, synced_at TIMESTAMP NOT NULL, public BOOLEAN)"))
        connection.execute(text("INSERT INTO slack_sync VALUES ('C0ENG', '1772619300.000100', "
                                "'2026-03-04 10:00:00', false)"))
    state = SyncState(open_database())
    cursor = state.cursor("C0ENG")
    assert cursor.newest_ts == "1772619300.000100" and cursor.full_read_at is None
    assert state.due_full_read(cursor, timedelta(hours=24))


def test_a_thread_read_has_the_fingerprint_its_listing_shows() -> None:
    parent = {"ts": "1.000100", "user": "U0ANA", "text": "Which port?", "thread_ts": "1.000100",
              "reply_count": 2, "latest_reply": "3.000100"}
    replies = [{"ts": "2.000100", "text": "6379", "thread_ts": "1.000100"},
               {"ts": "3.000100", "text": "or 6380", "thread_ts": "1.000100"}]
    assert read_fingerprint([parent, *replies]) == listed_fingerprint(parent)
    # What the listing shows when a reply is deleted, the parent edited, or the parent deleted:
    fewer = {**parent, "reply_count": 1, "latest_reply": "2.000100"}
    edited = {**parent, "text": "Which port, again?"}
    tombstone = {**parent, "subtype": "tombstone", "text": "This message was deleted."}
    assert len({listed_fingerprint(p) for p in (parent, fewer, edited, tombstone)}) == 4
    assert read_fingerprint([fewer, replies[0]]) == listed_fingerprint(fewer)


def test_events_missed_since_a_full_read_began_make_the_next_one_due(open_database) -> None:
    state = SyncState(open_database())
    began = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    state.advance("C0ENG", "1772619300.000100", synced_at=began + timedelta(minutes=3), full_read_at=began)
    day, soon = timedelta(hours=24), began + timedelta(hours=1)
    assert state.events_missed_at() is None and not state.due_full_read(state.cursor("C0ENG"), day, now=soon)

    state.events_missed(began - timedelta(minutes=1))  # before the read began: it saw that
    assert not state.due_full_read(state.cursor("C0ENG"), day, now=soon)
    state.events_missed(began + timedelta(minutes=1))  # while it read (it may have read too early)
    state.events_missed(began)  # an older report never moves the mark back
    assert SyncState(open_database()).events_missed_at() == began + timedelta(minutes=1)
    assert state.due_full_read(state.cursor("C0ENG"), day, now=soon)


def test_times_compared_across_hosts_come_from_one_clock(open_database) -> None:
    state = SyncState(open_database())
    now = state.now()  # PostgreSQL's clock for a shared database; this host's for SQLite
    assert now.tzinfo is not None and abs(now - datetime.now(UTC)) < timedelta(minutes=5)
    state.advance("C0ENG", "1772619300.000100", full_read_at=now)
    state.events_missed()  # stamped by the same clock: after the full read began
    assert state.events_missed_at() >= now and state.due_full_read(state.cursor("C0ENG"), timedelta(hours=24))


def test_a_full_read_can_be_asked_for_one_channel_and_groups_changed_only_moves_forward(open_database) -> None:
    state = SyncState(open_database())
    then = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    for channel in ("C0ENG", "C0OPS"):
        state.advance(channel, "1772619300.000100", full_read_at=then)
    state.request_full_read("C0ENG", then + timedelta(minutes=5))
    day, soon = timedelta(hours=24), then + timedelta(hours=1)
    assert state.due_full_read(state.cursor("C0ENG"), day, now=soon)
    assert not state.due_full_read(state.cursor("C0OPS"), day, now=soon)
    # A full read that began before the event failed (it may have listed too early) does not answer
    # the request; one that began after it does. An older request never moves the stamp back.
    state.advance("C0ENG", None, full_read_at=then + timedelta(minutes=4))
    state.request_full_read("C0ENG", then + timedelta(minutes=3))
    assert state.due_full_read(state.cursor("C0ENG"), day, now=soon)
    state.advance("C0ENG", None, full_read_at=then + timedelta(minutes=6))
    assert not state.due_full_read(state.cursor("C0ENG"), day, now=soon)

    state.groups_changed("C0ENG", then + timedelta(minutes=2))
    state.groups_changed("C0ENG", then + timedelta(minutes=1))  # an older read's stamp never moves it back
    state.groups_changed("C0NOPE", then)  # not listed: nothing recorded
    assert SyncState(open_database()).cursor("C0ENG").groups_changed_at == then + timedelta(minutes=2)
    assert state.cursor("C0NOPE") is None
