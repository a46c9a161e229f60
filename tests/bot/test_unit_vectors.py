"""Quotable units are embedded at ingest and read back when answering: same picks, no model call."""

from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest

from bot.answering import AnswerDeps, answer_question
from bot.app import build_services
from bot.config import load_settings
from bot.generation.extractive import passage_units, quotable_units
from bot.generation.unit_vectors import UnitVectors
from knowledge.access import Audience, Scope
from knowledge.types import Passage

HANDBOOK_PAGE = """# Time off

## Vacation

Vacation is earned from your first day.

| Years of service | Days per year |
|---|---|
| Less than 3 years | 18 days |
| 3 years or more | 22 days |

## Sick days

Every employee receives 8 sick days at the start of each calendar year.
You do not need a doctor's note for absences of three days or fewer.
"""


class CountingEmbedder:
    """The real model, counting the texts it is asked to embed (the model is not lorebot's code)."""

    def __init__(self, model):
        self.model, self.texts = model, []
        self.model_id, self.dimension = model.model_id, model.dimension
        self.max_tokens = getattr(model, "max_tokens", 256)

    def encode(self, texts):
        self.texts += list(texts)
        return self.model.encode(texts)


def test_vectors_are_the_models_and_are_remembered_on_disk(tmp_path, hashing_embedder):
    path = tmp_path / "units.sqlite3"
    texts = ["Ten days a year.", "Sick days: 8.", "Ten days a year."]
    first = UnitVectors(hashing_embedder, path)
    got = first.vectors(texts)
    np.testing.assert_allclose(got, hashing_embedder.encode(texts), atol=1e-6)
    first.close()
    before = hashing_embedder.encoded
    again = UnitVectors(hashing_embedder, path).vectors(texts[:2])  # a new process: read from the file
    assert hashing_embedder.encoded == before
    np.testing.assert_allclose(again, got[:2], atol=1e-6)
    assert UnitVectors(hashing_embedder).vectors([]).shape == (0, hashing_embedder.dimension)


def test_a_file_that_cannot_be_written_only_costs_speed(tmp_path, hashing_embedder):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    units = UnitVectors(hashing_embedder, blocker / "units.sqlite3")
    np.testing.assert_allclose(units.vectors(["Eight sick days."]), hashing_embedder.encode(["Eight sick days."]))
    assert units.path is None  # gave up on the file, kept answering


def test_a_corrupt_file_only_costs_speed(tmp_path, hashing_embedder):
    path = tmp_path / "units.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    units = UnitVectors(hashing_embedder, path)
    np.testing.assert_allclose(units.vectors(["Eight sick days."]), hashing_embedder.encode(["Eight sick days."]))
    assert units.path is None  # the corrupt file was given up on, not written over or read from
    assert path.read_bytes() == b"this is not a database" * 100


@pytest.fixture
def page_services(tmp_path, real_embedder):
    counting = CountingEmbedder(real_embedder)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "time-off.md").write_text(HANDBOOK_PAGE)
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=counting)
    report = services.ingestor.ingest_paths([tmp_path / "docs"], scope=Scope.public())
    assert report.ok
    yield services, counting
    services.close()


def test_ingest_embeds_the_units_and_answering_reads_them(page_services):
    services, counting = page_services
    assert (services.settings.data_dir / "unit_vectors.sqlite3").exists()
    stored = {r[0] for r in sqlite3.connect(services.settings.data_dir / "unit_vectors.sqlite3").execute(
        "SELECT key FROM unit_vectors")}
    assert len(stored) >= 5  # sentences and table rows, with their headings

    question = "how many vacation days do I get in my first years?"
    retrieval = services.retriever.retrieve(question, Audience.for_conversation("C0GENERAL"))
    counting.texts.clear()
    answer = answer_question(question, Audience.for_conversation("C0GENERAL"),
                             AnswerDeps(retriever=services.retriever, generator=services.generator))
    asked_of_the_model = [t for t in counting.texts if t != question]
    assert asked_of_the_model == []  # every unit came from the ingest
    assert "18 days" in answer.text

    # The same choice as embedding every unit now.
    live = dataclasses.replace(services.generator, unit_vectors=None)
    same = answer_question(question, Audience.for_conversation("C0GENERAL"),
                           AnswerDeps(retriever=services.retriever, generator=live))
    assert same.text == answer.text
    assert retrieval.passages  # the answer was drawn from passages, not "not found"


def test_ingest_can_leave_units_to_answer_time(tmp_path, hashing_embedder):
    settings = load_settings(data_dir=tmp_path / "data").model_copy(update={"answer_unit_vectors": False})
    services = build_services(settings, embedder=hashing_embedder)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(HANDBOOK_PAGE)
    try:
        assert services.ingestor.after_write is None
        services.ingestor.ingest_paths([tmp_path / "docs"], scope=Scope.public())
        assert not (tmp_path / "data" / "unit_vectors.sqlite3").exists()
    finally:
        services.close()


def test_a_passage_joined_from_chunks_reads_its_units_chunk_by_chunk():
    from knowledge.retrieval import passage_pieces
    from knowledge.types import StoredChunk

    def chunk(position, heading, text):
        return StoredChunk(f"d:{position}", "d", position, "Guide", (heading,), text, "g.md", "g.md",
                           Scope.public(), "h", "e")

    first = chunk(0, "Setup", "Install it with pip. Then run the demo once.")
    second = chunk(1, "Usage", "Then run the demo once. Ask it a question in a thread.")
    pieces = passage_pieces([first, second])
    assert pieces[1].text == "Ask it a question in a thread."  # the overlap is read once
    passage = Passage("d", "d:0", "Guide", "g.md", ("Setup",), "ignored when pieces are given",
                      Scope.public(), 1.0, 0.5, pieces=tuple(pieces))
    scored = [u.scored for u in passage_units(passage)]
    assert scored == ["Setup: Install it with pip.", "Setup: Then run the demo once.",
                      "Usage: Ask it a question in a thread."]
    assert [u.shown for u in quotable_units("Install it with pip.")] == ["Install it with pip."]


def test_pruning_forgets_the_units_of_deleted_text_and_keeps_the_rest(tmp_path, hashing_embedder):
    settings = load_settings(data_dir=tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "time-off.md").write_text(HANDBOOK_PAGE)
    services = build_services(settings, embedder=hashing_embedder)
    file = settings.data_dir / "unit_vectors.sqlite3"

    def stored() -> set[str]:
        with sqlite3.connect(file) as db:
            return {key for (key,) in db.execute("SELECT key FROM unit_vectors")}

    try:
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        handbook = stored()
        (docs / "layoffs.md").write_text("# Plans\n\nLayoffs are planned for May in the Berlin office.\n")
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        secret = stored() - handbook
        assert secret  # the new page's units, embedded at ingest
        (docs / "layoffs.md").unlink()
        services.ingestor.ingest_paths([docs], scope=Scope.public(), prune=True)  # the page is gone
        assert secret <= stored()  # until pruned

        assert services.unit_vectors.prune(services.store.export_documents()) == len(secret)

        assert stored() == handbook
        before = hashing_embedder.encoded
        answer = answer_question("how many vacation days do I get in my first years?",
                                 Audience.for_conversation("C0GENERAL"),
                                 AnswerDeps(retriever=services.retriever, generator=services.generator))
        assert "18 days" in answer.text
        assert hashing_embedder.encoded - before == 1  # the question only: the handbook's units were kept
    finally:
        services.close()


def test_pruning_keeps_vectors_stored_while_it_ran(tmp_path, hashing_embedder):
    units = UnitVectors(hashing_embedder, tmp_path / "units.sqlite3")
    units.vectors(["Old sentence nobody indexes."])

    def index_during_the_prune():
        yield {}
        units.vectors(["A sentence ingested meanwhile."])  # stored after the prune listed the file
        yield {}

    assert units.prune(index_during_the_prune()) == 1
    before = hashing_embedder.encoded
    units.vectors(["A sentence ingested meanwhile."])
    assert hashing_embedder.encoded == before  # still there, not embedded again


def test_a_pruned_vector_leaves_no_bytes_in_the_files(tmp_path, hashing_embedder):
    units = UnitVectors(hashing_embedder, tmp_path / "units.sqlite3")
    secret = "The root password for the db box is hunter2-XYZZY."
    units.vectors([secret] + [f"filler sentence {i}" for i in range(200)])
    key = units._key(secret).encode()
    assert any(key in f.read_bytes() for f in tmp_path.iterdir())

    assert units.prune([]) == 201  # the index holds none of it any more

    assert not any(key in f.read_bytes() for f in tmp_path.iterdir())  # the file, its WAL, its shared memory
    units.close()
    assert not any(key in f.read_bytes() for f in tmp_path.iterdir())
