"""The error hierarchy every lorebot package raises from.

Users see a short, kind message (``str(error)``); logs get the chain (``raise ... from e``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # knowledge.access imports this module
    from knowledge.access import Scope


class LorebotError(Exception):
    """Root of every error lorebot raises on purpose."""


class ConfigurationError(LorebotError):
    """A setting or a command-line option is missing or malformed."""


class AccessError(LorebotError):
    """An access rule would be broken: a missing scope, an empty audience."""


class WideningRefused(AccessError):
    """An ingest would let conversations see documents they could not see before, unconfirmed.

    ``widened`` lists each such document as (path or source, old scope, new scope).
    """

    MAX_LISTED = 20

    def __init__(self, widened: list[tuple[str, Scope, Scope]]):
        self.widened = list(widened)
        count = len(self.widened)
        lines = [f"  {what}: {old} → {new}" for what, old, new in self.widened[: self.MAX_LISTED]]
        if count > self.MAX_LISTED:
            lines.append(f"  and {count - self.MAX_LISTED} more")
        super().__init__(
            f"refusing to widen who may see {count} document{'s' if count != 1 else ''} (nothing was written):\n"
            + "\n".join(lines)
            + "\nIf every conversation of the new scope may see them, run again with --allow-widen "
            "(allow_widen=True)."
        )


class LoadError(LorebotError):
    """A file could not be turned into a document (unreadable, corrupt, unsupported)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EmptyFileError(LoadError):
    """A file with nothing but whitespace in it: emptied on purpose, so its document is removed."""


class StoreError(LorebotError):
    """The vector store failed or holds data in a shape lorebot cannot use."""


class IndexBusyError(StoreError):
    """Another process (an ingest) held the index's write lock for longer than this one would wait."""

    def __init__(self, path: str, waited_s: float):
        super().__init__(f"another ingest is writing the index at {path} (waited {waited_s:g} s): "
                         "try again when it has finished")
        self.path = path
        self.waited_s = waited_s


class DatabaseError(LorebotError):
    """The database (feedback, event de-duplication) is unreachable or refused an operation."""


class EmbeddingError(LorebotError):
    """The embedding model could not be loaded or did not verify."""


class QuestionError(LorebotError):
    """A question that cannot be searched for (empty, or nothing but punctuation)."""


class DatasetError(LorebotError):
    """An evaluation data set is missing a file or holds a malformed line (named with its number)."""
