"""Opening lorebot's database: the embedded default, PostgreSQL URLs, and clear errors for bad ones."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from knowledge.errors import DatabaseError
from training.database import default_database_url, open_engine


def test_the_default_database_is_a_file_in_the_data_directory_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert default_database_url(".lorebot") == f"sqlite:///{tmp_path.resolve()}/.lorebot/lorebot.db"


def test_a_sqlite_database_gets_its_folder_and_lets_readers_and_a_writer_share_it(tmp_path):
    engine = open_engine(default_database_url(tmp_path / "data"))
    try:
        with engine.connect() as connection:
            journal = connection.execute(text("PRAGMA journal_mode")).scalar()
            foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar()
            busy_timeout = connection.execute(text("PRAGMA busy_timeout")).scalar()
    finally:
        engine.dispose()

    assert (tmp_path / "data" / "lorebot.db").exists()
    assert (journal, foreign_keys, busy_timeout) == ("wal", 1, 30000)


@pytest.mark.parametrize("url", ["postgres://bot:hunter2@db/lorebot", "postgresql://bot:hunter2@db/lorebot"])
def test_postgresql_urls_use_the_installed_driver(url):
    engine = open_engine(url)

    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql//bot:hunter2@db/lorebot", "not a database URL"),
        ("mysql://bot:hunter2@db/lorebot", "not 'mysql'"),
        ("postgresql+nodriver://bot:hunter2@db/lorebot", "cannot open the database"),
    ],
)
def test_a_bad_url_is_one_clear_line_without_the_password(url, says):
    with pytest.raises(DatabaseError) as raised:
        open_engine(url)

    message = str(raised.value)
    assert says in message
    assert "hunter2" not in message and "\n" not in message
