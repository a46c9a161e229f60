"""An endorsed answer is learned only while what it was drawn from is still indexed, unchanged and
learnable: a document narrowed, changed or removed after the 👍 keeps its old text out of datasets."""

from __future__ import annotations

from bot.app import build_services
from bot.config import load_settings
from bot.current_documents import IndexedDocuments
from knowledge.access import Scope
from tests.training.test_dataset import an_answer, record
from training.dataset import build_dataset
from training.feedback import UsedPassage


def _passage_of(store, path, *, cited_as=1):
    [doc] = [d for d in store.list_documents() if d.path == str(path)]
    [chunk] = store.chunks_of(doc.doc_id)
    return UsedPassage(doc_id=doc.doc_id, chunk_id=chunk.chunk_id, title=doc.title, source=doc.source,
                       text=chunk.text, scope=tuple(doc.scope.as_list()), score=0.5, cited_as=cited_as,
                       quote=chunk.text)


def test_narrowed_changed_and_removed_documents_leave_the_dataset(tmp_path, hashing_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("stays", "narrowed", "changed", "removed"):
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\nThe {name} policy gives ten days a year.\n")
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=hashing_embedder)
    try:
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        store = services.store
        answers = {}
        for name in ("stays", "narrowed", "changed", "removed"):
            passage = _passage_of(store, (docs / f"{name}.md").resolve())
            answers[name] = record(services.feedback, an_answer(f"How many days does the {name} policy give?",
                                                                "Ten days a year [1].", (passage,)), up=3)
        # After the votes: one document narrowed to a channel, one rewritten, one deleted.
        services.ingestor.ingest_paths([docs / "narrowed.md"], scope=Scope.channels(["C0HR"]))
        (docs / "changed.md").write_text("# Changed\n\nThe changed policy gives five days a year.\n")
        services.ingestor.ingest_paths([docs / "changed.md"], scope=Scope.public())
        [removed] = [d for d in store.list_documents() if d.path.endswith("removed.md")]
        store.delete_document(removed.doc_id)

        plan = services.training_plan().dataset
        assert isinstance(plan.documents, IndexedDocuments)
        report = build_dataset(services.feedback, tmp_path / "out", plan, write=False)
        assert report.excluded["passage_changed"] == 3
        assert report.decisions[answers["stays"].interaction_id] in {"train", "heldout"}
        for name in ("narrowed", "changed", "removed"):
            assert report.decisions[answers[name].interaction_id] == "passage_changed"

        # Without the check (the recorded scopes only), all four would have been learned.
        unchecked = build_dataset(services.feedback, tmp_path / "out", plan.__class__(), write=False)
        assert unchecked.excluded["passage_changed"] == 0 and unchecked.eligible == 4
    finally:
        services.close()
