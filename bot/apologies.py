"""What the asker reads when answering fails: short, kind, and never the exception itself.

The detail goes to the log; Slack gets one of a few fixed sentences chosen by what failed.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError, SlackClientError

from knowledge.errors import (
    AccessError,
    DatabaseError,
    EmbeddingError,
    QuestionError,
    StoreError,
)

TRY_AGAIN = "Please try again in a minute; the details are in my logs for whoever runs me."

_STORE_DOWN = "Sorry, I couldn't search the documents just now, so I can't answer this. " + TRY_AGAIN
_SLACK_TROUBLE = "Sorry, Slack didn't accept my answer just now. " + TRY_AGAIN
_NO_QUESTION = "I couldn't find a question to search for in that. Could you ask it in words?"
_NO_ACCESS = "Sorry, I can't answer in this conversation: I couldn't tell which documents it may see."
_UNEXPECTED = "Sorry, something went wrong while I was answering. " + TRY_AGAIN


def apology_for(error: BaseException) -> str:
    """The sentence for this failure.

    >>> apology_for(StoreError("lance: IO error at /var/x"))[:49]
    "Sorry, I couldn't search the documents just now, "
    >>> "IO error" in apology_for(RuntimeError("IO error"))
    False
    """
    if isinstance(error, QuestionError):
        return _NO_QUESTION
    if isinstance(error, AccessError):
        return _NO_ACCESS
    if isinstance(error, (StoreError, EmbeddingError, DatabaseError)):
        return _STORE_DOWN
    if isinstance(error, (SlackApiError, SlackClientError)):
        return _SLACK_TROUBLE
    return _UNEXPECTED
