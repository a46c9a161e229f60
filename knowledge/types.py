"""Typed data at the seams of the knowledge package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knowledge.access import Scope


@dataclass(frozen=True)
class LoadedText:
    """What a loader returns: a document's text before it is given an identity and a scope.

    ``text`` is lightweight Markdown whatever the file format was: headings are ``#`` lines
    (one ``#`` per level), paragraphs and list items are separated by blank lines. The chunker
    relies on that shape, so every loader produces it.
    """

    title: str
    text: str


@dataclass(frozen=True)
class Document:
    """One source file (or Slack thread), ready to chunk.

    ``doc_id`` is stable for the same origin (path or URL), so re-ingesting replaces it.
    """

    doc_id: str
    title: str
    source: str
    path: str
    text: str
    content_hash: str
    scope: Scope


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed, that still makes sense alone."""

    chunk_id: str
    doc_id: str
    position: int
    title: str
    heading_path: tuple[str, ...]
    text: str

    @property
    def context(self) -> str:
        """Title and heading path, as a reader would see them above the text."""
        parts = [self.title, *[h for h in self.heading_path if h != self.title]]
        return " › ".join(p for p in parts if p)

    @property
    def embedding_text(self) -> str:
        """The text the encoder and the full-text index see: context first, then the body."""
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the store holds it: with its document's metadata, scope and vector."""

    chunk_id: str
    doc_id: str
    position: int
    title: str
    heading_path: tuple[str, ...]
    text: str
    source: str
    path: str
    scope: Scope
    content_hash: str
    embedding_hash: str
    # A numpy array or a sequence of floats; excluded from equality (arrays do not compare to bool).
    vector: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DocumentInfo:
    """A document as listed by a store."""

    doc_id: str
    title: str
    source: str
    path: str
    content_hash: str
    scope: Scope
    chunks: int


@dataclass(frozen=True)
class ScoredChunk:
    """One chunk a store found: its rank score (fused, higher is better) and its cosine similarity
    to the question (absolute, what the relevance floor is applied to)."""

    chunk: StoredChunk
    score: float
    similarity: float


@dataclass(frozen=True)
class PassagePiece:
    """One chunk's part of a passage: its heading path and its text as the passage shows it (without
    the overlap it repeats from the chunk before it in the passage)."""

    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Passage:
    """A retrieved, ranked piece of evidence with its source.

    ``score`` ranks passages (fused, higher is better); ``similarity`` is the cosine similarity of
    the question and the passage, an absolute measure that the relevance floor is applied to.
    """

    doc_id: str
    chunk_id: str
    title: str
    source: str
    heading_path: tuple[str, ...]
    text: str
    scope: Scope
    score: float
    similarity: float
    also_matched: tuple[str, ...] = field(default=())
    # The chunks the text was joined from, in reading order (empty where a passage was built by hand).
    pieces: tuple[PassagePiece, ...] = field(default=())
