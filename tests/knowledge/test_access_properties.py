"""Attack the access rules with random histories (Hypothesis, stateful).

Documents are ingested, re-ingested with new text and/or a new scope (with and without
``allow_widen``), and deleted, in random order, through the real :class:`~knowledge.ingest.Ingestor`
and a real store; between the steps, random audiences search in every mode. The test keeps its
own model of what each document's scope is now, and after every step checks that

- no search and no listing ever gives an audience a passage its document's *current* scope does
  not allow (``public``, or the conversation itself; a DM sees ``public`` only);
- the store holds exactly the documents and scopes that were last accepted: a re-ingest that
  would widen a scope (``public`` from channels, or any added channel) is refused with
  :class:`~knowledge.errors.WideningRefused` unless ``allow_widen=True``, and then nothing of
  that call is written.

It runs on the embedded LanceDB store, on the bot's in-memory search path (vectors and keyword
postings in memory: a rescope must be seen by the very next search), and on the Weaviate fake.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from knowledge import errors
from knowledge.access import PUBLIC, Audience, Scope, filter_for
from knowledge.ingest import Ingestor, content_hash
from knowledge.retrieval import Retriever
from knowledge.stores.base import SEARCH_MODES
from knowledge.stores.lancedb import LanceStore
from knowledge.types import Document
from tests.conftest import HashingEmbedder

# The API under test (knowledge/errors.py). Looked up, not imported, so that without it every test
# here still runs and fails on the missing refusal, rather than the module failing to import.
WideningRefused = getattr(errors, "WideningRefused", None)

CHANNELS = ("C0A", "C0B", "C0C", "G0P")  # G…: a private channel; both kinds can scope a document
AUDIENCES = (*CHANNELS, "C0OTHER", "G0OTHER", "D0DM")  # and some no document is ever scoped to
SLOTS = ("alpha", "bravo", "charlie", "delta")  # a document per slot; its name is also a word in it
VOCABULARY = ("pager", "deploy", "holiday", "salary", "budget", "rollback", "laptop", "badge")

scopes = st.one_of(
    st.just(Scope.public()),
    st.sets(st.sampled_from(CHANNELS), min_size=1).map(lambda ids: Scope.channels(sorted(ids))),
)
texts = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=6).map(" ".join)
questions = st.lists(st.sampled_from(VOCABULARY + SLOTS), min_size=1, max_size=3).map(" ".join)


def may_see(scope: Scope, conversation: str) -> bool:
    """The rule, written out independently of knowledge/access.py."""
    if PUBLIC in scope.labels:
        return True
    return not conversation.startswith("D") and conversation in scope.labels


def widens(old: Scope, new: Scope) -> bool:
    """Public from channels, or any channel that was not there before."""
    if PUBLIC in old.labels:
        return False
    return PUBLIC in new.labels or not new.labels <= old.labels


def document(slot: str, text: str, scope: Scope, ingestor: Ingestor) -> Document:
    title = f"Notes {slot}"
    body = f"{slot} {text}"
    return Document(
        doc_id=f"doc-{slot}", title=title, source=f"/docs/{slot}.md", path=f"/docs/{slot}.md", text=body,
        content_hash=content_hash(title=title, text=body, chunking=ingestor.chunking), scope=scope,
    )


class AccessMachine(RuleBasedStateMachine):
    """One store, a handful of documents, random ingests, re-ingests, deletes and searches."""

    def __init__(self, open_store):
        super().__init__()
        self.embedder = HashingEmbedder()
        self.store, self._close = open_store(self.embedder)
        self.ingestor = Ingestor(store=self.store, embedder=self.embedder)
        self.retriever = Retriever(store=self.store, embedder=self.embedder)
        self.scope_of: dict[str, Scope] = {}  # doc_id -> the scope last accepted
        self.text_of: dict[str, str] = {}
        self.hash_of: dict[str, str] = {}

    def teardown(self):
        self._close()

    # -- writes ------------------------------------------------------------------------------

    def _ingest(self, docs: list[Document], allow_widen: bool) -> None:
        refused = [d.doc_id for d in docs if d.doc_id in self.scope_of and widens(self.scope_of[d.doc_id], d.scope)]
        try:
            self.ingestor.ingest_documents(docs, allow_widen=allow_widen)
        except errors.AccessError as e:
            assert WideningRefused is not None and isinstance(e, WideningRefused), f"not a WideningRefused: {e!r}"
            assert refused and not allow_widen, f"refused a re-ingest that widens nothing: {e}"
            unnamed = [d.path for d in docs if d.doc_id in refused and d.path not in str(e)]
            assert not unnamed, f"the refusal does not name {unnamed}: {e}"
            return  # nothing written: the invariants compare the store with the unchanged model
        assert allow_widen or not refused, f"widened {refused} without allow_widen"
        for d in docs:
            self.scope_of[d.doc_id], self.text_of[d.doc_id], self.hash_of[d.doc_id] = d.scope, d.text, d.content_hash

    @rule(slot=st.sampled_from(SLOTS), text=texts, scope=scopes, allow_widen=st.booleans())
    def ingest(self, slot, text, scope, allow_widen):
        """A first ingest, or a re-ingest with new (or the same) text and/or scope."""
        self._ingest([document(slot, text, scope, self.ingestor)], allow_widen)

    @rule(slot=st.sampled_from(SLOTS), scope=scopes, allow_widen=st.booleans())
    def rescope(self, slot, scope, allow_widen):
        """The same text under another scope: the store re-scopes it in place."""
        text = self.text_of.get(f"doc-{slot}", f"{slot} pager").removeprefix(f"{slot} ")
        self._ingest([document(slot, text, scope, self.ingestor)], allow_widen)

    @rule(batch=st.lists(st.tuples(st.sampled_from(SLOTS), texts, scopes), min_size=2, max_size=3,
                         unique_by=lambda item: item[0]),
          allow_widen=st.booleans())
    def ingest_several(self, batch, allow_widen):
        """One call, several documents: one that would widen refuses the whole call."""
        self._ingest([document(slot, text, scope, self.ingestor) for slot, text, scope in batch], allow_widen)

    @precondition(lambda self: self.scope_of)
    @rule(data=st.data())
    def delete(self, data):
        doc_id = data.draw(st.sampled_from(sorted(self.scope_of)))
        self.store.delete_document(doc_id)
        del self.scope_of[doc_id], self.text_of[doc_id], self.hash_of[doc_id]

    @rule()
    def optimize(self):
        """Index what was written (ingest_paths does after every ingest): indexed and not yet
        indexed rows are searched by different paths."""
        self.store.optimize()

    # -- reads -------------------------------------------------------------------------------

    @rule(question=questions, conversation=st.sampled_from(AUDIENCES), mode=st.sampled_from(SEARCH_MODES))
    def search(self, question, conversation, mode):
        passages, _ = self.retriever.search(question, Audience.for_conversation(conversation), k=10, mode=mode)
        for p in passages:
            assert p.doc_id in self.scope_of, f"{conversation} ({mode}) got deleted document {p.doc_id}"
            scope = self.scope_of[p.doc_id]
            assert may_see(scope, conversation), \
                f"{conversation} ({mode}) got {p.doc_id}, whose scope is now {scope}: {p.text!r}"
            assert p.scope == scope, f"{p.doc_id} came back with its old scope {p.scope}, not {scope}"
            assert set(p.text.split()) <= set(self.text_of[p.doc_id].split()) | set(p.title.split()), \
                f"{p.doc_id} came back with text it no longer has: {p.text!r}"

    @rule(slot=st.sampled_from(SLOTS), conversation=st.sampled_from(AUDIENCES), mode=st.sampled_from(("bm25", "hybrid")))
    def search_for_a_document_by_name(self, slot, conversation, mode):
        """Its own name finds a document its audience may see (so the searches above are not vacuous)."""
        passages, _ = self.retriever.search(slot, Audience.for_conversation(conversation), k=10, mode=mode)
        found = {p.doc_id for p in passages}
        doc_id = f"doc-{slot}"
        expected = doc_id in self.scope_of and may_see(self.scope_of[doc_id], conversation)
        assert (doc_id in found) == expected, f"{conversation} ({mode}) searching {slot!r} found {sorted(found)}"

    @rule(conversation=st.sampled_from(AUDIENCES))
    def list_documents(self, conversation):
        """What ``/lorebot sources`` lists for a conversation."""
        visible = {d.doc_id for d in self.store.list_documents(filter_for(Audience.for_conversation(conversation)))}
        assert visible == {d for d, scope in self.scope_of.items() if may_see(scope, conversation)}, conversation

    @invariant()
    def the_store_holds_exactly_what_was_last_accepted(self):
        """Scopes and texts: a refused call wrote nothing, not even the documents it did not widen."""
        listed = {d.doc_id: (d.scope, d.content_hash) for d in self.store.list_documents()}
        accepted = {doc_id: (scope, self.hash_of[doc_id]) for doc_id, scope in self.scope_of.items()}
        assert listed == accepted, "the store differs from what was last accepted"


# -- the stores ------------------------------------------------------------------------------------


def lance_opener(**options):
    def open_store(embedder):
        folder = Path(tempfile.mkdtemp(prefix="lorebot-access-"))
        store = LanceStore(folder / "index", dimension=embedder.dimension, model_id=embedder.model_id, **options)

        def close():
            store.close()
            shutil.rmtree(folder, ignore_errors=True)

        return store, close

    return open_store


def run(open_store, *, max_examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: AccessMachine(open_store),
        settings=settings(max_examples=max_examples, stateful_step_count=steps),
    )


def test_no_history_of_ingests_lets_an_audience_see_outside_its_scope_on_lancedb():
    run(lance_opener(), max_examples=30, steps=15)


def test_no_history_of_ingests_lets_an_audience_see_outside_its_scope_in_memory():
    """The bot's path: vectors and keyword postings in memory, rebuilt on the search after a write."""
    run(lance_opener(vectors_in_memory=True, keyword_settle_s=None), max_examples=30, steps=15)


@pytest.fixture
def fake_weaviate():
    from tests.fakes.weaviate_server import FakeWeaviate, deployed_version

    with FakeWeaviate(version=deployed_version()) as server:
        yield server


def test_no_history_of_ingests_lets_an_audience_see_outside_its_scope_on_weaviate(fake_weaviate):
    from knowledge.stores.weaviate import WeaviateOptions, WeaviateStore

    def open_store(embedder):
        options = WeaviateOptions(url=fake_weaviate.url, grpc_port=fake_weaviate.grpc_port, retry_backoff_s=0.01,
                                  startup_timeout_s=2.0, collection=f"Access{uuid.uuid4().hex[:12]}")
        store = WeaviateStore(options, dimension=embedder.dimension, model_id=embedder.model_id)
        return store, store.close

    run(open_store, max_examples=15, steps=15)
