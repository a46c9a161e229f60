"""`lorebot ingest` and the scheduled re-ingest refuse to widen who sees indexed documents unless confirmed."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.jobs import reingest_sources
from knowledge.stores.write_lock import IndexWriteLock
from training.jobs_log import FAILED, OK

from tests.conftest import write_falcon_handbook


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    return write_falcon_handbook(tmp_path / "handbook")


def lorebot(*args: str):
    return CliRunner().invoke(app, list(args))


def unwrapped(text: str) -> str:
    return "".join(text.split())  # Rich wraps long lines, paths mid-word


def documents() -> dict[str, list[str]]:
    listed = json.loads(lorebot("documents", "--json").stdout)["documents"]
    return {d["title"]: d["scope"] for d in listed}


def test_a_widening_ingest_is_refused_with_the_documents_and_the_flag(tree):
    assert lorebot("ingest", str(tree / "private"), "--channel", "C0DEALS").exit_code == 0
    result = lorebot("ingest", str(tree), "--public")
    assert result.exit_code == 2, result.output
    message = unwrapped(result.stderr)
    assert str(tree / "private" / "deal.md") in message and "C0DEALS→public" in message
    assert "--allow-widen" in message and "Traceback" not in result.output
    assert documents() == {"Project Falcon": ["C0DEALS"]}

    confirmed = lorebot("ingest", str(tree), "--public", "--allow-widen")
    assert confirmed.exit_code == 0, confirmed.output
    assert documents() == {"Project Falcon": ["public"], "Lunch": ["public"]}


def test_a_refused_widening_is_one_json_object_with_json(tree):
    lorebot("ingest", str(tree / "private"), "--channel", "C0DEALS")
    result = lorebot("ingest", str(tree / "private"), "--channel", "C0OTHER", "--json")
    assert result.exit_code == 2
    refused = json.loads(result.stdout)
    assert refused["error"] == "widening_refused" and "--allow-widen" in refused["message"]
    assert refused["widened"] == [{"path": str(tree / "private" / "deal.md"), "old_scope": ["C0DEALS"],
                                   "new_scope": ["C0OTHER"]}]


def test_the_ingest_help_documents_allow_widen():
    result = lorebot("ingest", "--help")
    assert result.exit_code == 0 and "--allow-widen" in result.stdout


def test_an_emptied_file_is_reported_removed_and_the_ingest_succeeds(tree):
    lorebot("ingest", str(tree), "--channel", "C0DEALS")
    (tree / "private" / "deal.md").write_text("")
    result = lorebot("ingest", str(tree), "--channel", "C0DEALS", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["removed"], report["failed"]) == (1, [])
    assert documents() == {"Lunch": ["C0DEALS"]}


def test_the_scheduled_reingest_never_widens_and_names_no_document(tree, monkeypatch):
    lorebot("ingest", str(tree / "private"), "--channel", "C0DEALS")
    monkeypatch.setenv("LOREBOT_SOURCES", json.dumps([{"path": str(tree / "public"), "public": True},
                                                      {"path": str(tree), "public": True}]))
    outcome = reingest_sources()
    assert outcome.outcome == FAILED
    assert "entry 2 not re-ingested: 1 document would widen to public" in outcome.detail
    assert "--allow-widen" in outcome.detail
    assert "deal.md" not in outcome.detail and "private" not in outcome.detail
    assert documents() == {"Project Falcon": ["C0DEALS"], "Lunch": ["public"]}  # entry 1 still ran

    assert lorebot("ingest", str(tree), "--public", "--allow-widen").exit_code == 0
    assert reingest_sources().outcome == OK


def test_an_ingest_while_another_writes_the_index_waits_then_fails_clearly(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_INDEX_LOCK_TIMEOUT_S", "0.3")
    index = tmp_path / "data" / "index"
    index.mkdir(parents=True)
    holding, done = threading.Event(), threading.Event()

    def other_ingest() -> None:  # another writer (a thread here; a process in production)
        with IndexWriteLock(index).held():
            holding.set()
            done.wait(30)

    writer = threading.Thread(target=other_ingest)
    writer.start()
    try:
        assert holding.wait(30)
        result = lorebot("ingest", str(tree / "public"), "--public")
    finally:
        done.set()
        writer.join()
    assert result.exit_code == 2, result.output
    assert "another ingest is writing the index" in result.stderr  # whole: errors are not wrapped
    assert "waited 0.3 s" in result.stderr
    assert lorebot("ingest", str(tree / "public"), "--public").exit_code == 0  # free again: it lands
