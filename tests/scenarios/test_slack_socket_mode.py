"""``lorebot serve --socket``: the same bot, reached over Slack's Socket Mode instead of HTTP."""

from __future__ import annotations

import http.client
import socket
import threading
import time

from rich.console import Console

from bot.config import load_settings
from bot.serving import run_socket_mode
from tests.fakes import slack_requests as sr
from tests.fakes.slack_api import FakeSlackAPI
from tests.scenarios.conftest import BOT_TOKEN, BOT_USER
from tests.scenarios.test_slack_bot import ON_CALL, texts

APP_TOKEN = "xapp-1-A0LOREBOT-1234567890-abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def test_socket_mode_answers_a_mention_and_acks_the_envelope(handbook_data_dir, tmp_path):
    metrics_port = free_port()
    with FakeSlackAPI(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as slack:
        settings = load_settings(data_dir=handbook_data_dir, database_url=f"sqlite:///{tmp_path}/lorebot.db",
                                 slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=slack.url,
                                 metrics_host="127.0.0.1", metrics_port=metrics_port)
        stop = threading.Event()
        serving = threading.Thread(target=run_socket_mode, kwargs={
            "settings": settings, "console": Console(file=open("/dev/null", "w")), "stop": stop})
        serving.start()
        try:
            slack.wait_socket_connected(timeout=60)
            event = sr.app_mention(f"<@{BOT_USER}> {ON_CALL}", channel="C0ENGINEER")
            envelope = sr.socket_envelope(sr.event_callback(event))
            slack.socket_send(envelope)
            [post] = slack.wait_for("chat.postMessage", timeout=30)
            acks = slack.wait_for("socket_ack")
            # No HTTP server in Socket Mode: the metrics have a port of their own.
            for _ in range(100):
                metrics = scrape(metrics_port)
                if 'lorebot_answers_total{outcome="found",surface="mention"} 1.0' in metrics:
                    break
                time.sleep(0.05)  # counted just after the answer is posted
            assert 'lorebot_answers_total{outcome="found",surface="mention"} 1.0' in metrics
        finally:
            stop.set()
            serving.join(timeout=30)
    assert not serving.is_alive()
    assert [a.params["envelope_id"] for a in acks] == [envelope["envelope_id"]]
    assert slack.calls("apps.connections.open")[0].token == APP_TOKEN
    assert post.params["thread_ts"] == event["ts"] and "*Sources*" in texts(post.params)
