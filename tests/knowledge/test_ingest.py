"""Incremental ingest: unchanged, changed, re-scoped, pruned and failed files."""

from __future__ import annotations

import pytest

from knowledge.access import Audience, Scope, filter_for
from knowledge.stores.base import SearchRequest

ENG = Scope.channels(["C0ENG"])


@pytest.fixture
def docs(tmp_path):
    root = tmp_path / "docs"
    (root / "nested").mkdir(parents=True)
    (root / "runbook.md").write_text("# Runbook\n\n## Paging\n\nThe pager escalates after seven minutes.\n")
    (root / "nested" / "deploys.md").write_text("# Deploys\n\nDeploys freeze on Fridays after noon.\n")
    (root / "notes.txt").write_text("Rollback uses the revert button in the console.\n")
    return root


def texts_for(ingestor, channel: str, query: str) -> list[str]:
    vector = ingestor.embedder.encode([query])[0]
    hits = ingestor.store.search(SearchRequest(text=query, vector=vector, k=20), filter_for(Audience.for_conversation(channel)))
    return [h.chunk.text for h in hits]


def test_first_ingest_adds_every_file_of_a_folder_recursively(ingestor, docs):
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert (report.added, report.updated, report.unchanged, report.failed) == (3, 0, 0, [])
    assert report.chunks_written == report.chunks_embedded > 0
    assert {d.title for d in ingestor.store.list_documents()} == {"Runbook", "Deploys", "Notes"}


def test_reingesting_unchanged_files_does_no_embedding_work(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG)
    encoded = ingestor.embedder.encoded
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert (report.added, report.updated, report.unchanged, report.chunks_written) == (0, 0, 3, 0)
    assert ingestor.embedder.encoded == encoded


def test_a_changed_file_replaces_its_chunks_and_reuses_unchanged_vectors(ingestor, docs):
    (docs / "runbook.md").write_text(
        "# Runbook\n\n## Paging\n\nThe pager escalates after seven minutes.\n\n## Severity\n\nSEV1 means customers are down.\n"
    )
    ingestor.ingest_paths([docs], scope=ENG)
    (docs / "runbook.md").write_text(
        "# Runbook\n\n## Paging\n\nThe pager escalates after twelve minutes.\n\n## Severity\n\nSEV1 means customers are down.\n"
    )
    encoded = ingestor.embedder.encoded
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert (report.updated, report.unchanged) == (1, 2)
    assert report.chunks_written == 2 and report.chunks_embedded == 1  # the Severity chunk kept its vector
    assert ingestor.embedder.encoded == encoded + 1
    found = texts_for(ingestor, "C0ENG", "pager escalates minutes")
    assert any("twelve" in t for t in found) and not any("seven" in t for t in found)


def test_a_new_scope_rescopes_without_reembedding(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG)
    encoded = ingestor.embedder.encoded
    # C0OPS gains the document: a widening, confirmed (test_ingest_widening.py has the refusals).
    report = ingestor.ingest_paths([docs / "notes.txt"], scope=Scope.channels(["C0OPS"]), allow_widen=True)
    assert (report.updated, report.rescoped, report.chunks_embedded) == (1, 1, 0)
    assert ingestor.embedder.encoded == encoded
    assert any("revert" in t for t in texts_for(ingestor, "C0OPS", "rollback revert button"))
    assert not any("revert" in t for t in texts_for(ingestor, "C0ENG", "rollback revert button"))


def test_prune_removes_documents_whose_files_are_gone_under_the_given_roots(ingestor, docs, tmp_path):
    other = tmp_path / "other.md"
    other.write_text("# Other\n\nOutside the folder.\n")
    ingestor.ingest_paths([docs], scope=ENG)
    ingestor.ingest_paths([other], scope=ENG)
    (docs / "nested" / "deploys.md").unlink()
    other.unlink()
    report = ingestor.ingest_paths([docs], scope=ENG, prune=True)
    assert report.removed == 1  # other.md is gone too, but it is not under the pruned root
    assert {d.title for d in ingestor.store.list_documents()} == {"Runbook", "Notes", "Other"}


def test_without_prune_nothing_is_removed(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG)
    (docs / "notes.txt").unlink()
    assert ingestor.ingest_paths([docs], scope=ENG).removed == 0
    assert len(ingestor.store.list_documents()) == 3


def test_a_bad_file_is_reported_and_the_rest_is_ingested(ingestor, docs):
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")
    report = ingestor.ingest_paths([docs, docs / "missing.md"], scope=ENG)
    assert report.added == 3
    failed = dict(report.failed)
    assert set(failed) == {str(docs / "broken.pdf"), str(docs / "missing.md")}
    assert [p for p, _ in report.skipped] == [str(docs / "image.png")]
    assert not report.ok


def test_a_file_that_breaks_keeps_its_previous_version(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG)
    (docs / "runbook.md").write_bytes(b"\x00\x01\x02 binary garbage")
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert [p for p, _ in report.failed] == [str(docs / "runbook.md")]
    assert any("seven minutes" in t for t in texts_for(ingestor, "C0ENG", "pager escalates"))


def test_source_url_names_each_file_of_a_folder(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG, source_url="https://wiki.example/handbook/")
    sources = {d.source for d in ingestor.store.list_documents()}
    assert "https://wiki.example/handbook/nested/deploys.md" in sources


def test_summary_line_counts_everything(ingestor, docs):
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert report.summary().startswith("3 added, 0 updated, 0 unchanged, 0 removed, 0 failed; ")


def test_progress_counts_every_file_and_reaches_the_end_when_one_fails(ingestor, docs):
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    seen = []
    report = ingestor.ingest_paths([docs], scope=ENG, progress=lambda done, total: seen.append((done, total)))
    assert len(report.failed) == 1 and report.added == 3
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_prune_keeps_the_documents_of_a_root_that_is_gone(ingestor, docs, tmp_path):
    ingestor.ingest_paths([docs], scope=ENG)
    moved = tmp_path / "docs-renamed"
    docs.rename(moved)
    report = ingestor.ingest_paths([docs], scope=ENG, prune=True)
    assert report.removed == 0 and [reason for _, reason in report.failed] == ["file not found"]
    assert len(ingestor.store.list_documents()) == 3


def test_a_file_of_headings_only_fails_and_takes_its_old_text_with_it(ingestor, docs):
    ingestor.ingest_paths([docs], scope=ENG)
    (docs / "runbook.md").write_text("# Runbook\n\n## Paging\n")
    report = ingestor.ingest_paths([docs], scope=ENG)
    assert report.failed == [(str((docs / "runbook.md").resolve()), "no text to index (headings only)")]
    assert report.removed == 1 and report.added == 0
    assert "The pager escalates after seven minutes." not in " ".join(texts_for(ingestor, "C0ENG", "pager escalates"))
    assert len(ingestor.store.list_documents()) == 2
