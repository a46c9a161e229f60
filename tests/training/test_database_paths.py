"""Where a SQLite URL puts the database, and the folder made for it: where the URL means, and
nowhere else (each test runs in a working directory of its own, so nothing lands outside it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from knowledge.errors import DatabaseError
from training.database import open_engine


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _touch(url: str) -> None:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    finally:
        engine.dispose()


def _made(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def test_a_relative_path_is_relative_to_the_working_directory(workdir):
    _touch("sqlite:///relative/dir/x.db")
    assert (workdir / "relative" / "dir" / "x.db").is_file()
    assert _made(workdir) == {"relative", "relative/dir"}


def test_an_absolute_path_is_absolute(workdir, tmp_path):
    _touch(f"sqlite:///{tmp_path}/abs/dir/x.db")
    assert (tmp_path / "abs" / "dir" / "x.db").is_file()
    assert _made(workdir) == set()


@pytest.mark.parametrize("form", ["file:{path}", "file://{path}"])
def test_a_file_uri_gets_its_folder_where_the_uri_points(workdir, tmp_path, form):
    # Read as a plain path, "file:/tmp/…/dir/x.db" made a folder named "file:" in the working
    # directory (at / for a service started there) and SQLite then failed to open the file.
    _touch(f"sqlite:///{form.format(path=tmp_path / 'uri' / 'dir' / 'x.db')}?uri=true")
    assert (tmp_path / "uri" / "dir" / "x.db").is_file()
    assert _made(workdir) == set()


def test_a_relative_file_uri_is_relative_to_the_working_directory(workdir):
    _touch("sqlite:///file:rel/dir/x.db?uri=true&mode=rwc")
    assert (workdir / "rel" / "dir" / "x.db").is_file()
    assert _made(workdir) == {"rel", "rel/dir"}


@pytest.mark.parametrize("url", ["sqlite:///file::memory:?uri=true", "sqlite:///file:mem?mode=memory&uri=true",
                                 "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_makes_no_folder(workdir, url):
    _touch(url)
    assert list(workdir.iterdir()) == []


def test_a_url_with_a_host_is_refused_before_anything_is_made(workdir):
    # Two slashes: "relative" is read as a host, and the folder made was "dir", in the wrong place.
    with pytest.raises(DatabaseError, match=r"sqlite:///relative/path.*sqlite:////absolute/path"):
        open_engine("sqlite://relative/dir/x.db")
    assert list(workdir.iterdir()) == []
