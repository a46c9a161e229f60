"""One SQLAlchemy engine for lorebot's own tables: SQLite on one machine, PostgreSQL for replicas.

The feedback store and the event ledger both take an :class:`~sqlalchemy.Engine` from
:func:`open_engine`, create their tables with :func:`create_tables`, and turn a database that is
down into a :class:`~knowledge.errors.DatabaseError` with :func:`reporting_outages`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Column, Engine, MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from knowledge.errors import DatabaseError

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def default_database_url(data_dir: Path) -> str:
    """The embedded default: one SQLite file in the data directory, by absolute path.

    >>> default_database_url(Path("/srv/lorebot"))
    'sqlite:////srv/lorebot/lorebot.db'
    """
    return f"sqlite:///{Path(data_dir).resolve() / 'lorebot.db'}"


def masked(url: str | URL) -> str:
    """The URL as it may appear in messages and logs: the password replaced by ``***``.

    >>> masked("postgresql://bot:hunter2@db:5432/lorebot")
    'postgresql://bot:***@db:5432/lorebot'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Where the password ends in an unparseable URL is anyone's guess: show none of it.
        return "(an unreadable URL)"


def open_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///…`` or ``postgres[ql]://…``), configured for lorebot.

    Nothing is connected yet; a server that is down shows up on first use, as a DatabaseError.
    Raises DatabaseError for a malformed URL or a database lorebot does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise DatabaseError(
            "not a database URL (expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE)"
        ) from e
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseError(
            f"lorebot stores its data in SQLite or PostgreSQL, not {backend!r}: {masked(parsed)}"
        )
    try:
        return _open_sqlite(parsed) if backend == "sqlite" else _open_server(parsed)
    except (SQLAlchemyError, ImportError) as e:
        raise DatabaseError(f"cannot open the database at {masked(parsed)}: {_first_line(e)}") from e


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names (relative to the working directory unless absolute), or None
    for an in-memory database. With ``?uri=true`` the name is a ``file:`` URI, not a path.

    >>> sqlite_file(make_url("sqlite:///data/x.db")), sqlite_file(make_url("sqlite:////srv/x.db"))
    (PosixPath('data/x.db'), PosixPath('/srv/x.db'))
    >>> sqlite_file(make_url("sqlite:///file:/srv/x.db?uri=true")), sqlite_file(make_url("sqlite://"))
    (PosixPath('/srv/x.db'), None)
    """
    database = url.database
    if not database or database == ":memory:":
        return None
    if _query_value(url, "uri") not in ("1", "true", "yes", "on") or not database.startswith("file:"):
        return Path(database)
    path = unquote(urlsplit(database).path)
    if _query_value(url, "mode") == "memory" or path in ("", ":memory:"):
        return None
    return Path(path)


def _query_value(url: URL, key: str) -> str:
    value = url.query.get(key, "")
    return (value[-1] if isinstance(value, tuple) else value).lower()


def _open_sqlite(url: URL) -> Engine:
    if url.host or url.port or url.username:
        # "sqlite://data/x.db" reads "data" as a host: SQLAlchemy refuses it, but only after the
        # folder of the rest ("x.db" in the working directory) would have been made.
        raise DatabaseError("a SQLite URL names no host: write sqlite:///relative/path.db (three slashes) "
                            "or sqlite:////absolute/path.db (four)")
    database = sqlite_file(url)
    # A read-only database must exist already; making its folder would only hide the mistake.
    if database is not None and _query_value(url, "mode") != "ro":
        database.parent.mkdir(parents=True, exist_ok=True)
    # Threads share the pool (Bolt's lazy listeners, the scheduler), and the bot and scheduler
    # processes may share the file: wait for a writer rather than failing at once.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers carry on while one connection writes; foreign keys are off by default.
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor, patience_s: float = 30.0) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite refuses at once, without the busy
    # timeout, while another connection switches it too; once switched, the file stays in WAL.
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _open_server(url: URL) -> Engine:
    # Without a connect timeout a server that drops packets would hang a listener for minutes.
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
    # Pre-ping: a replica outlives database restarts and fail-overs without serving a dead connection.
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create ``metadata``'s missing tables, even while another replica creates the same ones."""
    # Two replicas both saw a table missing and both created it: the loser finds it on its next
    # look. SQLite creates tables one by one, so one can lose once per table, never more.
    attempts = len(metadata.tables) + 1
    with reporting_outages(engine):
        for attempt in range(attempts):
            try:
                metadata.create_all(engine)
                break
            except (IntegrityError, ProgrammingError, OperationalError) as e:
                if attempt == attempts - 1 or not _lost_creation_race(e):
                    raise
        add_missing_columns(engine, metadata)


def add_missing_columns(engine: Engine, metadata: MetaData) -> None:
    """Add the columns a later version gave ``metadata``'s tables to a database an earlier one made.

    Only nullable columns can be added this way (rows already there read them as NULL); a missing
    column that may not be NULL is a DatabaseError naming it.
    """
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise DatabaseError(f"the table {table.name} in {masked(engine.url)} lacks the column "
                                    f"{column.name}, which lorebot cannot add by itself (it may not be empty)")
            _add_column(engine, table, column)


def _add_column(engine: Engine, table: Table, column: Column) -> None:
    quote = engine.dialect.identifier_preparer.quote
    statement = text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                     f"{column.type.compile(dialect=engine.dialect)}")
    try:
        with engine.begin() as connection:
            connection.execute(statement)
    except (ProgrammingError, OperationalError):
        # Another replica starting at the same moment may have added it first.
        if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
            raise


def _lost_creation_race(error: SQLAlchemyError) -> bool:
    message = str(error).lower()
    # PostgreSQL reports a concurrent CREATE TABLE as a duplicate row in its catalogue of types.
    return "already exists" in message or "pg_type_typname_nsp_index" in message


@contextmanager
def reporting_outages(engine: Engine) -> Iterator[None]:
    """Turn an OperationalError (server down, file locked too long) into a DatabaseError."""
    try:
        yield
    except OperationalError as e:
        reason = _first_line(e.orig if e.orig is not None else e)
        raise DatabaseError(f"the database at {masked(engine.url)} is unreachable: {reason}") from e


def dialect_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` for ``engine``'s dialect, which offers ``on_conflict_do_update``/``_do_nothing``."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
