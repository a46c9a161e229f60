"""Copying an index between stores: every chunk with its vector and scope, resumable, verified."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.access import Scope
from knowledge.migration import compare_listings, migrate
from knowledge.types import DocumentInfo
from knowledge.stores.lancedb import LanceStore
from tests.knowledge.store_contract import DIMENSION, ENG, FIN, SECRET, audience, chunks, request, vector_for


def lance(path) -> LanceStore:
    return LanceStore(path, dimension=DIMENSION, model_id="test-model")


@pytest.fixture
def source(tmp_path):
    store = lance(tmp_path / "source")
    store.upsert_documents({
        f"doc{i}": chunks(f"doc{i}", [f"document {i} part one", f"document {i} part two"], Scope.public())
        for i in range(6)
    })
    store.upsert_documents({"fin": chunks("fin", [SECRET], Scope.channels([FIN]))})
    store.optimize()
    yield store
    store.close()


def test_migration_copies_every_chunk_with_its_vector_and_scope(source, tmp_path):
    target = lance(tmp_path / "target")
    report = migrate(source, target, batch_chunks=4)
    assert report.verified and not report.mismatches
    assert (report.documents, report.chunks, report.copied_chunks, report.target_chunks) == (7, 13, 13, 13)
    copied = target.chunks_of("doc3")
    np.testing.assert_allclose(np.asarray(copied[1].vector), vector_for("document 3 part two"), atol=1e-6)
    # The scope came along: the private document still reaches only its channel.
    target.optimize()
    assert target.search(request(SECRET), audience(FIN))[0].chunk.doc_id == "fin"
    assert all(h.chunk.doc_id != "fin" for h in target.search(request(SECRET), audience(ENG)))
    target.close()


def test_an_interrupted_migration_resumes_without_copying_twice(source, tmp_path):
    target = lance(tmp_path / "target")

    def stop_after_first_batch(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(source, target, batch_chunks=4, progress=stop_after_first_batch)
    first = target.count()
    assert 0 < first < 13
    report = migrate(source, target, batch_chunks=4)
    assert report.verified
    assert report.copied_chunks == 13 - first and report.skipped_documents == first // 2
    assert target.count() == 13
    target.close()


def test_a_changed_source_is_copied_again_and_target_only_documents_are_kept(source, tmp_path):
    target = lance(tmp_path / "target")
    migrate(source, target)
    # The source changes after the copy: the next run copies the new version and verifies it.
    source.upsert_documents({"doc0": chunks("doc0", ["a new first part", "b", "c"], Scope.public())})
    report = migrate(source, target)
    assert report.verified and report.copied_documents == 1 and [c.text for c in target.chunks_of("doc0")] == [
        "a new first part", "b", "c"]
    # A document only the target holds is reported and kept, not deleted.
    target.upsert_documents({"local": chunks("local", ["only here"], Scope.public())})
    assert migrate(source, target).extra_in_target == ["local"]
    target.close()


def info(doc_id: str, *, chunks: int = 2, content_hash: str = "h", scope: Scope = Scope.public()) -> DocumentInfo:
    return DocumentInfo(doc_id=doc_id, title=doc_id, source="", path="", content_hash=content_hash, scope=scope,
                        chunks=chunks)


def test_verification_names_each_document_that_differs():
    source = [info("same"), info("gone"), info("short", chunks=3), info("old", content_hash="new"),
              info("wider", scope=Scope.channels([FIN]))]
    target = [info("same"), info("short", chunks=2), info("old", content_hash="old"), info("wider"), info("extra")]
    mismatches, extra = compare_listings(source, target)
    assert mismatches == {
        "gone": "missing from the target",
        "short": "2 chunks in the target, 3 in the source",
        "old": "a different version (content or scope) in the target",
        "wider": "a different version (content or scope) in the target",
    }
    assert extra == ["extra"]
