"""Slack credentials, checked before anything starts: a bad token is one clear message, not a crash later."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import Settings
from knowledge.errors import ConfigurationError

_BOT_TOKEN = re.compile(r"^xoxb-[0-9A-Za-z-]{10,}$")
_APP_TOKEN = re.compile(r"^xapp-[0-9A-Za-z-]{10,}$")
_SIGNING_SECRET = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class SlackCredentials:
    bot_token: str
    signing_secret: str | None
    app_token: str | None

    def __repr__(self) -> str:  # never print a token, even in a traceback's locals
        return "SlackCredentials(<redacted>)"


def slack_credentials(settings: Settings, *, socket_mode: bool) -> SlackCredentials:
    """The tokens the chosen transport needs, each checked for Slack's format.

    Over HTTP every request is verified with the signing secret; Socket Mode connects with the
    app-level token instead (Slack does not sign what it sends over the socket).
    """
    problems = [_check("SLACK_BOT_TOKEN", settings.slack_bot_token, _BOT_TOKEN,
                       "the Bot User OAuth Token (xoxb-…) from OAuth & Permissions")]
    if socket_mode:
        problems.append(_check("SLACK_APP_TOKEN", settings.slack_app_token, _APP_TOKEN,
                               "an app-level token (xapp-…) with connections:write, from Basic Information"))
    else:
        problems.append(_check("SLACK_SIGNING_SECRET", settings.slack_signing_secret, _SIGNING_SECRET,
                               "the 32-character Signing Secret from Basic Information"))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigurationError("; ".join(problems))
    return SlackCredentials(
        bot_token=settings.slack_bot_token or "",
        signing_secret=None if socket_mode else settings.slack_signing_secret,
        app_token=settings.slack_app_token if socket_mode else None,
    )


def _check(name: str, value: str | None, pattern: re.Pattern, what: str) -> str | None:
    if not value:
        return f"{name} is not set: it should be {what}"
    if not pattern.match(value.strip()):
        return f"{name} is malformed: it should be {what}"
    return None
