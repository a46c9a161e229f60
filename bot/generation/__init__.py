"""Writing the answer from retrieved passages, behind one interface (:class:`Generator`).

Two implementations: extractive (the default: quotes, no server) and a model served by TGI or a
server with the same API (``TGI_URL``), which falls back to extractive whenever it cannot answer.
"""

from bot.generation.base import Draft, GenerationRequest, Generator, Turn
from bot.generation.extractive import QUOTED_LABEL, ExtractiveGenerator, quotable_units

__all__ = ["QUOTED_LABEL", "Draft", "ExtractiveGenerator", "GenerationRequest", "Generator", "Turn", "quotable_units"]
