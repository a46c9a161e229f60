"""Tokens never reach a log line: every record is scrubbed as it is made, whoever logs it
(slack_sdk logs request headers at DEBUG, Authorization included)."""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_SLACK_TOKEN = re.compile(r"\b(?:xox[abposre]|xapp)-[0-9A-Za-z-]+")
_installed: list[str] = []


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with Slack tokens and the given secrets replaced.

    >>> redact("Authorization: Bearer xoxb-123-456-abc, secret=s3cr3t", ["s3cr3t"])
    'Authorization: Bearer [redacted], secret=[redacted]'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _SLACK_TOKEN.sub(REDACTED, text)


def redact_installed(text: str) -> str:
    """``text`` scrubbed of Slack tokens and every secret installed so far (for what a formatter
    adds to a record after it was made: a traceback)."""
    return redact(text, _installed)


def install_redaction(secrets: list[str]) -> None:
    """Scrub every log record made from now on (idempotent; later calls add secrets)."""
    _installed.extend(s for s in secrets if s and s not in _installed)
    factory = logging.getLogRecordFactory()
    if getattr(factory, "lorebot_redacting", False):
        return

    def redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it for logging's own error report
            return record
        clean = redact(message, _installed)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    redacting_factory.lorebot_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)
