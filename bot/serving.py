"""``lorebot serve``: check the tokens, load the model and the index, then serve until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from bot.app import SlackBot, build_services, build_slack_bot
from bot.config import Settings
from bot.credentials import SlackCredentials, slack_credentials
from bot.logs import log_like_a_server
from bot.metrics import METRICS_PATH, serving_metrics
from bot.server import EVENTS_PATH, SlackHTTPServer

log = logging.getLogger(__name__)


def run_http(settings: Settings, *, host: str, port: int, console: Console) -> None:
    """Serve ``/slack/events``, ``/healthz`` and ``/metrics`` until SIGINT or SIGTERM."""
    credentials = slack_credentials(settings, socket_mode=False)
    with _slack_bot(settings, credentials, console) as bot:
        server = SlackHTTPServer(bot.app, host=host, port=port, max_request_bytes=settings.max_request_bytes,
                                 metrics=bot.metrics)
        console.print(f"lorebot is listening on http://{host}:{server.server_address[1]}{EVENTS_PATH} (Ctrl-C stops)")
        _stop_on_signals(server.shutdown)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            console.print("lorebot stopped; finishing the answers under way…")


def run_socket_mode(settings: Settings, *, console: Console, stop: threading.Event | None = None) -> None:
    """Connect to Slack over Socket Mode until SIGINT or SIGTERM (or until ``stop`` is set); the
    metrics are served on ``LOREBOT_METRICS_PORT`` meanwhile."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    credentials = slack_credentials(settings, socket_mode=True)
    with _slack_bot(settings, credentials, console) as bot, \
            serving_metrics(bot.metrics, host=settings.metrics_host, port=settings.metrics_port) as metrics:
        handler = SocketModeHandler(bot.app, app_token=credentials.app_token)
        handler.connect()
        console.print("lorebot is connected to Slack over Socket Mode (Ctrl-C stops)"
                      + (f"; metrics at {metrics.url}{METRICS_PATH}" if metrics else ""))
        if stop is None:
            stop = threading.Event()
            _stop_on_signals(stop.set)
        stop.wait()
        handler.close()


@contextmanager
def _slack_bot(settings: Settings, credentials: SlackCredentials, console: Console) -> Iterator[SlackBot]:
    log_like_a_server(settings.log_format)
    services = build_services(settings, long_running=True)
    try:
        if not settings.weaviate_url and not settings.index_dir.is_dir():
            console.print(f"[yellow]warning:[/] no index at {settings.index_dir} yet: every answer will be "
                          "\u201cnot found\u201d until documents are ingested (lorebot ingest PATH --public | --channel ID)")
        where = f"Weaviate at {settings.weaviate_url}" if settings.weaviate_url else "the index"
        console.print(f"Checking the Slack token, loading the embedding model and {where}…")
        bot = build_slack_bot(services, credentials)  # checks the token first, then loads the model
        console.print(services.check_generation_server())
        try:
            yield bot
        finally:
            bot.close()
    finally:
        services.close()


def _stop_on_signals(stop: callable) -> None:
    def handle(signum: int, frame: object) -> None:
        log.info("signal %s: stopping", signum)
        threading.Thread(target=stop, daemon=True).start()  # shutdown() must not run on the serving thread

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)

