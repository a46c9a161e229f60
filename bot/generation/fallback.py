"""A model-written answer when the model can give one, the extractive answer with a one-line note
when it cannot: the asker always gets an answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.generation.base import Draft, GenerationRequest, Generator
from bot.generation.server_errors import GenerationServerError

log = logging.getLogger(__name__)

_CITATION = re.compile(r"\[\d+\]")


def fallback_note(reason: str) -> str:
    """The line shown above a quoted answer that stands in for the model's.

    >>> fallback_note("is too busy right now")
    'The language model is too busy right now, so this answer quotes the documents directly.'
    """
    return f"The language model {reason}, so this answer quotes the documents directly."


@dataclass
class WithFallback:
    """``primary`` (a model server) answers; on any failure, or an empty answer, ``fallback`` does."""

    primary: Generator
    fallback: Generator

    @property
    def name(self) -> str:
        return self.primary.name

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        try:
            draft = self.primary.generate(request, on_text=on_text)
        except GenerationServerError as e:
            log.warning("%s could not answer (%s: %s): quoting instead", self.primary.name, type(e).__name__, e)
            return self._fallback(request, e.reader_reason)
        except Exception:
            log.error("%s failed unexpectedly: quoting instead", self.primary.name, exc_info=True)
            return self._fallback(request, "couldn't answer just now")
        if not _CITATION.sub("", draft.text).strip():
            log.warning("%s gave an empty answer: quoting instead", self.primary.name)
            return self._fallback(request, "gave an empty answer")
        return draft

    def _fallback(self, request: GenerationRequest, reason: str) -> Draft:
        return replace(self.fallback.generate(request), note=fallback_note(reason))
