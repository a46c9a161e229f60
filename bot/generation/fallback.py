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
    """``primary`` (a model server) answers; on any failure, or an empty answer, ``fallback`` does.

    ``on_fallback`` hears of every fallback, with why: the error's class name, or ``"empty"``
    (the composition root counts them).
    """

    primary: Generator
    fallback: Generator
    on_fallback: Callable[[str], None] | None = None

    @property
    def name(self) -> str:
        return self.primary.name

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        try:
            draft = self.primary.generate(request, on_text=on_text)
        except GenerationServerError as e:
            log.warning("%s could not answer (%s: %s): quoting instead", self.primary.name, type(e).__name__, e)
            return self._fallback(request, e.reader_reason, type(e).__name__)
        except Exception as e:
            log.error("%s failed unexpectedly: quoting instead", self.primary.name, exc_info=True)
            return self._fallback(request, "couldn't answer just now", type(e).__name__)
        if not _CITATION.sub("", draft.text).strip():
            log.warning("%s gave an empty answer: quoting instead", self.primary.name)
            return self._fallback(request, "gave an empty answer", "empty")
        return draft

    def _fallback(self, request: GenerationRequest, reason: str, cause: str) -> Draft:
        if self.on_fallback is not None:
            try:
                self.on_fallback(cause)
            except Exception:  # counting it must never cost the asker the answer
                log.error("could not report a fallback", exc_info=True)
        return replace(self.fallback.generate(request), note=fallback_note(reason))
