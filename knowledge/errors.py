"""The error hierarchy every lorebot package raises from.

Users see a short, kind message (``str(error)``); logs get the chain (``raise ... from e``).
"""


class LorebotError(Exception):
    """Root of every error lorebot raises on purpose."""


class ConfigurationError(LorebotError):
    """A setting or a command-line option is missing or malformed."""


class AccessError(LorebotError):
    """An access rule would be broken: a missing scope, an empty audience."""


class LoadError(LorebotError):
    """A file could not be turned into a document (unreadable, corrupt, unsupported)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(LorebotError):
    """The vector store failed or holds data in a shape lorebot cannot use."""


class DatabaseError(LorebotError):
    """The database (feedback, event de-duplication) is unreachable or refused an operation."""


class EmbeddingError(LorebotError):
    """The embedding model could not be loaded or did not verify."""


class QuestionError(LorebotError):
    """A question that cannot be searched for (empty, or nothing but punctuation)."""


class DatasetError(LorebotError):
    """An evaluation data set is missing a file or holds a malformed line (named with its number)."""
