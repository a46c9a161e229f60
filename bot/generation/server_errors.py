"""What a generation server's failure means, as typed errors: one pure function maps TGI's error
payloads (and those of servers with the same API: vLLM, LoRAX, SGLang) to them.

TGI answers ``{"error": "...", "error_type": "..."}`` (over HTTP, or as an SSE event mid-stream);
OpenAI-compatible servers answer ``{"error": {"message", "type", "code"}}`` or, like vLLM,
``{"object": "error", "message", "type", "code"}``. The generator acts on the type: retry an
overloaded server, fall back to the base model for an unknown adapter, re-pack a prompt that
was too long, and fall back to quoting for anything else.
"""

from __future__ import annotations

import re
from typing import Any

from knowledge.errors import LorebotError

# "Input validation error: `inputs` must have less than 3072 tokens. Given: 3200" (TGI), and
# "... maximum context length is 4096 tokens. However, you requested 4200 tokens ..." (vLLM).
_TGI_TOO_LONG = re.compile(r"must have less than (\d+) tokens\. Given: (\d+)")
_TGI_TOTAL_TOO_LONG = re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens and (\d+) `max_new_tokens`")
_OPENAI_TOO_LONG = re.compile(r"maximum context length is (\d+) tokens.*?(?:requested|resulted in) (\d+) tokens",
                              re.DOTALL)
_UNKNOWN_MODEL = re.compile(
    r"(adapter|model|lora)\b.{0,120}?\b(not (?:be )?(?:found|loaded|exist|available)|does not exist|unknown|"
    r"no such)|(unknown|invalid) (adapter|model|lora)",
    re.IGNORECASE | re.DOTALL,
)


class GenerationServerError(LorebotError):
    """The generation server did not produce an answer. ``retryable``: worth asking again soon;
    ``server_fault``: counts against the server's health (the circuit breaker)."""

    retryable = False
    server_fault = True
    # Finishes "The language model …, so this answer quotes the documents directly."
    reader_reason = "couldn't answer just now"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServerUnavailable(GenerationServerError):
    """Down, unreachable, starting, or refusing connections (503/502/504, connection errors)."""

    retryable = True
    reader_reason = "isn't reachable right now"


class ServerOverloaded(GenerationServerError):
    """Too many requests at once (TGI: 429 ``overloaded``)."""

    retryable = True
    reader_reason = "is too busy right now"


class GenerationTimeout(GenerationServerError):
    """No first token, or no finished answer, within the configured time."""

    reader_reason = "took too long to answer"


class GenerationFailed(GenerationServerError):
    """The server started but failed while generating (TGI: 424 ``generation``, 500 ``incomplete_generation``)."""

    reader_reason = "failed while writing the answer"


class ServerRefused(GenerationServerError):
    """The server refused the request for a reason lorebot cannot fix by itself (auth, a bad request)."""

    reader_reason = "refused the request"


class AdapterNotFound(GenerationServerError):
    """The server does not serve the requested LoRA adapter (the base model can answer instead)."""

    server_fault = False


class InputTooLong(GenerationServerError):
    """The prompt was over the server's limit: ``limit`` and ``given`` tokens, as the server counted."""

    server_fault = False
    reader_reason = "couldn't fit the documents into its input"

    def __init__(self, message: str, *, status: int | None = None, limit: int | None = None, given: int | None = None):
        super().__init__(message, status=status)
        self.limit, self.given = limit, given


def error_from_payload(status: int | None, payload: Any, *, requested_model: str | None = None) -> GenerationServerError:
    """The typed error for a failed request: ``status`` is the HTTP status (None for an error
    event in a stream), ``payload`` the decoded body (a dict, or text when it was not JSON).

    >>> type(error_from_payload(429, {"error": "Model is overloaded", "error_type": "overloaded"})).__name__
    'ServerOverloaded'
    >>> e = error_from_payload(422, {"error": "Input validation error: `inputs` must have less than 1024 tokens. "
    ...                                       "Given: 1100", "error_type": "validation"})
    >>> type(e).__name__, e.limit, e.given
    ('InputTooLong', 1024, 1100)
    >>> type(error_from_payload(404, {"object": "error", "message": "The model `lorebot-v9` does not exist.",
    ...                                "type": "NotFoundError", "code": 404}, requested_model="lorebot-v9")).__name__
    'AdapterNotFound'
    >>> type(error_from_payload(None, {"error": "Request failed during generation: CUDA OOM",
    ...                                "error_type": "generation"})).__name__
    'GenerationFailed'
    """
    message, error_type = _message_and_type(payload)
    detail = f"{status or 'stream'}: {message}" if message else f"HTTP {status}"
    kind = (error_type or "").lower()
    if kind == "overloaded" or status == 429:
        return ServerOverloaded(detail, status=status)
    if kind in ("unavailable", "healthcheck") or status in (502, 503, 504):
        return ServerUnavailable(detail, status=status)
    too_long = _too_long(message)
    if too_long is not None:
        return InputTooLong(detail, status=status, limit=too_long[0], given=too_long[1])
    if status in (400, 404, 422) and _names_unknown_model(message, requested_model):
        return AdapterNotFound(detail, status=status)
    if kind in ("generation", "incomplete_generation") or status in (424, 500) or status is None:
        return GenerationFailed(detail, status=status)
    if status is not None and 400 <= status < 500:
        return ServerRefused(detail, status=status)
    return GenerationFailed(detail, status=status)


def _message_and_type(payload: Any) -> tuple[str, str | None]:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "code"}}
            return str(error.get("message") or ""), _str_or_none(error.get("type"))
        if error is not None:  # TGI: {"error": "...", "error_type": "..."}
            return str(error), _str_or_none(payload.get("error_type"))
        if "message" in payload:  # vLLM: {"object": "error", "message", "type", "code"}
            return str(payload["message"]), _str_or_none(payload.get("type"))
        return "", None
    return (str(payload).strip()[:500] if payload else ""), None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def _too_long(message: str) -> tuple[int, int] | None:
    if m := _TGI_TOO_LONG.search(message):
        return int(m.group(1)), int(m.group(2))
    if m := _TGI_TOTAL_TOO_LONG.search(message):
        return int(m.group(1)), int(m.group(2)) + int(m.group(3))
    if m := _OPENAI_TOO_LONG.search(message):
        return int(m.group(1)), int(m.group(2))
    return None


def _names_unknown_model(message: str, requested_model: str | None) -> bool:
    if requested_model and f"`{requested_model}`" in message and "not" in message.lower():
        return True
    return bool(_UNKNOWN_MODEL.search(message))
