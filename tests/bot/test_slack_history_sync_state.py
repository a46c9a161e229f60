"""Per-channel sync cursors, on SQLite and PostgreSQL (skipped, with the reason, without a server)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from bot.slack_history.sync_state import SyncState


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
