"""A re-ingest never silently widens who may see a document; symlinks do not carry documents out
of the folder that was asked for; empty, unreadable and pruned files are counted as what they are."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.access import Audience, Scope, filter_for
from knowledge.chunking import ChunkingOptions
from knowledge.errors import AccessError, WideningRefused
from knowledge.ingest import Ingestor, content_hash, document_id
from knowledge.stores.base import SearchRequest
from knowledge.stores.lancedb import LanceStore
from knowledge.types import Document
from tests.conftest import FALCON_SECRET as SECRET
from tests.conftest import HashingEmbedder, write_falcon_handbook

DEALS = Scope.channels(["C0DEALS"])


@pytest.fixture
def tree(tmp_path):
    """handbook/private/deal.md (for C0DEALS) next to handbook/public/lunch.md."""
    return write_falcon_handbook(tmp_path / "handbook")


def visible_to(ingestor, channel: str, query: str = "Falcon acquisition closes dollars share") -> list[str]:
    vector = ingestor.embedder.encode([query])[0]
    hits = ingestor.store.search(SearchRequest(text=query, vector=vector, k=20),
                                 filter_for(Audience.for_conversation(channel)))
    return [h.chunk.title for h in hits]


def scopes(ingestor) -> dict[str, str]:
    return {d.title: str(d.scope) for d in ingestor.store.list_documents()}


# -- widening is refused unless confirmed ---------------------------------------------------------

def test_a_parent_folder_ingested_as_public_does_not_publish_a_channel_only_document(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    with pytest.raises(WideningRefused) as refused:
        ingestor.ingest_paths([tree], scope=Scope.public())
    deal = str((tree / "private" / "deal.md").resolve())
    assert refused.value.widened == [(deal, DEALS, Scope.public())]
    assert isinstance(refused.value, AccessError)
    assert deal in str(refused.value) and "--allow-widen" in str(refused.value)
    assert "C0DEALS → public" in str(refused.value)
    # Nothing half-done: the public lunch menu was not added either.
    assert scopes(ingestor) == {"Project Falcon": "C0DEALS"}
    assert "Project Falcon" not in visible_to(ingestor, "C0GENERAL")


def test_a_changed_document_is_refused_a_wider_scope_too(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    (tree / "private" / "deal.md").write_text(f"# Project Falcon\n\n{SECRET} Updated.\n")
    with pytest.raises(WideningRefused):
        ingestor.ingest_paths([tree / "private"], scope=Scope.public())
    assert scopes(ingestor) == {"Project Falcon": "C0DEALS"}
    assert "Updated" not in " ".join(c.text for d in ingestor.store.list_documents() for c in ingestor.store.chunks_of(d.doc_id))


def test_moving_a_document_to_another_channel_counts_as_widening(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    with pytest.raises(WideningRefused, match="C0DEALS → C0OTHER"):
        ingestor.ingest_paths([tree / "private"], scope=Scope.channels(["C0OTHER"]))
    assert visible_to(ingestor, "C0OTHER") == []


@pytest.mark.parametrize(("before", "after"), [
    (Scope.public(), DEALS),
    (Scope.channels(["C0DEALS", "C0LEGAL"]), DEALS),
])
def test_narrowing_needs_no_confirmation_and_widening_back_does(ingestor, tree, before, after):
    ingestor.ingest_paths([tree / "private"], scope=before)
    report = ingestor.ingest_paths([tree / "private"], scope=after)
    assert report.ok and report.rescoped == 1
    assert scopes(ingestor) == {"Project Falcon": str(after)}
    with pytest.raises(WideningRefused):
        ingestor.ingest_paths([tree / "private"], scope=before)
    assert scopes(ingestor) == {"Project Falcon": str(after)}


def test_allow_widen_widens(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    report = ingestor.ingest_paths([tree], scope=Scope.public(), allow_widen=True)
    assert (report.added, report.rescoped) == (1, 1)
    assert scopes(ingestor) == {"Project Falcon": "public", "Lunch": "public"}
    assert "Project Falcon" in visible_to(ingestor, "C0GENERAL")


def test_ingest_documents_refuses_before_writing_any_of_them(ingestor):
    first = _document("a", "Alpha", DEALS)
    ingestor.ingest_documents([first])
    fresh, widened = _document("b", "Bravo", Scope.public()), _document("a", "Alpha", Scope.public())
    with pytest.raises(WideningRefused) as refused:
        ingestor.ingest_documents(iter([fresh, widened]))
    assert refused.value.widened == [("docs/a", DEALS, Scope.public())]
    assert scopes(ingestor) == {"Alpha": "C0DEALS"}
    report = ingestor.ingest_documents([fresh, widened], allow_widen=True)
    assert (report.added, report.rescoped) == (1, 1)


def test_widening_is_judged_against_the_index_not_the_order_within_one_call(ingestor):
    ingestor.ingest_documents([_document("a", "Alpha", DEALS)])
    same_then_wider = [_document("a", "Alpha", DEALS, text="Alpha text version 1."), _document("a", "Alpha", Scope.public())]
    with pytest.raises(WideningRefused):
        ingestor.ingest_documents(same_then_wider)
    assert scopes(ingestor) == {"Alpha": "C0DEALS"}


def test_the_refusal_lists_at_most_twenty_documents_and_counts_the_rest(ingestor):
    ingestor.ingest_documents([_document(f"d{n:02}", f"Doc {n}", DEALS) for n in range(25)])
    with pytest.raises(WideningRefused) as refused:
        ingestor.ingest_documents([_document(f"d{n:02}", f"Doc {n}", Scope.public()) for n in range(25)])
    message = str(refused.value)
    assert len(refused.value.widened) == 25
    assert "docs/d19" in message and "docs/d20" not in message and "and 5 more" in message
    assert len(message.splitlines()) <= 23


AUDIENCES = ["C0AAA", "C0BBB", "G0CCC", "C0ZZZ", "D0DM"]
SCOPES = st.one_of(st.just(Scope.public()),
                   st.sets(st.sampled_from(["C0AAA", "C0BBB", "G0CCC"]), min_size=1).map(Scope.channels))


def _seen_by(scope: Scope) -> set[str]:
    return {a for a in AUDIENCES if filter_for(Audience.for_conversation(a)).allows(scope)}


@settings(max_examples=60)
@given(history=st.lists(SCOPES, min_size=1, max_size=4), changed=st.booleans())
def test_without_confirmation_no_conversation_ever_gains_sight_of_a_document(history, changed):
    """Attack: re-ingest one document under any sequence of scopes (its text changed or not).
    Every conversation that can see it at the end could see it after the first ingest, and an
    ingest is refused exactly when it would show the document to someone new."""
    embedder = HashingEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = LanceStore(Path(tmp) / "index", dimension=embedder.dimension, model_id=embedder.model_id)
        try:
            ingestor = Ingestor(store=store, embedder=embedder)
            ingestor.ingest_documents([_document("a", "Alpha", history[0])])
            first_seen = current = _seen_by(history[0])
            for n, scope in enumerate(history[1:], start=1):
                doc = _document("a", "Alpha", scope, text=f"Alpha text version {n if changed else 0}.")
                widens = not _seen_by(scope) <= current
                try:
                    ingestor.ingest_documents([doc])
                    assert not widens, f"{scope} was accepted over a document seen by {current}"
                    current = _seen_by(scope)
                except WideningRefused:
                    assert widens
                [info] = store.list_documents()
                assert _seen_by(info.scope) == current <= first_seen
        finally:
            store.close()


def _document(key: str, title: str, scope: Scope, *, text: str | None = None) -> Document:
    text = text or f"{title} text version 0."
    return Document(doc_id=document_id(Path(key)), title=title, source=f"docs/{key}", path=f"docs/{key}", text=text,
                    content_hash=content_hash(title=title, text=text, chunking=ChunkingOptions()),
                    scope=scope)


# -- symbolic links -------------------------------------------------------------------------------

def test_a_symlink_out_of_the_folder_is_skipped_not_followed(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    (tree / "public" / "falcon.md").symlink_to(tree / "private" / "deal.md")
    (tree / "public" / "deals").symlink_to(tree / "private", target_is_directory=True)
    report = ingestor.ingest_paths([tree / "public"], scope=Scope.public())
    assert report.ok and report.added == 1
    skipped = dict(report.skipped)
    assert set(skipped) == {str(tree / "public" / "falcon.md"), str(tree / "public" / "deals")}
    assert all("outside" in reason for reason in skipped.values())
    assert scopes(ingestor) == {"Project Falcon": "C0DEALS", "Lunch": "public"}


def test_a_symlink_inside_the_folder_is_the_document_it_points_to(ingestor, tree):
    ingestor.ingest_paths([tree / "private"], scope=DEALS)
    (tree / "public" / "falcon.md").symlink_to(tree / "private" / "deal.md")
    with pytest.raises(WideningRefused) as refused:
        ingestor.ingest_paths([tree], scope=Scope.public())
    assert [path for path, _, _ in refused.value.widened] == [str((tree / "private" / "deal.md").resolve())]


def test_a_symlink_named_explicitly_is_resolved_and_used(ingestor, tree, tmp_path):
    link = tmp_path / "falcon-link.md"
    link.symlink_to(tree / "private" / "deal.md")
    report = ingestor.ingest_paths([link], scope=DEALS)
    assert report.added == 1
    [doc] = ingestor.store.list_documents()
    assert doc.path == str((tree / "private" / "deal.md").resolve())
    with pytest.raises(WideningRefused):  # the same document, by any name
        ingestor.ingest_paths([link], scope=Scope.public())


# -- empty, unreadable and pruned files -----------------------------------------------------------

@pytest.mark.parametrize("emptied", [b"", b"  \n\t\n"])
def test_a_file_emptied_on_purpose_removes_its_document(ingestor, tree, emptied):
    ingestor.ingest_paths([tree], scope=DEALS)
    (tree / "private" / "deal.md").write_bytes(emptied)
    report = ingestor.ingest_paths([tree], scope=DEALS)
    assert report.ok and report.removed == 1 and report.unchanged == 1
    assert scopes(ingestor) == {"Lunch": "C0DEALS"}
    assert "Project Falcon" not in visible_to(ingestor, "C0DEALS")


def test_a_new_empty_file_is_skipped_not_failed(ingestor, tree):
    (tree / "public" / "todo.md").write_bytes(b"")
    report = ingestor.ingest_paths([tree], scope=DEALS)
    assert report.ok and report.added == 2 and report.removed == 0
    assert [path for path, _ in report.skipped] == [str((tree / "public" / "todo.md").resolve())]


def test_an_unresolvable_path_on_the_command_line_is_reported_and_the_rest_ingested(ingestor, tree, tmp_path):
    loop = tmp_path / "loop.md"
    loop.symlink_to(tmp_path / "loop2.md")
    (tmp_path / "loop2.md").symlink_to(loop)
    too_long = tmp_path / ("x" * 300 + ".md")
    report = ingestor.ingest_paths([loop, too_long, tree / "public"], scope=DEALS)
    assert report.added == 1
    assert {path for path, _ in report.failed} == {str(loop), str(too_long)}


def test_an_unreadable_entry_met_in_a_folder_walk_is_skipped_and_the_rest_ingested(ingestor, tree):
    loop = tree / "public" / "loop.md"
    loop.symlink_to(tree / "public" / "loop2.md")
    (tree / "public" / "loop2.md").symlink_to(loop)
    report = ingestor.ingest_paths([tree], scope=DEALS)
    assert report.ok and report.added == 2
    assert {path for path, _ in report.skipped} == {str(loop), str(tree / "public" / "loop2.md")}


def test_prune_counts_documents_removed_for_other_reasons_too(ingestor, tree):
    ingestor.ingest_paths([tree], scope=DEALS)
    (tree / "private" / "deal.md").write_text("# Project Falcon\n\n## Terms\n")  # headings only: removed
    (tree / "public" / "lunch.md").unlink()  # gone: pruned
    report = ingestor.ingest_paths([tree], scope=DEALS, prune=True)
    assert report.removed == 2
    assert ingestor.store.list_documents() == []


# -- one writer at a time -------------------------------------------------------------------------

def test_an_ingest_holds_the_index_write_lock_from_its_decision_to_its_last_write(ingestor, tree, tmp_path):
    """Between the widening check and the writes, another writer (the scheduler's re-ingest) must not
    change the index: it is told the index is busy for the whole ingest."""
    from knowledge.errors import IndexBusyError

    other = LanceStore(tmp_path / "index", dimension=ingestor.embedder.dimension, model_id=ingestor.embedder.model_id,
                       write_lock_timeout_s=0)
    attempts = []

    def try_to_write():
        try:
            with other.exclusive_writer():
                attempts.append("wrote")
        except IndexBusyError:
            attempts.append("busy")

    def another_writer(done, total):  # the lock is re-entrant in a thread: try from another one
        thread = threading.Thread(target=try_to_write)
        thread.start()
        thread.join()

    try:
        ingestor.ingest_paths([tree], scope=DEALS, progress=another_writer)
        assert attempts == ["busy", "busy"]
        try_to_write()  # released at the end
        assert attempts[-1] == "wrote"
    finally:
        other.close()
