"""The generator interface: a question and its passages in, an answer with ``[n]`` citations out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from knowledge.types import Passage


@dataclass(frozen=True)
class Turn:
    """One earlier message of the thread, as the model sees the conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a generator may use to answer.

    ``conversation_id`` is where the answer goes (a per-channel adapter is chosen by it);
    ``question_vector`` is the question's embedding when retrieval has already computed it.
    """

    question: str
    passages: list[Passage]
    history: tuple[Turn, ...] = ()
    conversation_id: str | None = None
    question_vector: np.ndarray | None = None
    # The question as it was searched (typos and shorthand mended), and its words that no document
    # the audience may see uses: what it asks about that the documents never mention.
    searched_as: str | None = None
    unfamiliar_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Draft:
    """A generator's output: the answer text (Markdown, with ``[n]`` markers into the passages)."""

    text: str
    generator: str
    adapter: str | None = None
    # What was quoted from each passage (1-based, as cited), for the sources' snippets.
    quotes: dict[int, list[str]] = field(default_factory=dict)
    # How many of the passages (the first ones) the generator actually saw; None means all.
    passages_used: int | None = None
    # One line for the reader about how this answer was written (e.g. the model was unavailable).
    note: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Generator(Protocol):
    name: str

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        """An answer from ``request.passages``. A generator that writes its answer piece by piece
        passes each piece to ``on_text`` as it is written (to show it in Slack); the returned draft
        is the whole answer either way."""
