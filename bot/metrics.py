"""Prometheus metrics: what the bot and the scheduler did, for ``/metrics``.

Every metric lives on a registry of its own (one :class:`Metrics` per process, built by the
composition root), never on prometheus_client's global one: tests build many bots in one process,
and each counts only what it did. Labels take a few known values each (outcomes, stages, surfaces,
job names, error classes); never a channel, a user or anything someone wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from bot.answering import Answer

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
SURFACES = ("mention", "follow_up", "assistant", "slash")
OUTCOMES = ("found", "not_found", "error")
STAGES = ("retrieval", "generation", "first_token", "slack", "total")
VOTE_VALUES = {1: "up", -1: "down"}
VOTE_VIAS = ("reaction", "button", "reconcile")
JOB_OUTCOMES = ("ok", "skipped", "failed")
# 5 ms (an embedding, a Slack call nearby) to a minute (a slow model's whole answer).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Finer around the relevance floor (LOREBOT_MIN_SIMILARITY, 0.39 by default), where found and not
# found are decided.
SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# A reconcile pass takes seconds, a training run hours.
JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0)


# The scheduler's metrics while one of its jobs runs: job functions are stored by name and take no
# arguments, so what they count reaches the process's metrics through the run's context.
JOB_METRICS: ContextVar[Metrics | None] = ContextVar("lorebot_job_metrics", default=None)


def lorebot_version() -> str:
    try:
        return version("lorebot")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """lorebot's metrics on a registry of their own; the methods are what the code records."""

    def __init__(self, *, build_version: str | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.answers = Counter("lorebot_answers", "Questions answered, by outcome and where they were asked.",
                               ["outcome", "surface"], registry=r)
        self.stage_seconds = Histogram(
            "lorebot_stage_seconds",
            "Time per stage of an answer: retrieval (mending the question, embed + search), generation (writing the answer, "
            "fallback included), first_token (the model's first token after the request), slack (Slack API "
            "calls made for the answer), total (question taken on to answer delivered, waiting for a worker "
            "included).",
            ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.top_similarity = Histogram(
            "lorebot_retrieval_top_similarity", "Cosine similarity of the best passage retrieved for a question.",
            buckets=SIMILARITY_BUCKETS, registry=r)
        self.votes = Counter("lorebot_votes", "Votes cast on answers (a changed vote counts again).",
                             ["value", "via"], registry=r)
        self.vote_retractions = Counter("lorebot_vote_retractions", "Votes taken back (a reaction removed).",
                                        ["value", "via"], registry=r)
        self.fallbacks = Counter("lorebot_generation_fallbacks",
                                 "Answers quoted because the model could not write them, by the error's class "
                                 "(or 'empty').", ["reason"], registry=r)
        self.generations = Counter("lorebot_generations",
                                   "Answers written from passages, by what wrote them (extractive after a fallback) "
                                   "and the adapter ('none': no adapter).", ["generator", "adapter"], registry=r)
        self.job_runs = Counter("lorebot_job_runs", "Scheduled job runs, by outcome.", ["job", "outcome"], registry=r)
        self.job_seconds = Histogram("lorebot_job_seconds", "How long scheduled job runs took.", ["job"],
                                     buckets=JOB_BUCKETS, registry=r)
        Info("lorebot_build", "The running lorebot.", registry=r).info(
            {"version": build_version or lorebot_version()})
        # Known series start at zero, so a rate or an alert works before the first event.
        for outcome in OUTCOMES:
            for surface in SURFACES:
                self.answers.labels(outcome=outcome, surface=surface)
        for value in VOTE_VALUES.values():
            for via in VOTE_VIAS:
                self.votes.labels(value=value, via=via)
                if via != "button":  # a click is changed by another click, never taken back
                    self.vote_retractions.labels(value=value, via=via)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
        self.fallbacks.labels(reason="empty")

    # ------------------------------------------------------------------ answers

    def answered(self, answer: Answer, *, surface: str, slack_s: float | None = None,
                 total_s: float | None = None) -> None:
        """An answer delivered (found or not): its outcome, its stages' times, its best passage."""
        self.answers.labels(outcome="found" if answer.found else "not_found", surface=surface).inc()
        timings = answer.timings_ms
        if "embed" in timings or "search" in timings:
            retrieval_ms = sum(timings.get(part, 0.0) for part in ("mend", "embed", "search"))
            self.stage("retrieval", retrieval_ms / 1000)
        for stage, key in (("generation", "generate"), ("first_token", "first_token")):
            if key in timings:
                self.stage(stage, timings[key] / 1000)
        if slack_s is not None:
            self.stage("slack", slack_s)
        if total_s is not None:
            self.stage("total", total_s)
        if answer.top_similarity is not None:
            self.top_similarity.observe(max(0.0, min(1.0, answer.top_similarity)))
        if "generate" in timings:
            self.generations.labels(generator=answer.generator, adapter=answer.adapter or "none").inc()

    def answer_failed(self, surface: str) -> None:
        """A question that got an apology instead of an answer."""
        self.answers.labels(outcome="error", surface=surface).inc()

    def stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(max(0.0, seconds))

    def fallback(self, reason: str) -> None:
        """The model could not answer (``reason``: the typed error's class name, or "empty")."""
        self.fallbacks.labels(reason=reason).inc()

    # ------------------------------------------------------------------ votes

    def vote(self, value: int, via: str) -> None:
        self.votes.labels(value=VOTE_VALUES[value], via=via).inc()

    def retraction(self, value: int, via: str) -> None:
        self.vote_retractions.labels(value=VOTE_VALUES[value], via=via).inc()

    # ------------------------------------------------------------------ the scheduler

    def expect_jobs(self, jobs: Iterable[str]) -> None:
        """Start every outcome of these jobs at zero."""
        for job in jobs:
            self.job_seconds.labels(job=job)
            for outcome in JOB_OUTCOMES:
                self.job_runs.labels(job=job, outcome=outcome)

    def job_run(self, job: str, outcome: str, seconds: float | None) -> None:
        """A scheduled run ended (``seconds`` is None for one that never started: a missed run time)."""
        self.job_runs.labels(job=job, outcome=outcome).inc()
        if seconds is not None:
            self.job_seconds.labels(job=job).observe(max(0.0, seconds))

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type (0.0.4: the one every
        Prometheus reads; prometheus_client's "latest" is a newer version of it)."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


class MetricsServer(ThreadingHTTPServer):
    """``/metrics`` (and ``/healthz``) on a port of their own, for processes with no HTTP server of
    their own: the bot in Socket Mode, the scheduler."""

    daemon_threads = True

    def __init__(self, metrics: Metrics, *, host: str, port: int):
        self.metrics = metrics
        super().__init__((host, port), _MetricsHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = 30

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == METRICS_PATH:
            body, content_type = self.server.metrics.exposition()
            self._send(HTTPStatus.OK, body, content_type)
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b'{"status": "ok"}', "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


@contextmanager
def counting_into(metrics: Metrics) -> Iterator[Metrics]:
    """Within the block, :data:`JOB_METRICS` is ``metrics`` (the scheduler wraps each run in it)."""
    token = JOB_METRICS.set(metrics)
    try:
        yield metrics
    finally:
        JOB_METRICS.reset(token)


@contextmanager
def serving_metrics(metrics: Metrics, *, host: str, port: int) -> Iterator[MetricsServer | None]:
    """Serve ``metrics`` on ``host:port`` in the background for the block; port 0 (the setting's
    "off") serves nothing and yields None."""
    if not port:
        yield None
        return
    server = start_metrics_server(metrics, host=host, port=port)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def start_metrics_server(metrics: Metrics, *, host: str, port: int) -> MetricsServer:
    """A :class:`MetricsServer` serving in a daemon thread (port 0: any free port, for tests)."""
    server = MetricsServer(metrics, host=host, port=port)
    threading.Thread(target=server.serve_forever, name="lorebot-metrics", daemon=True).start()
    return server
