"""With TGI_URL set, the model writes the answer: streamed into the thread, cited, from the chosen
adapter; and whenever the server cannot answer, the thread still gets an answer, with a note."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from bot.cli import app as cli
from tests.scenarios.conftest import FAST_GENERATION, start_bot, stop_bot
from tests.scenarios.test_slack_bot import ON_CALL, mention, texts
from training.registry import AdapterRegistry

FALLBACK = "so this answer quotes the documents directly"


def final_reply(lorebot, channel: str, event: dict) -> dict:
    [reply] = [m for m in lorebot.slack.messages(channel, thread_ts=event["ts"]) if m["ts"] != event["ts"]]
    return reply


def test_a_streamed_model_answer_lands_in_the_thread_with_its_checked_citations(model_bot, tgi):
    tgi.reply("Pages escalate to the secondary after ten minutes [1], as the runbook says [1]. "
              "The CFO approves it [9].")  # [9] is invented: there is no ninth passage
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    shown = texts(final_reply(model_bot, "C0ENGINEER", event))
    assert "after ten minutes [1]" in shown and "[9]" not in shown and "The CFO approves it." in shown
    assert "*Sources*" in shown and "*[1]*" in shown and "*[2]*" not in shown
    assert FALLBACK not in shown
    [record] = list(model_bot.feedback.export())
    assert record["generator"] == "tgi" and "[9]" not in record["answer"]
    # The passages the model saw, and only those, are kept for training.
    [request] = tgi.chat_requests()
    sent = re.findall(r'<passage n="\d+" title="([^"]*)"', request["messages"][-1]["content"])
    assert [p["title"] for p in record["passages"]] == sent


def test_the_model_field_carries_the_promoted_adapter_and_the_answer_records_it(model_bot, tgi, tmp_path):
    AdapterRegistry(tmp_path / "adapters").write_promoted("lorebot-v1")
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    assert [r["model"] for r in tgi.chat_requests()] == ["lorebot-v1"]
    assert tgi.answered_by == ["lorebot-v1"]
    [record] = list(model_bot.feedback.export())
    assert record["adapter"] == "lorebot-v1"
    assert final_reply(model_bot, "C0ENGINEER", event)


def test_an_answer_that_cites_nothing_shows_the_sources_as_consulted(model_bot, tgi):
    tgi.reply("Pages escalate to the secondary after ten minutes.")
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    shown = texts(final_reply(model_bot, "C0ENGINEER", event))
    assert "*Sources consulted* (the answer cites none of them)" in shown and "*Sources*\n" not in shown


def test_a_down_server_still_gets_the_asker_an_answer_with_a_note(model_bot, tgi):
    tgi.set_down()
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    shown = texts(final_reply(model_bot, "C0ENGINEER", event))
    assert "The language model isn't reachable right now, " + FALLBACK in shown
    assert "Quoted from the documents:" in shown and "*Sources*" in shown
    [record] = list(model_bot.feedback.export())
    assert record["generator"] == "extractive"


def test_a_slow_server_ends_in_a_quoted_answer(model_bot, tgi):
    tgi.delay_first_token(3.0)  # past the first-token timeout (1 s in these tests)
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    assert "took too long to answer, " + FALLBACK in texts(final_reply(model_bot, "C0ENGINEER", event))


def test_an_overloaded_server_ends_in_a_quoted_answer(model_bot, tgi):
    tgi.fail_next("/v1/chat/completions", 429, times=10)
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    assert "is too busy right now, " + FALLBACK in texts(final_reply(model_bot, "C0ENGINEER", event))
    assert len(tgi.chat_requests()) == 3  # the first try and two retries, then the quotes


def test_a_stream_that_breaks_midway_is_replaced_by_the_quoted_answer(model_bot, tgi):
    tgi.reply("Pages escalate to the secondary after ten minutes [1] and then some more words follow here")
    tgi.fail_mid_stream(after_tokens=6)
    # A pause before it breaks, as a real server's would be: time for the first words to be shown
    # (without it, on a busy machine, the break could come before the bot showed anything).
    tgi.stall_after_tokens(5, 1.0)
    event = mention(model_bot, ON_CALL, channel="C0ENGINEER")
    model_bot.finish()
    assert model_bot.slack.calls("chat.startStream")  # the first words were shown…
    shown = texts(final_reply(model_bot, "C0ENGINEER", event))
    assert "failed while writing the answer, " + FALLBACK in shown  # …then replaced by the quotes
    assert "then some more words" not in shown


def test_ask_json_reports_the_model_and_adapter(handbook_data_dir, tgi, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(handbook_data_dir))
    monkeypatch.setenv("TGI_URL", tgi.url)
    monkeypatch.setenv("LOREBOT_ADAPTER", "lorebot-v1")
    tgi.reply("Pages escalate after ten minutes [1].")
    result = CliRunner().invoke(cli, ["ask", ON_CALL, "--channel", "C0ENGINEER", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["generator"], out["adapter"], out["note"]) == ("tgi", "lorebot-v1", None)
    assert out["answer"] == "Pages escalate after ten minutes [1]." and out["citations"][0]["n"] == 1
    assert out["timings_ms"]["first_token"] >= 0


def test_ask_without_the_server_answers_extractively_with_the_note(handbook_data_dir, tgi, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(handbook_data_dir))
    monkeypatch.setenv("TGI_URL", tgi.url)
    monkeypatch.setenv("LOREBOT_TGI_RETRIES", "0")
    tgi.set_down()
    result = CliRunner().invoke(cli, ["ask", ON_CALL, "--channel", "C0ENGINEER"])
    assert result.exit_code == 0, result.output
    assert "isn't reachable right now" in result.stdout and "Quoted from the documents:" in result.stdout


def test_start_up_says_what_the_server_serves_or_why_answers_will_quote(slack, tgi, handbook_data_dir,
                                                                        real_embedder, tmp_path):
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, tgi_url=tgi.url, adapter="lorebot-v1",
                        **FAST_GENERATION)
    try:
        line = running.services.check_generation_server()
        assert tgi.model_id in line and "max input 1024" in line and "adapter: lorebot-v1" in line
        tgi.set_down()
        line = running.services.check_generation_server()
        assert line.startswith("warning: cannot reach the generation server") and "quote the documents" in line
    finally:
        stop_bot(running)


def test_a_tgi_url_without_a_scheme_is_a_configuration_error_naming_it(handbook_data_dir, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(handbook_data_dir))
    monkeypatch.setenv("TGI_URL", "gpu-box:8081")
    result = CliRunner().invoke(cli, ["ask", ON_CALL, "--channel", "C0ENGINEER"])
    assert result.exit_code != 0
    assert "TGI_URL" in result.output and "http(s)://" in result.output and "Traceback" not in result.output
