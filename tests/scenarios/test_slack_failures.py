"""When something fails, the asker reads a short, kind explanation; logs get the detail; nothing leaks."""

from __future__ import annotations

import logging
import shutil

from typer.testing import CliRunner

from bot.apologies import TRY_AGAIN
from bot.cli import app as cli
from bot.rendering import MAX_BLOCKS, MAX_SECTION_CHARS
from knowledge.access import Scope
from tests.fakes.slack_api import FakeSlackAPI
from tests.scenarios.conftest import BOT_TOKEN, SIGNING_SECRET, start_bot, stop_bot
from tests.scenarios.test_slack_bot import ON_CALL, mention, texts


def broken_index(tmp_path, embedder):
    """A data directory whose index fails on every search: its data files are gone (a bad disk, a
    botched restore…)."""
    from bot.app import build_services
    from bot.config import load_settings

    data_dir = tmp_path / "data"
    services = build_services(load_settings(data_dir=data_dir), embedder=embedder)
    doc = tmp_path / "docs" / "on-call.md"
    doc.parent.mkdir()
    doc.write_text("# On-call\n\nA page escalates to the secondary after 10 minutes without an acknowledgement.\n")
    assert services.ingestor.ingest_paths([doc.parent], scope=Scope.public()).ok
    services.close()
    for data in data_dir.glob("index/*.lance/data"):
        shutil.rmtree(data)
    return data_dir


def test_a_broken_index_gets_an_apology_in_the_thread_not_silence(slack, real_embedder, tmp_path):
    data_dir = broken_index(tmp_path, real_embedder)

    running = start_bot(slack, data_dir, real_embedder, tmp_path)
    try:
        event = mention(running, ON_CALL, channel="C0ENGINEER")
        running.finish()
    finally:
        stop_bot(running)
    [apology] = slack.calls("chat.postMessage")
    assert apology.params["thread_ts"] == event["ts"]
    assert TRY_AGAIN in apology.params["text"]
    for leak in ("Traceback", "Error", "lance", str(data_dir)):
        assert leak not in apology.params["text"]


def test_a_very_long_answer_continues_in_further_messages_all_accepted(slack, tgi, handbook_data_dir, real_embedder,
                                                                        tmp_path):
    paragraph = "The on-call rotation has many rules worth knowing in detail [1]. " * 40
    tgi.reply("\n\n".join(f"## Part {i}\n{paragraph}" for i in range(12)))
    tgi.max_total_tokens = 16_384  # room for an answer this long
    lorebot = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, tgi_url=tgi.url, max_answer_tokens=8192)
    try:
        event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
        lorebot.finish()
    finally:
        stop_bot(lorebot)
    assert not any(c.failed for c in slack.calls())  # the fake enforces Slack's limits
    messages = [m for m in slack.messages("C0ENGINEER", thread_ts=event["ts"]) if m["ts"] != event["ts"]]
    assert len(messages) >= 3
    for message in messages:
        blocks = message["blocks"]
        assert len(blocks) <= MAX_BLOCKS
        assert all(len(b["text"]["text"]) <= MAX_SECTION_CHARS for b in blocks if "text" in b)
    assert "*Sources*" in texts(messages[-1]) and "*Sources*" not in texts(messages[0])
    assert "Part 11" in "".join(texts(m) for m in messages)


def test_tokens_never_reach_the_logs(lorebot, caplog):
    caplog.set_level(logging.DEBUG)
    mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()
    assert lorebot.slack.calls("chat.postMessage")
    assert caplog.records  # slack_sdk logs every request at DEBUG (it masks the header itself)
    # Whatever a library prints, a running bot scrubs its secrets from the record.
    logging.getLogger("some.library").warning("settings: token=%s secret=%s", BOT_TOKEN, SIGNING_SECRET)
    assert "token=[redacted] secret=[redacted]" in caplog.text
    assert BOT_TOKEN not in caplog.text and SIGNING_SECRET not in caplog.text


def _serve(env: dict, *args: str):
    return CliRunner().invoke(cli, ["serve", *args], env=env)


def test_serve_refuses_to_start_without_good_tokens(tmp_path):
    base = {"LOREBOT_DATA_DIR": str(tmp_path), "SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "", "SLACK_APP_TOKEN": ""}
    missing = _serve(base, "--http")
    assert missing.exit_code == 2 and "SLACK_BOT_TOKEN is not set" in missing.output
    assert "SLACK_SIGNING_SECRET is not set" in missing.output

    malformed = _serve({**base, "SLACK_BOT_TOKEN": "xoxp-user-token-123456", "SLACK_SIGNING_SECRET": "short"}, "--http")
    assert malformed.exit_code == 2 and "SLACK_BOT_TOKEN is malformed" in malformed.output
    assert "SLACK_SIGNING_SECRET is malformed" in malformed.output

    socket = _serve({**base, "SLACK_BOT_TOKEN": BOT_TOKEN}, "--socket")
    assert socket.exit_code == 2 and "SLACK_APP_TOKEN is not set" in socket.output
    assert "Traceback" not in missing.output + malformed.output + socket.output


def test_serve_reports_a_token_slack_refuses(tmp_path):
    with FakeSlackAPI(bot_token="xoxb-0000000000-another-token") as slack:
        result = _serve({"LOREBOT_DATA_DIR": str(tmp_path), "SLACK_BOT_TOKEN": BOT_TOKEN,
                         "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.url}, "--http", "--port", "0")
    assert result.exit_code == 2
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in result.output
    assert BOT_TOKEN not in result.output


def test_serve_names_an_unreachable_weaviate_at_start(tmp_path):
    with FakeSlackAPI(bot_token=BOT_TOKEN) as slack:
        result = _serve({"LOREBOT_DATA_DIR": str(tmp_path), "SLACK_BOT_TOKEN": BOT_TOKEN,
                         "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.url,
                         "WEAVIATE_URL": "http://127.0.0.1:9", "LOREBOT_WEAVIATE_RETRIES": "0"}, "--http", "--port", "0")
    assert result.exit_code == 2
    assert "cannot reach Weaviate at http://127.0.0.1:9" in result.output and "WEAVIATE_URL" in result.output
    assert "Traceback" not in result.output and "no index at" not in result.output
