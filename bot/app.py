"""The composition root: builds every client once, from settings, and hands them to whoever needs them.

Nothing else in lorebot constructs a store, an embedder or a generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from bot.answering import AnswerDeps
from bot.config import Settings
from bot.generation import ExtractiveGenerator, Generator
from knowledge.chunking import ChunkingOptions
from knowledge.embedding import Embedder, load_embedder
from knowledge.ingest import Ingestor
from knowledge.retrieval import RetrievalOptions, Retriever
from knowledge.stores.base import VectorStore
from knowledge.stores.lancedb import LanceStore


@dataclass
class Services:
    """Lazily built clients: a command that only lists documents never loads the model twice, etc.

    ``long_running`` (the bot, not a one-shot command) buys query speed with start-up work and
    memory: questions are embedded by an ONNX export of the model, and the store keeps its vectors
    in memory below the ANN threshold. A single ``lorebot ask`` would pay for both and use neither.
    """

    settings: Settings
    long_running: bool = False

    @cached_property
    def embedder(self) -> Embedder:
        onnx_cache = self.settings.data_dir / "models" if self.long_running else None
        return load_embedder(self.settings.embedding_model, batch_size=self.settings.embedding_batch_size,
                             onnx_cache_dir=onnx_cache)

    @cached_property
    def store(self) -> VectorStore:
        return LanceStore(
            self.settings.index_dir,
            dimension=self.embedder.dimension,
            model_id=self.embedder.model_id,
            ann_min_rows=self.settings.ann_min_rows,
            vectors_in_memory=self.long_running,
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        chunking = ChunkingOptions(
            max_tokens=min(self.settings.chunk_tokens, getattr(self.embedder, "max_tokens", 10_000)),
            overlap_tokens=self.settings.chunk_overlap_tokens,
        )
        return Ingestor(store=self.store, embedder=self.embedder, chunking=chunking)

    @cached_property
    def retriever(self) -> Retriever:
        options = RetrievalOptions(
            candidates=self.settings.candidates,
            dense_weight=self.settings.dense_weight,
            min_similarity=self.settings.min_similarity,
        )
        return Retriever(store=self.store, embedder=self.embedder, options=options)

    @cached_property
    def generator(self) -> Generator:
        return ExtractiveGenerator(embedder=self.embedder)

    @property
    def answer_deps(self) -> AnswerDeps:
        return AnswerDeps(retriever=self.retriever, generator=self.generator)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def build_services(settings: Settings, *, embedder: Embedder | None = None, long_running: bool = False) -> Services:
    """Services for these settings; an already loaded embedder can be shared (tests, the demo)."""
    services = Services(settings=settings, long_running=long_running)
    if embedder is not None:
        services.__dict__["embedder"] = embedder  # pre-fills the cached_property
    return services
