"""The embedded index stays whole when several processes write it, or one dies half-way.

One writer at a time (a file lock in the index directory, bounded wait, a clear error); two first
ingests that race to create the tables both land; and ``optimize`` repairs a documents table left
behind by a ``kill -9`` between the chunk write and the documents write, without that stale table
ever widening who sees what. Writers here are real processes (spawned, as a second ``lorebot
ingest`` would be), not threads pretending.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowledge.access import Scope
from knowledge.chunking import document_text
from knowledge.errors import IndexBusyError, LorebotError
from knowledge.stores.lancedb import LanceStore
from tests.knowledge.store_contract import DIMENSION, audience, chunks, request

MODEL = "m"
SPAWN = multiprocessing.get_context("spawn")
CHILD_PATIENCE_S = 60


def _open(path: Path, **options) -> LanceStore:
    return LanceStore(path, dimension=DIMENSION, model_id=MODEL, **options)


# -- children (module level: a spawned process imports them by name) ------------------------------

def _hold_the_lock(path: str, acquired, release, released_marker: str) -> None:
    store = _open(Path(path))
    with store.exclusive_writer():
        acquired.set()
        release.wait(CHILD_PATIENCE_S)
        # Written while still holding the lock: whoever gets it next must find this file there.
        Path(released_marker).write_text("released")
    store.close()


def _first_ingest(path: str, prefix: str, ready, results) -> None:
    try:
        store = _open(Path(path), write_lock_timeout_s=CHILD_PATIENCE_S)  # opened on an empty index
        ready.wait(CHILD_PATIENCE_S)  # both opened before either writes: the worst interleaving
        store.upsert_documents({f"{prefix}{i}": chunks(f"{prefix}{i}", [f"{prefix} runbook part {i}"],
                                                        Scope.channels([f"C0{prefix.upper()}"]))
                                for i in range(3)})
        store.optimize()
        store.close()
        results.put((prefix, "ok"))
    except BaseException as e:  # reported to the parent, which asserts on it
        results.put((prefix, f"{type(e).__name__}: {e}"))


def _start(target, *args):
    process = SPAWN.Process(target=target, args=args, daemon=True)
    process.start()
    return process


# -- one writer at a time -------------------------------------------------------------------------

def test_a_second_writer_gives_up_after_the_bounded_wait_with_a_clear_error(tmp_path):
    acquired, release = SPAWN.Event(), SPAWN.Event()
    holder = _start(_hold_the_lock, str(tmp_path), acquired, release, str(tmp_path / "released"))
    try:
        assert acquired.wait(CHILD_PATIENCE_S), "the first writer never took the lock"
        store = _open(tmp_path, write_lock_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(IndexBusyError) as raised:
            store.upsert_documents({"late": chunks("late", ["arrived while another ingest wrote"], Scope.public())})
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(CHILD_PATIENCE_S)

    message = str(raised.value)
    assert isinstance(raised.value, LorebotError)
    assert str(tmp_path) in message and "another ingest is writing the index" in message and "try again" in message
    assert waited >= 0.5  # it waited its turn before giving up, rather than failing at once
    assert store.count() == 0  # nothing was written without the lock
    # Once the first writer is done, the same call goes through.
    store.upsert_documents({"late": chunks("late", ["arrived while another ingest wrote"], Scope.public())})
    assert store.count() == 1


def test_a_second_writer_waits_while_the_first_holds_the_lock(tmp_path):
    acquired, release = SPAWN.Event(), SPAWN.Event()
    released = tmp_path / "released"
    holder = _start(_hold_the_lock, str(tmp_path), acquired, release, str(released))
    try:
        assert acquired.wait(CHILD_PATIENCE_S)
        store = _open(tmp_path, write_lock_timeout_s=CHILD_PATIENCE_S)
        threading.Timer(0.5, release.set).start()
        with store.exclusive_writer():
            assert released.exists()  # the lock came only after the first writer let go
            store.upsert_documents({"next": chunks("next", ["written after the first ingest"], Scope.public())})
    finally:
        release.set()
        holder.join(CHILD_PATIENCE_S)
    assert holder.exitcode == 0 and store.count() == 1


def test_the_lock_is_reentrant_in_one_thread_and_exclusive_between_threads(tmp_path):
    store = _open(tmp_path, write_lock_timeout_s=0.3)
    same_index = _open(tmp_path, write_lock_timeout_s=0.3)
    outcome: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            with store.exclusive_writer():
                outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    with store.exclusive_writer():
        # An ingest holds the lock around everything it writes; the writes take it again.
        with store.exclusive_writer(), same_index.exclusive_writer():
            store.upsert_documents({"a": chunks("a", ["nested writes do not wait for themselves"], Scope.public())})
            same_index.rescope_document("a", Scope.channels(["C0OPS"]))
            store.optimize()
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert isinstance(outcome[0], IndexBusyError)
    with store.exclusive_writer():  # released when the outermost block ended
        pass
    assert [d.scope for d in store.list_documents()] == [Scope.channels(["C0OPS"])]


def test_two_first_ingests_racing_on_an_empty_index_both_land(tmp_path):
    ready = SPAWN.Barrier(2)
    results = SPAWN.Queue()
    writers = [_start(_first_ingest, str(tmp_path), prefix, ready, results) for prefix in ("eng", "fin")]
    outcomes = dict(results.get(timeout=CHILD_PATIENCE_S * 2) for _ in writers)
    for writer in writers:
        writer.join(CHILD_PATIENCE_S)
    assert outcomes == {"eng": "ok", "fin": "ok"}

    store = _open(tmp_path)
    expected = {f"{p}{i}" for p in ("eng", "fin") for i in range(3)}
    assert {d.doc_id for d in store.list_documents()} == expected and store.count() == 6
    assert set(store._documents.to_arrow()["doc_id"].to_pylist()) == expected
    # Nothing lost, nothing crossed: each channel finds its own runbooks and only those.
    found = {h.chunk.doc_id for h in store.search(request("runbook part", mode="bm25"), audience("C0ENG"))}
    assert found == {"eng0", "eng1", "eng2"}


# -- the documents table after a crash --------------------------------------------------------------

def _documents_rows(store: LanceStore) -> dict[str, tuple[list[str], str]]:
    rows = store._documents.to_arrow().to_pylist()
    assert len(rows) == len({r["doc_id"] for r in rows}), "a document has two rows"
    return {r["doc_id"]: (sorted(r["scope"]), r["search_text"]) for r in rows}


def _rows_from_chunks(store: LanceStore) -> dict[str, tuple[list[str], str]]:
    """What the documents table must hold: each document's scope and text, rebuilt from its chunks."""
    return {d.doc_id: (sorted(d.scope.as_list()), document_text(store.chunks_of(d.doc_id)))
            for d in store.list_documents()}


def _visible_doc_ids(store: LanceStore, text: str, channel: str) -> set[str]:
    return {h.chunk.doc_id for mode in ("bm25", "hybrid")
            for h in store.search(request(text, mode=mode, k=50), audience(channel))}


def _assert_every_channel_sees_only_its_own(store: LanceStore, text: str) -> None:
    for channel in ("C0ENG", "C0FIN", "C0HR", "C0ELSEWHERE"):
        for doc in (d for d in store.list_documents() if d.doc_id in _visible_doc_ids(store, text, channel)):
            assert doc.scope.is_public or channel in doc.scope.as_list(), (channel, doc.doc_id)


def _base_index(path: Path) -> LanceStore:
    store = _open(path)
    store.upsert_documents({
        "handbook": chunks("handbook", ["payroll runs monthly", "holidays are booked in the portal"], Scope.public()),
        "budget": chunks("budget", ["payroll budget for the treasurer", "salary bands per level"],
                         Scope.channels(["C0FIN"])),
        "oncall": chunks("oncall", ["the pager rota and payroll for on-call hours"], Scope.channels(["C0ENG"])),
    })
    store.optimize()
    return store


def test_optimize_repairs_a_documents_table_left_behind_by_a_crash(tmp_path):
    store = _base_index(tmp_path)
    before_crash = store._documents.version
    # Each write below completes on the chunks table; then the documents table is put back to
    # where it was, as a kill -9 between the two writes of each would have left it.
    store.upsert_documents({"salaries": chunks("salaries", ["salary of every engineer, payroll export"],
                                               Scope.channels(["C0HR"]))})             # row missing
    store.upsert_documents({"handbook": chunks("handbook", ["payroll now runs every two weeks"],
                                               Scope.public())})                      # row stale
    store.rescope_document("oncall", Scope.channels(["C0FIN"]))                       # scope stale (wider for C0ENG)
    store.delete_document("budget")                                                   # row orphaned
    store._documents.restore(before_crash)
    assert _documents_rows(store) != _rows_from_chunks(store)

    # A stale row is a ranking signal only: even now, no channel gets a document it may not see.
    _assert_every_channel_sees_only_its_own(store, "payroll salary pager")
    assert "oncall" not in _visible_doc_ids(store, "pager rota payroll on-call", "C0ENG")

    store.optimize()

    assert _documents_rows(store) == _rows_from_chunks(store)
    assert set(_documents_rows(store)) == {"handbook", "salaries", "oncall"}
    _assert_every_channel_sees_only_its_own(store, "payroll salary pager")
    assert _visible_doc_ids(store, "salary payroll export", "C0HR") >= {"salaries"}
    # A fresh process sees the repaired table too.
    assert _documents_rows(_open(tmp_path)) == _rows_from_chunks(store)


_DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["drop", "rescope", "retext", "orphan", "duplicate"]),
        st.sampled_from(["handbook", "budget", "oncall", "ghost"]),
        st.sampled_from([["public"], ["C0ENG"], ["C0FIN", "C0HR"], ["C0HR"]]),
    ),
    min_size=1, max_size=5,
)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=_DAMAGE)
def test_any_damage_to_the_documents_table_is_undone_by_optimize(tmp_path_factory, damage):
    store = _base_index(tmp_path_factory.mktemp("index"))
    table = store._documents
    for kind, doc_id, scope in damage:
        where = f"doc_id = '{doc_id}'"
        if kind == "drop":
            table.delete(where)
        elif kind == "rescope":
            table.update(where=where, values={"scope": scope})
        elif kind == "retext":  # another document's row under this one's ID: stale content
            others = table.search().where(f"doc_id != '{doc_id}'").limit(1).to_arrow().to_pylist()
            if others:
                table.delete(where)
                table.add([{**others[0], "doc_id": doc_id}])
        else:
            rows = table.search().where(where).limit(10).to_arrow()
            if kind == "orphan" or rows.num_rows == 0:
                rows = table.search().limit(1).to_arrow().to_pylist()
                rows = [{**rows[0], "doc_id": f"gone-{doc_id}", "scope": scope}] if rows else []
            if rows:
                table.add(rows)
    _assert_every_channel_sees_only_its_own(store, "payroll salary pager")

    store.optimize()

    assert _documents_rows(store) == _rows_from_chunks(store)
    _assert_every_channel_sees_only_its_own(store, "payroll salary pager")
    store.close()


def test_a_reader_opened_on_an_empty_index_finds_what_a_later_first_ingest_wrote(tmp_path, monkeypatch):
    # The bot may start before anything was ingested; it must not answer "nothing found" for good.
    monkeypatch.setattr("knowledge.stores.lancedb._DOCUMENTS_RECHECK_S", 0.0)
    reader = _open(tmp_path)
    assert reader.search(request("pager rota", mode="bm25"), audience("C0ENG")) == []
    writer = _open(tmp_path)
    writer.upsert_documents({"oncall": chunks("oncall", ["the pager rota for on-call hours"], Scope.channels(["C0ENG"]))})
    writer.optimize()
    writer.close()

    assert {d.doc_id for d in reader.list_documents()} == {"oncall"}
    assert {h.chunk.doc_id for h in reader.search(request("pager rota", mode="bm25"), audience("C0ENG"))} == {"oncall"}
    assert reader.search(request("pager rota", mode="bm25"), audience("C0FIN")) == []
    reader.close()
