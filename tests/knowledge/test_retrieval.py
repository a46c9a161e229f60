"""Retrieval on the bundled handbook with the real embedding model: the right document, for the right audience."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import knowledge.retrieval as retrieval_module
from knowledge.access import Audience, Scope, filter_for
from knowledge.errors import AccessError
from knowledge.query_words import QueryVocabulary
from knowledge.retrieval import Retriever, collapse_by_document
from knowledge.stores.lancedb import LanceStore
from knowledge.types import ScoredChunk, StoredChunk
from tests.knowledge.store_contract import DIMENSION, chunks

KNOWN = [
    ("C0GENERAL", "what's the daily meal allowance when I travel for work?", "public/expenses-and-travel.md"),
    ("C0GENERAL", "how do I get my laptop fixed or replaced?", "public/it-help-and-laptop-policy.html"),
    ("C0GENERAL", "which days are we expected in the Boulder office?", "public/remote-work-and-office-hours.html"),
    ("C0ENGINEER", "how do I roll back a bad deploy?", "engineering/deployment-and-release-process.html"),
    ("C0ENGINEER", "what caused the contour tile cache outage?", "engineering/postmortem-2024-11-contour-tile-cache-outage.md"),
    ("C0FINANCE", "what do we need to finish before the books close each quarter?", "finance/quarter-close-checklist.pdf"),
    ("C0PEOPLE", "how is a harassment complaint investigated?", "hr/employee-relations-investigations-procedure.md"),
]


def _demo_questions(handbook_dir):
    spec = json.loads((handbook_dir / "channels.json").read_text())
    return [(q["channel"], q["question"], q["expect_doc"]) for q in spec["questions"] if q["expect_doc"]]


def _top_source(services, channel, question, handbook_dir):
    passages, _ = services.retriever.search(question, Audience.for_conversation(channel), k=3)
    return str((passages[0].source)).removeprefix(str(handbook_dir.resolve()) + "/")


@pytest.mark.parametrize("channel,question,expected", KNOWN)
def test_known_questions_find_their_document_first(handbook_services, handbook_dir, channel, question, expected):
    assert _top_source(handbook_services, channel, question, handbook_dir) == expected


def test_demo_questions_find_their_document_first(handbook_services, handbook_dir):
    for channel, question, expected in _demo_questions(handbook_dir):
        assert _top_source(handbook_services, channel, question, handbook_dir) == expected, question


def test_found_needs_a_passage_above_the_relevance_floor(handbook_services):
    retrieval = handbook_services.retriever.retrieve("how do I bake sourdough bread?", Audience.for_conversation("C0GENERAL"))
    assert not retrieval.found
    retrieval = handbook_services.retriever.retrieve("how many vacation days do I get?", Audience.for_conversation("C0GENERAL"))
    assert retrieval.found
    assert all(p.similarity >= handbook_services.retriever.options.min_similarity for p in retrieval.passages)


def _with_options(retriever: Retriever, **options) -> Retriever:
    import dataclasses

    return dataclasses.replace(retriever, options=dataclasses.replace(retriever.options, **options))


def test_a_passage_holding_every_word_of_the_question_counts_from_a_lower_floor(handbook_services):
    # "when's all hands" embeds far from the line that answers it, but that line holds its words.
    retriever, general = handbook_services.retriever, Audience.for_conversation("C0GENERAL")
    retrieval = retriever.retrieve("when's all hands", general)
    assert retrieval.found
    top = retrieval.passages[0]
    assert retriever.options.min_similarity_all_words <= top.similarity < retriever.options.min_similarity
    assert "first Thursday of every month" in top.text
    # Without the second floor, nothing reaches the first.
    off = _with_options(retriever, min_similarity_all_words=retriever.options.min_similarity)
    assert not off.retrieve("when's all hands", general).found


def test_every_word_in_a_document_the_channel_may_not_see_finds_nothing(handbook_services):
    # hr/ holds every word of this question; #sales may not read it, and public documents do not
    # hold them all: the lower floor must not open a way around the scope.
    retrieval = handbook_services.retriever.retrieve("how long do we keep investigation case files",
                                                     Audience.for_conversation("C0SALES"))
    assert all(p.scope.is_public for p in retrieval.passages)
    assert all(p.similarity >= handbook_services.retriever.options.min_similarity for p in retrieval.passages)
    assert "caselog" not in " ".join(p.text.lower() for p in retrieval.passages)


def test_retrieval_reports_the_searched_question_and_its_unfamiliar_words(handbook_services):
    retrieval = handbook_services.retriever.retrieve("whats the wifi pasword at the boulder ofice",
                                                     Audience.for_conversation("C0GENERAL"))
    assert retrieval.question == "whats the wifi pasword at the boulder ofice"
    assert retrieval.searched_as == "whats the wifi password at the boulder office"
    assert retrieval.unfamiliar_words == ("wifi",)


def test_results_carry_title_source_text_score_and_one_passage_per_document(handbook_services):
    passages, timings = handbook_services.retriever.search("on-call pager escalation", Audience.for_conversation("C0ENGINEER"), k=5)
    assert len(passages) == 5 and set(timings) == {"mend", "embed", "search"}
    assert len({p.doc_id for p in passages}) == 5
    assert all(p.title and p.source and p.text for p in passages)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_every_mode_respects_the_audience(handbook_services, mode):
    passages, _ = handbook_services.retriever.search("vendor payment approval CFO second director", Audience.for_conversation("C0ENGINEER"), k=10, mode=mode)
    assert passages  # something was searched: public and engineering documents match these words
    assert all(p.scope.is_public or "C0ENGINEER" in p.scope.labels for p in passages)


def test_an_empty_audience_is_refused_before_any_search(handbook_services):
    with pytest.raises(AccessError):
        handbook_services.retriever.search("anything", Audience(""))


def _hit(doc, position, score, text):
    chunk = StoredChunk(chunk_id=f"{doc}:{position}", doc_id=doc, position=position, title=doc, heading_path=(),
                        text=text, source=doc, path=doc, scope=Scope.public(), content_hash="h", embedding_hash="e")
    return ScoredChunk(chunk=chunk, score=score, similarity=score)


def test_strong_chunks_of_one_document_join_its_passage_in_reading_order():
    hits = [_hit("a", 3, 0.9, "three four five"), _hit("b", 0, 0.8, "bee"), _hit("a", 2, 0.7, "one two three four"),
            _hit("a", 9, 0.1, "weak")]
    passages = collapse_by_document(hits)
    assert [p.doc_id for p in passages] == ["a", "b"]
    assert passages[0].text == "one two three four\nfive"  # overlap removed, weak chunk left out
    assert passages[0].chunk_id == "a:3" and passages[0].also_matched == ("a:2",)


def test_an_empty_question_is_refused(handbook_services):
    from knowledge.errors import QuestionError

    with pytest.raises(QuestionError):
        handbook_services.retriever.search(" ?! ", Audience.for_conversation("C0GENERAL"))


def test_typos_and_shorthand_are_mended_before_searching(handbook_services):
    retriever = handbook_services.retriever
    assert retriever.mend("how many ppl work here", Audience.for_conversation("C0SALES")) == "how many people work here"
    retrieval = retriever.retrieve("how many ppl work here", Audience.for_conversation("C0SALES"))
    assert retrieval.found
    assert retrieval.passages[0].source.endswith("public/company-overview.md")


def test_mending_uses_only_words_of_documents_the_channel_may_see(handbook_services):
    # "contingency" is a word of a finance-only document: #finance gets it mended, #general does not.
    retriever = handbook_services.retriever
    question = "how big is the contingncy reserve"
    assert retriever.mend(question, Audience.for_conversation("C0FINANCE")) == "how big is the contingency reserve"
    assert retriever.mend(question, Audience.for_conversation("C0GENERAL")) == question


def test_the_vocabulary_is_kept_current_beside_the_questions_and_questions_never_refresh_it(tmp_path,
                                                                                             hashing_embedder):
    import threading

    from bot.app import build_services
    from bot.config import load_settings

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Office\n\nThe office opens at nine.\n")
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=hashing_embedder)
    stopping = threading.Event()
    question, mended = "is there a gym reimbursment", "is there a gym reimbursement"
    try:
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        retriever, everyone = services.retriever, Audience.for_conversation("C0GENERAL")
        assert retriever.mend(question, everyone) == question  # no such word yet; the first question built it

        (docs / "b.md").write_text("# Perks\n\nThe gym reimbursement is 60 USD a month.\n")
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        assert retriever.mend(question, everyone) == question  # a question does not read the index's words

        retriever.keep_vocabulary_current(stopping, every_s=0.05)  # as the bot does
        wait_for(lambda: retriever.mend(question, everyone) == mended)

        # Narrowed to #people while the bot runs: no longer lent to #general, still to #people.
        services.ingestor.ingest_paths([docs], scope=Scope.channels(["C0PEOPLE"]))
        wait_for(lambda: retriever.mend(question, everyone) == question)
        assert retriever.mend(question, Audience.for_conversation("C0PEOPLE")) == mended
    finally:
        stopping.set()
        services.close()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the vocabulary was not brought up to date in the background"
        time.sleep(0.02)


def test_mending_can_be_turned_off(handbook_services):
    import dataclasses

    retriever = dataclasses.replace(handbook_services.retriever,
                                    options=dataclasses.replace(handbook_services.retriever.options,
                                                                mend_questions=False))
    assert retriever.mend("how many ppl work here", Audience.for_conversation("C0SALES")) == "how many ppl work here"


def _services_with(tmp_path, hashing_embedder, files: dict[str, str], *, scope=None):
    from bot.app import build_services
    from bot.config import load_settings

    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    for name, text in files.items():
        (docs / name).write_text(text)
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=hashing_embedder)
    services.ingestor.ingest_paths([docs], scope=scope or Scope.public())
    return services, docs


def test_a_document_narrowed_to_a_private_channel_no_longer_mends_a_public_channels_question(tmp_path, hashing_embedder):
    services, docs = _services_with(tmp_path, hashing_embedder, {
        "office.md": "# Office\n\nThe office opens at nine.\n",
        "plan.md": "# Plan\n\nThe gym reimbursement for the leadership offsite is 900 USD.\n",
    })
    try:
        retriever = services.retriever
        everyone, secret = Audience.for_conversation("C0GENERAL"), Audience.for_conversation("C0SECRET")
        question = "is there a gym reimbursment"
        assert retriever.mend(question, everyone) == "is there a gym reimbursement"  # public for now

        assert services.ingestor.ingest_paths([docs / "plan.md"], scope=Scope.channels(["C0SECRET"])).rescoped == 1
        done = retriever.refresh_vocabulary()
        assert (done.documents_rescoped, done.documents_read, done.full_read) == (1, 0, False)
        assert retriever.mend(question, everyone) == question  # as if it had never been public
        assert retriever.mend(question, secret) == "is there a gym reimbursement"

        (docs / "plan.md").unlink()
        services.ingestor.ingest_paths([docs], scope=Scope.public(), prune=True)
        done = retriever.refresh_vocabulary()
        assert done.documents_removed == 1
        assert retriever.mend(question, secret) == question  # as if it had never been
    finally:
        services.close()


def test_a_refresh_reads_only_the_documents_that_changed(tmp_path, hashing_embedder):
    files = {f"note-{i:02}.md": f"# Note {i}\n\nNote {i} is about topic{'abcdefghij'[i % 10]}.\n" for i in range(40)}
    services, docs = _services_with(tmp_path, hashing_embedder, files)
    try:
        retriever, everyone = services.retriever, Audience.for_conversation("C0GENERAL")
        first = retriever.refresh_vocabulary()
        assert (first.documents, first.documents_read, first.full_read) == (40, 40, True)
        again = retriever.refresh_vocabulary()
        assert (again.documents_read, again.documents_removed, again.documents_rescoped) == (0, 0, 0)

        (docs / "note-07.md").write_text("# Note 7\n\nNote 7 is about the gym reimbursement.\n")
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        done = retriever.refresh_vocabulary()
        assert (done.documents, done.documents_read, done.full_read) == (40, 1, False)
        assert retriever.mend("is there a gym reimbursment", everyone) == "is there a gym reimbursement"
    finally:
        services.close()


class _TokenizerWords:
    """An embedder whose tokenizer knows one word: mending into words of another stem is on."""

    class tokenizer:
        @staticmethod
        def get_vocab():
            return {"launch": 0}


POOL = ["reimbursement", "reimbursements", "vendor", "vendors", "nightingale", "project", "projects", "people",
        "ppl", "launch", "launches", "acquisition", "quillmark", "invoice", "invoices", "wiki"]
QUESTIONS = ["reimbursment vendro", "nightngale projct ppl", "launchs acquisiton quilmark", "invoce peopel wikis",
             "reimbursemnts vendorss", "projecs invoicess"]


def _operations():
    doc_ids = st.sampled_from(["d1", "d2", "d3", "d4", "d5"])
    scopes = st.sampled_from([("public",), ("C0A",), ("C0B",), ("C0A", "C0B")])
    texts = st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=5).map(" ".join), min_size=1, max_size=3)
    change = st.one_of(
        st.tuples(st.just("put"), doc_ids, scopes, texts),
        st.tuples(st.just("rescope"), doc_ids, scopes),
        st.tuples(st.just("remove"), doc_ids),
    )
    # Each change is followed by a refresh, or not (then several changes meet one refresh).
    return st.lists(st.tuples(change, st.booleans()), max_size=10).map(
        lambda steps: [step for change, refresh in steps for step in [change, *[("refresh",)] * refresh]])


@settings(max_examples=60, deadline=None)
@given(_operations(), st.booleans())
def test_refreshing_after_any_changes_mends_as_a_vocabulary_built_from_the_documents_there_are(operations, read_whole_index):
    # Documents added, edited, rescoped and removed in a real index, refreshed now and then, a few
    # at a time or (``read_whole_index``) by reading the whole index: after each refresh, every
    # channel's question is mended exactly as from a vocabulary built from the documents there are.
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(retrieval_module, "VOCABULARY_FULL_READ_AT", 0 if read_whole_index else 10**6):
        store = LanceStore(Path(tmp) / "index", dimension=DIMENSION, model_id="test-model")
        retriever, documents = Retriever(store=store, embedder=_TokenizerWords()), {}
        try:
            for operation in [*operations, ("refresh",)]:
                if operation[0] == "put":
                    _, doc_id, labels, texts = operation
                    store.upsert_documents({doc_id: chunks(doc_id, texts, Scope.from_labels(labels))})
                    documents[doc_id] = (labels, texts)
                elif operation[0] == "rescope" and operation[1] in documents:
                    _, doc_id, labels = operation
                    store.rescope_document(doc_id, Scope.from_labels(labels))
                    documents[doc_id] = (labels, documents[doc_id][1])
                elif operation[0] == "remove" and operation[1] in documents:
                    store.delete_document(operation[1])
                    del documents[operation[1]]
                elif operation[0] == "refresh":
                    retriever.refresh_vocabulary()
                    scratch = QueryVocabulary.build(
                        [(labels, text) for labels, texts in documents.values() for text in texts],
                        dictionary=frozenset({"launch"}))
                    held = retriever._vocabulary
                    assert (held.words, held.stems) == (scratch.words, scratch.stems)
                    for channel in ("C0A", "C0B", "C0OTHER"):
                        audience = Audience.for_conversation(channel)
                        for question in QUESTIONS:
                            assert retriever.mend(question, audience) == \
                                scratch.mend(question, filter_for(audience).allowed), (question, channel)
        finally:
            store.close()
