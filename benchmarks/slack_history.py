"""Slack channel history as a source: sync throughput under Tier 3 limits, the cost of a sync with
nothing new, and the time from an edit to the answer reflecting it.

    .venv/bin/python benchmarks/slack_history.py [--channels 3] [--threads 60] [--replies 4] [--standalone 60]

The requirement (issue 21, point 7)
    "sync throughput in messages per second, against the fake Slack enforcing Tier 3 limits; the
    cost of an incremental sync with nothing new; the time from an edit event to the answer
    reflecting it."

The setup
    The fake Slack Web API (``tests.fakes.slack_api.FakeSlackAPI``) on 127.0.0.1 holds ``--channels``
    channels, each with ``--threads`` threads of ``--replies`` replies and ``--standalone`` messages
    outside threads (one every 5 minutes, so they group by the 30-minute window). The bot is built
    as tests/scenarios/conftest.py builds it: ``build_services`` (the real bundled embedding model),
    ``build_slack_bot``, lorebot's ``SlackHTTPServer``; the index and the database live in a
    temporary data directory, thrown away at the end.

Rate limits, scaled
    Slack's Tier 3 allows about 50 calls a minute per method (conversations.history, .replies and
    .info each). The fake enforces 50 calls per ``--window`` seconds (default 1 s: 60 times faster
    than Slack) per method and answers 429 with ``Retry-After`` past that, which slack_sdk's retry
    handler waits out (Retry-After is whole seconds, at least 1: at a 1 s window a refused call waits
    one window, as at Slack's 60 s). Scaled time is therefore *not* Slack's time: the table also gives
    what the calls made imply at Slack's real limits (the floor: the busiest method's calls ÷ 50 per
    minute, assuming no other client of the workspace uses the same budget), and a run with no limit
    at all (lorebot's own cost: reading, chunking, embedding, writing).

What is timed
    - full sync: ``SlackIngest.run`` (what ``lorebot ingest-slack`` runs) over every channel, the
      first time (whole history); messages = what Slack returned (parents, replies, standalone).
      ``read`` is the time to the last Slack call (all channels are read before anything is written).
    - incremental sync with nothing new: the same run again; Slack calls by method and seconds.
    - the scheduled catch-up (``SlackSync.catch_up``, the ``slack-sync`` job) with nothing new, twice:
      first a full read (due after a restart: the whole history listing; threads whose listing
      changed, every thread in the look-back — here all of them — and the
      ``LOREBOT_SLACK_RECHECK_THREADS`` checked longest ago), then an ordinary one (the look-back,
      threads re-read only where the listing changed).
    - edit → answer: a thread reply is edited in the fake, a signed ``message_changed`` event is
      POSTed to the real Bolt app, and ``answer_question`` (the bot's own dependencies, the
      channel's audience) is asked every ``--poll`` seconds until the answer quotes the new text.
      Timed from just before the POST to the answer that first quotes it; ``--edits`` times.
      (The live path is bot/slack_history/sync.py, helper B1's handler of message events.)

Output
    A table, then one JSON line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` and `tests.fakes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LANCEDB_LOG", "error")
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)

from benchmarks.common import (
    DEFAULT_OUT_DIR,
    emit_json,
    fmt,
    foreign_load,
    latency_summary,
    log,
    print_table,
    source_digests,
)
from bot.answering import answer_question
from bot.app import build_services, build_slack_bot
from bot.config import load_settings
from bot.credentials import slack_credentials
from bot.server import EVENTS_PATH, SlackHTTPServer
from bot.slack_history.documents import DocumentOptions
from bot.slack_history.ingest import SlackIngest, SyncOptions
from bot.slack_history.reader import who_am_i
from bot.slack_history.sync import build_slack_sync
from bot.slack_history.sync_state import SyncState
from knowledge.access import Audience
from tests.fakes import slack_requests as sr
from tests.fakes.slack_api import FakeSlackAPI

BENCHMARK = "slack_history"
SIGNING_SECRET = "8f742231b10e8888abcd99aaabbb85a5"
BOT_TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
TIER_3_PER_MINUTE = 50
TIER_3_METHODS = ("conversations.history", "conversations.replies", "conversations.info")
MEASURED = ("bot/slack_history/ingest.py", "bot/slack_history/reader.py", "bot/slack_history/documents.py",
            "bot/slack_history/sync.py", "bot/slack_history/sync_state.py", "bot/listeners.py", "bot/app.py",
            "knowledge/ingest.py", "knowledge/stores/lancedb.py", "bot/answering.py")
PEOPLE = ("U0ANA", "U0BEN", "U0CAT", "U0DAN", "U0EVE")
TOPICS = ("deploy", "billing", "search", "login", "email", "storage", "metrics", "backups")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--threads", type=int, default=60, help="threads per channel")
    parser.add_argument("--replies", type=int, default=4, help="replies per thread")
    parser.add_argument("--standalone", type=int, default=60, help="messages outside threads per channel")
    parser.add_argument("--window", type=float, default=1.0,
                        help="seconds in which the fake allows 50 calls per Tier 3 method (Slack: 60)")
    parser.add_argument("--edits", type=int, default=5, help="edits timed to the answer")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between answers while waiting for an edit")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an edit to show")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="cache of the ONNX export (models/)")
    return parser.parse_args(argv)


# --- The workspace ------------------------------------------------------------------------------


def seed(slack: FakeSlackAPI, args: argparse.Namespace) -> list[tuple[str, str, str, int]]:
    """Channels of threads and standalone messages; returns each thread's (channel, parent ts,
    first reply's ts, service number) for the edits."""
    threads = []
    start = 1_700_000_000
    for c in range(args.channels):
        channel = f"C0BENCH{c}"
        slack.add_channel(channel, name=f"team-{c}")
        at = start + c * 10_000_000
        for t in range(args.threads):
            n = c * args.threads + t
            topic = TOPICS[n % len(TOPICS)]
            at += 600
            parent = slack.add_message(channel, user=PEOPLE[n % 5], ts=f"{at}.000100",
                                       text=f"How do we roll back the {topic} service svc{n} after a bad release?")
            first = None
            for r in range(args.replies):
                reply_text = (f"The rollback code for svc{n} is code{n}x{r}; run it from the {topic} runbook."
                              if r == 0 else f"Step {r} for svc{n}: page the {topic} on-call, then check dashboards.")
                ts = slack.add_message(channel, user=PEOPLE[(n + r + 1) % 5], thread_ts=parent,
                                       ts=f"{at + 10 + r}.000100", text=reply_text)
                first = first or ts
            threads.append((channel, parent, first, n))
        for s in range(args.standalone):
            at += 300
            slack.add_message(channel, user=PEOPLE[s % 5], ts=f"{at}.000200",
                              text=f"Note {s} in team-{c}: the {TOPICS[s % len(TOPICS)]} dashboard moved to grafana panel {s}.")
    return threads


def history_sync(services, client) -> SlackIngest:
    """What ``lorebot ingest-slack`` builds (bot/cli.py ``_slack_ingest``), on the bot's own services."""
    settings = services.settings
    options = SyncOptions(
        documents=DocumentOptions(chunking=services.chunking, window_s=settings.slack_window_minutes * 60),
        lookback_s=settings.slack_lookback_days * 86_400, page_size=settings.slack_page_size)
    return SlackIngest(client=client, me=who_am_i(client, settings.slack_api_url), ingestor=services.ingestor,
                       sync_state=SyncState(services.database), options=options)


def limit(slack: FakeSlackAPI, window: float | None) -> None:
    for method in TIER_3_METHODS:
        slack.rate_limit(method, TIER_3_PER_MINUTE if window else None, per_s=window or 60.0)


def timed_sync(slack: FakeSlackAPI, sync: SlackIngest, channels: list[str]) -> dict:
    slack.reset_calls()
    started_wall, started = time.time(), time.perf_counter()
    report = sync.run(channels, since=None, public=False, allow_widen=False)
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the sync failed: {report.failed} {report.documents.failed}")
    calls = slack.calls()
    by_method = Counter(c.method for c in calls if c.method in TIER_3_METHODS and not c.failed)
    refused = Counter(c.method for c in calls if c.method in TIER_3_METHODS and c.failed)
    read_s = max((c.at for c in calls), default=started_wall) - started_wall
    busiest = max(by_method.values(), default=0)
    # At Slack's limits a method's first 50 calls go at once, then 50 more each minute.
    real_floor_s = max(0, (busiest - 1) // TIER_3_PER_MINUTE) * 60.0
    d = report.documents
    return {"messages": report.messages, "threads": report.threads, "seconds": round(seconds, 3),
            "read_s": round(read_s, 3), "messages_per_s": round(report.messages / seconds, 1) if seconds else None,
            "calls": dict(by_method), "refused_429": dict(refused),
            "messages_per_call": round(report.messages / max(1, sum(by_method.values())), 2),
            "real_tier3_floor_s": real_floor_s,
            "real_tier3_messages_per_s": round(report.messages / real_floor_s, 1) if real_floor_s else None,
            "documents": {"added": d.added, "updated": d.updated, "unchanged": d.unchanged, "removed": d.removed}}


def timed_catch_up(slack: FakeSlackAPI, catch_up) -> dict:
    slack.reset_calls()
    started = time.perf_counter()
    report = catch_up.catch_up()
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the catch-up failed: {report.summary()}")
    calls = Counter(c.method for c in slack.calls() if c.method in TIER_3_METHODS and not c.failed)
    d = report.synced.documents
    return {"seconds": round(seconds, 3), "channels_read_whole": len(report.synced.read_whole),
            "threads": report.synced.threads,
            "calls": dict(calls), "documents": {"updated": d.updated, "unchanged": d.unchanged, "removed": d.removed}}


# --- Edit → answer ------------------------------------------------------------------------------


def edit_to_answer(slack, sender, deps, thread: tuple[str, str, str, int], k: int, args) -> dict:
    channel, parent, reply_ts, n = thread
    token = f"rescue{k}z{n}"
    old = slack.messages(channel, parent)
    previous = next(m["text"] for m in old if m["ts"] == reply_ts)
    user = next(m["user"] for m in old if m["ts"] == reply_ts)
    text = previous.replace(f"code{n}x0", token)
    slack.edit_message(channel, reply_ts, text)
    event = sr.message_changed(text, channel=channel, ts=reply_ts, previous_text=previous, user=user, thread_ts=parent)
    question = f"what is the rollback code for svc{n}?"
    audience = Audience.for_conversation(channel)
    started = time.perf_counter()
    response = sender.event(event)
    asked = 0
    while time.perf_counter() - started < args.timeout:
        answer = answer_question(question, audience, deps)
        asked += 1
        if token in answer.text or any(token in c.snippet for c in answer.citations):
            return {"seconds": time.perf_counter() - started, "status": response.status, "answers_asked": asked}
        time.sleep(args.poll)
    return {"seconds": None, "status": response.status, "answers_asked": asked}


# --- Report -------------------------------------------------------------------------------------


def report_table(s: dict) -> Table:
    table = Table(title=f"Slack history sync ({s['workspace']['messages']} messages in {s['workspace']['channels']} channels; "
                        f"Tier 3 scaled: 50 calls per {s['window_s']} s per method)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    full, free, none_new = s["full_sync_tier3_scaled"], s["full_sync_unlimited"], s["incremental_nothing_new"]
    table.add_row("full sync, scaled Tier 3: messages/s", fmt(full["messages_per_s"]))
    table.add_row("  seconds (of which reading Slack)", f"{fmt(full['seconds'], 2)} ({fmt(full['read_s'], 2)})")
    table.add_row("  Slack calls (history / replies / info)", "{} / {} / {}".format(
        *(full["calls"].get(m, 0) for m in TIER_3_METHODS)))
    table.add_row("  429s waited out", str(sum(full["refused_429"].values())))
    table.add_row("  messages per call", fmt(full["messages_per_call"], 2))
    table.add_row("  at Slack's real Tier 3: at least (s) → messages/s",
                  f"{fmt(full['real_tier3_floor_s'], 0)} → {fmt(full['real_tier3_messages_per_s'])}")
    table.add_row("full sync, no rate limit: messages/s", fmt(free["messages_per_s"]))
    table.add_row("incremental sync, nothing new: seconds", fmt(none_new["seconds"], 3))
    table.add_row("  Slack calls (history / replies / info)", "{} / {} / {}".format(
        *(none_new["calls"].get(m, 0) for m in TIER_3_METHODS)))
    for key, what in (("catch_up_full_read", "scheduled catch-up, full read, nothing new"),
                      ("catch_up_lookback", "scheduled catch-up, look-back, nothing new")):
        run = s[key]
        table.add_row(f"{what}: seconds", fmt(run["seconds"], 3))
        table.add_row("  Slack calls (history / replies / info)", "{} / {} / {}".format(
            *(run["calls"].get(m, 0) for m in TIER_3_METHODS)))
    edits = s["edit_to_answer"]
    table.add_row(f"edit event → answer quotes it ({edits['reflected']}/{edits['edits']}): p50 / max ms",
                  f"{fmt(edits['p50_ms'], 0)} / {fmt(edits['max_ms'], 0)}")
    return table


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests(MEASURED)
    started = time.perf_counter()
    summary: dict = {"window_s": args.window, "scale": f"{60.0 / args.window:g}x faster than Slack's Tier 3"}
    data_dirs = [Path(tempfile.mkdtemp(prefix="lorebot-bench-slackhist-")) for _ in range(2)]
    try:
        for d in data_dirs:
            cache = args.out_dir / "models"
            cache.mkdir(parents=True, exist_ok=True)
            (d / "models").symlink_to(cache, target_is_directory=True)
        with FakeSlackAPI(bot_token=BOT_TOKEN) as slack:
            threads = seed(slack, args)
            channels = sorted({t[0] for t in threads})
            total = sum(len(slack.messages(c)) for c in channels)  # every message, replies included
            summary["workspace"] = {"channels": args.channels, "threads": len(threads), "messages": total}

            # Lorebot's own cost: the same sync with no rate limit, into its own data directory.
            unlimited = services_for(slack, data_dirs[1])
            try:
                unlimited.embedder.encode(["warm-up: the model loads outside the timings"])
                log(f"full sync of {total} messages, no rate limit …")
                summary["full_sync_unlimited"] = timed_sync(slack, history_sync(unlimited, slack_client(slack)), channels)
            finally:
                unlimited.close()

            limit(slack, args.window)
            settings = bot_settings(slack, data_dirs[0])
            services = build_services(settings, long_running=True)
            bot = build_slack_bot(services, slack_credentials(settings, socket_mode=False))
            server = SlackHTTPServer(bot.app, host="127.0.0.1", port=0, max_request_bytes=settings.max_request_bytes)
            server.serve_in_background()
            sender = sr.SlackSender(server.url + EVENTS_PATH, SIGNING_SECRET, timeout=30)
            try:
                services.embedder.encode(["warm-up: the model loads outside the timings"])
                sync = history_sync(services, bot.app.client)
                log(f"full sync, Tier 3 enforced at 50 calls / {args.window} s …")
                with foreign_load() as other:
                    summary["full_sync_tier3_scaled"] = timed_sync(slack, sync, channels)
                log(f"  {summary['full_sync_tier3_scaled']['messages_per_s']} messages/s; incremental sync …")
                summary["incremental_nothing_new"] = timed_sync(slack, sync, channels)
                catch_up = build_slack_sync(services, bot.app.client, sync.me)  # as the scheduler's job builds it
                log("scheduled catch-up: a full read (after a restart), then the look-back …")
                catch_up.events_missed()  # as a bot (re)starting records: the next catch-up reads whole
                summary["catch_up_full_read"] = timed_catch_up(slack, catch_up)
                summary["catch_up_lookback"] = timed_catch_up(slack, catch_up)
                answer_question("warm-up: what is the rollback code for svc0?",
                                Audience.for_conversation(channels[0]), services.answer_deps)
                log(f"{args.edits} edits, each awaited in the answer …")
                step = max(1, len(threads) // max(1, args.edits))
                timings = [edit_to_answer(slack, sender, services.answer_deps, threads[(k * step) % len(threads)], k, args)
                           for k in range(args.edits)]
                done = [t["seconds"] for t in timings if t["seconds"] is not None]
                lat = latency_summary(done)
                summary["edit_to_answer"] = {
                    "edits": args.edits, "reflected": len(done), "p50_ms": lat["p50_ms"],
                    "max_ms": round(max(done) * 1000, 1) if done else None,
                    "answers_asked": [t["answers_asked"] for t in timings],
                    "event_status": sorted({t["status"] for t in timings}), "poll_s": args.poll,
                    "path": "signed message_changed event → Bolt app → bot/slack_history/sync.py",
                }
                summary["foreign_load_share"] = other["share"]
            finally:
                server.shutdown()
                server.server_close()
                bot.close()
                services.close()
    finally:
        for d in data_dirs:
            shutil.rmtree(d, ignore_errors=True)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_table(report_table(summary))
    emit_json(BENCHMARK, summary, sources=sources)
    return summary


def bot_settings(slack: FakeSlackAPI, data_dir: Path):
    return load_settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/lorebot.db", slack_bot_token=BOT_TOKEN,
                         slack_signing_secret=SIGNING_SECRET, slack_api_url=slack.url)


def services_for(slack: FakeSlackAPI, data_dir: Path):
    return build_services(bot_settings(slack, data_dir), long_running=True)


def slack_client(slack: FakeSlackAPI):
    from bot.app import slack_client as build

    return build(load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.url), BOT_TOKEN)


if __name__ == "__main__":
    main()
