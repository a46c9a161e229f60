"""A running lorebot: the real Bolt app behind lorebot's HTTP server, talking to a fake Slack Web API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.app import Services, SlackBot, build_services, build_slack_bot
from bot.config import load_settings
from bot.credentials import slack_credentials
from bot.server import EVENTS_PATH, SlackHTTPServer
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_requests import SlackSender
from tests.fakes.tgi_server import FakeTGI

SIGNING_SECRET = "8f742231b10e8888abcd99aaabbb85a5"
BOT_TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
BOT_USER = "U0LOREBOT"
# Generation-server timeouts for tests: a fault shows within a second, not the production minute.
FAST_GENERATION = dict(tgi_connect_timeout_s=1.0, tgi_first_token_timeout_s=1.0, tgi_total_timeout_s=5.0,
                       tgi_breaker_cooldown_s=30.0)


@dataclass
class RunningBot:
    slack: FakeSlackAPI
    sender: SlackSender
    bot: SlackBot
    services: Services
    server: SlackHTTPServer

    def settle(self) -> None:
        """Wait until every request sent so far has been fully handled (acks come back first)."""
        assert self.bot.wait_idle(30), "lorebot did not finish its work in 30 s"

    def finish(self) -> None:
        """Wait for every answer under way (the workers stop taking new work)."""
        self.bot.close()

    @property
    def feedback(self):
        return self.services.feedback


@pytest.fixture
def slack():
    with FakeSlackAPI(bot_token=BOT_TOKEN) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    """slack_sdk sends even loopback traffic through HTTP(S)_PROXY; tests talk to 127.0.0.1 only."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def start_bot(slack: FakeSlackAPI, data_dir, embedder, tmp_path, *, database_url: str | None = None,
              **settings) -> RunningBot:
    config = load_settings(
        data_dir=data_dir, database_url=database_url or f"sqlite:///{tmp_path}/lorebot.db", slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET, slack_api_url=slack.url, **settings,
    )
    services = build_services(config, embedder=embedder, long_running=True)
    bot = build_slack_bot(services, slack_credentials(config, socket_mode=False))
    # Ready as a deployed bot is before its first question: the vocabulary read it started has ended
    # (on two busy cores it would otherwise share the first answer's time, and tests that count
    # Slack calls would see a "working" placeholder first).
    services.retriever.refresh_vocabulary(unless_built=True)
    server = SlackHTTPServer(bot.app, host="127.0.0.1", port=0, max_request_bytes=config.max_request_bytes,
                             metrics=bot.metrics)
    server.serve_in_background()
    sender = SlackSender(server.url + EVENTS_PATH, SIGNING_SECRET)
    return RunningBot(slack=slack, sender=sender, bot=bot, services=services, server=server)


def stop_bot(running: RunningBot) -> None:
    running.server.shutdown()
    running.server.server_close()
    running.bot.close()
    running.services.close()


@pytest.fixture
def lorebot(slack, handbook_data_dir, real_embedder, tmp_path):
    """lorebot answering from the bundled handbook (scoped as in the demo) with default settings."""
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path)
    yield running
    stop_bot(running)


@pytest.fixture
def tgi():
    """A fake TGI server serving the base model and the adapter ``lorebot-v1``."""
    with FakeTGI(adapters=("lorebot-v1",)) as fake:
        yield fake


@pytest.fixture
def model_bot(slack, tgi, handbook_data_dir, real_embedder, tmp_path):
    """lorebot with TGI_URL pointing at the fake TGI (short timeouts, quick retries)."""
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, tgi_url=tgi.url,
                        adapters_dir=tmp_path / "adapters", **FAST_GENERATION)
    yield running
    stop_bot(running)
