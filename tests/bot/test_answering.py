"""Answering: retrieval and the extractive generator share one embedding of the question."""

from __future__ import annotations

from dataclasses import dataclass

from bot.answering import AnswerDeps, answer_question
from bot.generation import ExtractiveGenerator
from knowledge.access import Audience
from knowledge.retrieval import Retriever


@dataclass
class RecordingEmbedder:
    """The real embedder, with a record of every text it was asked to encode."""

    inner: object
    texts: list

    @property
    def model_id(self):
        return self.inner.model_id

    @property
    def dimension(self):
        return self.inner.dimension

    def encode(self, texts):
        self.texts.extend(texts)
        return self.inner.encode(texts)


def test_the_question_is_embedded_once_per_answer(handbook_services, real_embedder):
    embedder = RecordingEmbedder(real_embedder, [])
    deps = AnswerDeps(retriever=Retriever(store=handbook_services.store, embedder=embedder,
                                          options=handbook_services.retriever.options),
                      generator=ExtractiveGenerator(embedder=embedder))
    question = "how many vacation days do new employees get?"
    answer = answer_question(question, Audience.for_conversation("C0GENERAL"), deps)
    assert answer.found and answer.citations
    assert embedder.texts.count(question) == 1
    assert len(embedder.texts) > 1  # the generator did embed the candidate sentences


def test_a_long_quote_cut_in_its_snippet_still_counts_as_shown_in_the_answer():
    from bot.answering import Citation, Answer, SNIPPET_CHARS, shorten

    quote = "Employees accrue paid leave every month they work here, " * 8
    snippet = shorten(quote, SNIPPET_CHARS)
    assert snippet.endswith("…")
    citation = Citation(n=1, title="PTO", source="pto.md", snippet=snippet, score=1.0, doc_id="d", chunk_id="d:0",
                        scope=["public"])
    shown = Answer(question="q", text=f"> {quote.strip()} [1]", found=True, citations=(citation,), generator="extractive")
    assert shown.already_quotes(citation)
    other = Answer(question="q", text="> Something else [1]", found=True, citations=(citation,), generator="extractive")
    assert not other.already_quotes(citation)
