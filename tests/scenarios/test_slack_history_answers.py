"""A team's Slack thread answers a question in its own channel, cited by permalink, and nowhere else.

The channel history is ingested with `lorebot ingest-slack` against the fake Slack Web API, into
the real embedded index with the real embedding model; the questions are asked with `lorebot ask`.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
from typer.testing import CliRunner

import bot.cli
from bot.app import build_services
from bot.cli import app
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
QUESTION = "how long before a public holiday does the deploy freeze start?"


@pytest.fixture
def lorebot(slack, tmp_path, monkeypatch, real_embedder):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    monkeypatch.setattr(bot.cli, "build_services", partial(build_services, embedder=real_embedder))
    return lambda *args: CliRunner().invoke(app, list(args))


@pytest.fixture
def slack():
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        yield fake


def ask(lorebot, channel: str) -> dict:
    result = lorebot("ask", QUESTION, "--channel", channel, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_thread_in_eng_answers_eng_with_its_permalink_and_not_sales(slack, lorebot) -> None:
    slack.add_channel("C0ENG", name="eng")
    slack.add_channel("C0SALES", name="sales")
    freeze = slack.add_message("C0ENG", user="U0ANA", text="Does anyone know when the deploy freeze starts for holidays?")
    slack.add_message("C0ENG", user="U0BEN", thread_ts=freeze,
                      text="The deploy freeze starts 48 hours before every public holiday and ends the next morning.")
    slack.add_message("C0ENG", user="U0ANA", thread_ts=freeze, text="Thanks! I'll move the release to Tuesday.")
    slack.add_message("C0ENG", user="U0LOREBOT", bot_id="B0LOREBOT", thread_ts=freeze,
                      text="The freeze starts 72 hours before a holiday [1]")  # lorebot's own words are no source
    pricing = slack.add_message("C0SALES", user="U0CAT", text="What discount do annual plans get this quarter?")
    slack.add_message("C0SALES", user="U0DAN", thread_ts=pricing, text="Annual plans get 15 percent off until September.")

    result = lorebot("ingest-slack", "--channel", "C0ENG", "--channel", "C0SALES", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 2

    in_eng = ask(lorebot, "C0ENG")
    assert in_eng["found"] is True, in_eng
    permalink = f"https://lorebot-test.slack.com/archives/C0ENG/p{freeze.replace('.', '')}"
    assert in_eng["citations"][0]["source"] == permalink
    assert "48 hours" in in_eng["answer"] and "72 hours" not in in_eng["answer"]

    in_sales = ask(lorebot, "C0SALES")
    assert in_sales["found"] is False and in_sales["citations"] == []
    assert "48 hours" not in json.dumps(in_sales)
