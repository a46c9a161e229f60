"""Log lines as text or JSON (``LOREBOT_LOG_FORMAT``), each with the ID of the request it belongs to.

Every Slack request is handled under a request ID (Slack's ``event_id`` or ``trigger_id``, else a
new one), every scheduled run under ``job:run``; the ID lives in a :class:`~contextvars.ContextVar`
that lorebot's worker pools copy into the threads they run work on, so every line logged while a
question is answered carries that question's ID. Secrets are scrubbed from the message when the
record is made (:mod:`bot.redaction`) and from the traceback when it is formatted, here.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Literal

from bot.redaction import redact_installed

LogFormat = Literal["text", "json"]
REQUEST_ID: ContextVar[str | None] = ContextVar("lorebot_request_id", default=None)


@contextmanager
def request_context(request_id: str) -> Iterator[str]:
    """Log everything in the block (and in work it hands to lorebot's pools) under ``request_id``."""
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)


def slack_request_id(body: object) -> str:
    """The ID to log a Slack request under: its event or trigger ID (Slack's retries of an event
    share it), else a new one.

    >>> slack_request_id({"event_id": "Ev0PV52K21", "event": {}})
    'Ev0PV52K21'
    >>> slack_request_id({"trigger_id": "1337.42.abc"})
    '1337.42.abc'
    >>> len(slack_request_id({"type": "url_verification"}))
    16
    """
    if isinstance(body, dict):
        for key in ("event_id", "trigger_id"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return new_request_id()


def job_request_id(job_id: str, run_id: int) -> str:
    """A scheduled run's request ID: the job and its run's number in the job log.

    >>> job_request_id("reconcile", 42)
    'reconcile:42'
    """
    return f"{job_id}:{run_id}"


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class RequestIds(logging.Filter):
    """Stamps each record with the current request ID (``record.request_id``, None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _request_id(record: logging.LogRecord) -> str | None:
    return getattr(record, "request_id", None) or REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``request_id``, and ``exc_info`` (the traceback, as text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_installed(record.getMessage()),
            "request_id": _request_id(record),
        }
        if record.exc_info:
            entry["exc_info"] = redact_installed(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = redact_installed(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = redact_installed(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2025-01-02 03:04:05,678 INFO bot.replies [Ev0PV52K21]: message`` (no brackets outside a request)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(lorebot_request)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = _request_id(record)
        record.lorebot_request = f" [{request_id}]" if request_id else ""
        return redact_installed(super().format(record))


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def log_like_a_server(log_format: LogFormat) -> None:
    """A long-running process (the bot, the scheduler) logs what it does at INFO, as ``log_format``,
    unless -v asked for more already; chatty libraries only from WARNING."""
    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for noisy in ("slack_bolt", "slack_sdk", "urllib3", "httpx", "sentence_transformers", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger(noisy).level, logging.WARNING))
    configure_logging(log_format)


def configure_logging(log_format: LogFormat, *, handlers: list[logging.Handler] | None = None) -> None:
    """Format lorebot's log output as ``log_format``, with request IDs.

    ``handlers``: the ones to format; by default the root logger's plain stream handlers (the one
    the CLI set up on stderr), leaving any other (a test's capture) alone.
    """
    if handlers is None:
        handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    for handler in handlers:
        handler.setFormatter(formatter_for(log_format))
        if not any(isinstance(f, RequestIds) for f in handler.filters):
            handler.addFilter(RequestIds())
