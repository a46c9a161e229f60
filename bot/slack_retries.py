"""How every Slack call is retried: after a 429 (waiting Retry-After) and after a dropped connection,
so an answer is delayed, not lost. One definition for the Web API client and response URLs."""

from __future__ import annotations

from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler


def slack_retry_handlers() -> list[RetryHandler]:
    return [RateLimitErrorRetryHandler(max_retry_count=4), ConnectionErrorRetryHandler(max_retry_count=2)]
