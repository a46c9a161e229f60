"""The ``lorebot`` command line. ``--json`` puts machine-readable output alone on stdout."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.answering import Answer, answer_question, shorten
from bot.training_cli import register as register_training_commands
from bot.app import Services, build_services
from bot.config import load_settings
from knowledge.access import Audience, Scope, filter_for, is_conversation_id
from knowledge.errors import ConfigurationError, LorebotError, StoreError, WideningRefused
from knowledge.ingest import IngestReport
from knowledge.stores.base import SEARCH_MODES
from training.feedback import FeedbackStore
from training.jobs_log import JobRun, latest_runs

app = typer.Typer(
    help="lorebot: answers from your own documents, with sources, for the channel that asks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
log = logging.getLogger("lorebot")

ChannelOption = Annotated[str, typer.Option("--channel", "-c", help="Conversation ID the answer is for (C…, G… or D…).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details to stderr.")] = False) -> None:
    logging.basicConfig(
        # Without -v only errors: what went wrong with a file is already in the summary.
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        log.setLevel(logging.DEBUG)  # the CLI's own failure details, tracebacks included
    for noisy in ("httpx", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """A LorebotError becomes its one-line message and exit 2; anything unexpected a short line
    and exit 3, with the traceback in the log (``-v``), never on the user's screen."""
    try:
        yield
    except (typer.Exit, typer.Abort, click.exceptions.ClickException):
        raise
    except LorebotError as e:
        log.debug("command failed", exc_info=True)
        # soft_wrap: a path in the message stays whole, to be copied from the terminal.
        err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from e
    except Exception as e:
        log.debug("unexpected failure", exc_info=True)  # shown with -v only
        err.print(f"[red]unexpected error[/] ({type(e).__name__}): {escape(str(e))}")
        raise typer.Exit(3) from e


@contextmanager
def _services(*, reading: bool = False) -> Iterator[Services]:
    """Settings and clients for one command, with clear errors, closed at the end.

    ``reading``: the command only reads the index, so a missing one is an error (a mistyped
    LOREBOT_DATA_DIR), not an empty index that answers "nothing found".
    """
    services = None
    with _clear_errors():
        try:
            settings = load_settings()
            if reading and not settings.weaviate_url and not settings.index_dir.is_dir():
                raise StoreError(
                    f"there is no index at {settings.index_dir}: ingest documents first "
                    "(lorebot ingest PATH --public, or --channel ID), or check LOREBOT_DATA_DIR"
                )
            services = build_services(settings)
            yield services
        finally:
            if services is not None:
                services.close()


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively).")],
    channel: Annotated[Optional[list[str]], typer.Option("--channel", "-c", help="Channel ID that may see these documents (repeatable).")] = None,
    public: Annotated[bool, typer.Option("--public", help="Every conversation of the workspace may see these documents.")] = False,
    source_url: Annotated[Optional[str], typer.Option("--source-url", help="Link shown for these documents (a folder's files get URL/relative-path).")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove documents whose files are gone under the given paths.")] = False,
    allow_widen: Annotated[bool, typer.Option("--allow-widen", help="Confirm that documents already indexed may become visible to more conversations (public, or another channel). Without it such an ingest is refused and nothing is written.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add or update documents, scoped to channels or public. Exits 1 if any file failed.

    Narrowing a document's scope is always allowed; widening it (channel-only to public, or a
    channel added) is refused with the list of documents unless --allow-widen is given (exit 2).
    Inside a folder, symbolic links that lead out of it are skipped."""
    with _services() as services:
        scope = Scope.from_options(channels=channel, public=public)
        with _progress("Ingesting", enabled=not as_json) as advance, _widening_as_json(as_json):
            report = services.ingestor.ingest_paths(
                paths, scope=scope, source_url=source_url, prune=prune, progress=advance, allow_widen=allow_widen
            )
    _print_ingest_report(report, as_json=as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command("ingest-slack")
def ingest_slack(
    channel: Annotated[list[str], typer.Option("--channel", "-c", help="Channel ID whose history to index (repeatable); lorebot must be a member.")],
    since: Annotated[Optional[str], typer.Option("--since", help="Read from this day (YYYY-MM-DD, UTC) instead of where the last sync stopped; edited messages are re-read.")] = None,
    public: Annotated[bool, typer.Option("--public", help="Every conversation may see these channels' history (refused unless Slack reports the channel public and not shared with another organization).")] = False,
    allow_widen: Annotated[bool, typer.Option("--allow-widen", help="Confirm that documents already indexed may become visible to more conversations. Without it such a run is refused and nothing is written.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Index channels' history: each thread one document, other messages grouped by time, scoped to
    their channel and cited by permalink. Exits 1 if any channel could not be read.

    Later runs continue from where the last one stopped (a per-channel cursor in lorebot's database)."""
    bad = [c for c in channel if not is_conversation_id(c)]
    if bad:
        raise typer.BadParameter(f"not a Slack channel ID: {', '.join(map(repr, bad))} (they look like C024BE91L)",
                                 param_hint="--channel")
    started_from = _since_day(since)
    with _services() as services:
        sync = _slack_ingest(services)
        with _progress("Reading Slack", enabled=not as_json, unit="channels") as advance, _widening_as_json(as_json):
            report = sync.run(list(dict.fromkeys(channel)), since=started_from, public=public,
                              allow_widen=allow_widen, progress=advance)
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for channel_id, reason in report.failed:
            err.print(f"[red]not read[/] {escape(channel_id)}: {escape(reason)}")
        for path, reason in report.documents.failed:
            err.print(f"[red]failed[/]  {escape(path)}: {escape(reason)}")
        out.print(report.summary())
    if not report.ok:
        raise typer.Exit(1)


def _since_day(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        return datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError as e:
        raise typer.BadParameter(f"expected a day as YYYY-MM-DD, got {since!r}", param_hint="--since") from e


def _slack_ingest(services: Services):
    """The history reader for ``ingest-slack``: the bot token, Slack's client as the bot builds it
    (SLACK_API_URL, retries that wait out Retry-After), the index and the cursors."""
    from bot.app import slack_client
    from bot.slack_history.ingest import build_slack_ingest
    from bot.slack_history.reader import who_am_i

    settings = services.settings
    if not settings.slack_bot_token:
        raise ConfigurationError("SLACK_BOT_TOKEN is not set: ingest-slack reads channels with the bot's token (xoxb-…)")
    client = slack_client(settings, settings.slack_bot_token)
    return build_slack_ingest(services, client, who_am_i(client, settings.slack_api_url))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    channel: ChannelOption,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many passages.")] = 10,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    as_json: JsonOption = False,
) -> None:
    """Show the passages a channel may see for a query, best first (no relevance floor)."""
    if mode not in SEARCH_MODES:
        raise typer.BadParameter(f"choose one of {', '.join(SEARCH_MODES)}", param_hint="--mode")
    with _services(reading=True) as services:
        passages, timings = services.retriever.search(query, Audience.for_conversation(channel), k=k, mode=mode)
    if as_json:
        results = [
            {"doc_id": p.doc_id, "title": p.title, "source": p.source, "text": p.text, "score": round(p.score, 4),
             "similarity": round(p.similarity, 4), "scope": p.scope.as_list(), "chunk_id": p.chunk_id}
            for p in passages
        ]
        print(json.dumps({"results": results, "timings_ms": {k_: round(v, 1) for k_, v in timings.items()}}))
        return
    if not passages:
        out.print("No documents visible to this channel match.")
        return
    table = Table(show_lines=True)
    for column in ("#", "score", "document", "passage"):
        table.add_column(column, overflow="fold")
    for n, p in enumerate(passages, start=1):
        document = f"[bold]{escape(p.title)}[/]\n[dim]{escape(p.source)}\nscope: {escape(str(p.scope))}[/]"
        table.add_row(str(n), f"{p.score:.3f}", document, escape(shorten(p.text, 300)))
    out.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, as you would ask it in Slack.")],
    channel: ChannelOption,
    user: Annotated[Optional[str], typer.Option("--user", help="Slack user ID of the asker (for logs; per-user access is not resolved yet).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question from the documents the channel may see, with numbered sources."""
    with _services(reading=True) as services:
        log.info("ask from user=%s channel=%s", user or "-", channel)
        answer = answer_question(question, Audience.for_conversation(channel), services.answer_deps)
    if as_json:
        print(json.dumps(answer.as_json()))
    else:
        print_answer(answer, out)


@app.command()
def documents(
    channel: Annotated[Optional[str], typer.Option("--channel", "-c", help="Only what this conversation may see.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the documents in the index (those a channel may draw on, with --channel).

    Slack history shows its channel, day, authors (by name, where SLACK_BOT_TOKEN may call
    users.info) and permalink."""
    from bot.slack_sources import listed_slack_source

    with _services(reading=True) as services:
        access = filter_for(Audience.for_conversation(channel)) if channel is not None else None
        docs = services.store.list_documents(access)
        slack = {d.doc_id: listed_slack_source(d, services.store) for d in docs}
        names = _people(services) if any(slack.values()) else None
        rows = [_document_row(d, slack[d.doc_id], names) for d in docs]
    if as_json:
        print(json.dumps({"documents": rows}))
        return
    table = Table()
    for column in ("title", "source", "scope", "chunks"):
        table.add_column(column, overflow="fold")
    for d, row in zip(docs, rows):
        title = d.title
        if "slack" in row:
            s = row["slack"]
            title = f"#{s['channel']} · {s['date']} · {', '.join(a['name'] for a in s['authors'])}\n{title}"
        table.add_row(escape(title), escape(d.source), escape(str(d.scope)), str(d.chunks))
    out.print(table if docs else "The index holds no documents visible here.")


def _document_row(d, slack, names) -> dict:
    from bot.rendering import clean_name

    row = {"doc_id": d.doc_id, "title": d.title, "source": d.source, "scope": d.scope.as_list(), "chunks": d.chunks}
    if slack is not None:
        row["slack"] = {"channel_id": slack.channel_id, "channel": slack.channel_name, "date": slack.date,
                        "permalink": slack.permalink,
                        "authors": [{"id": a, "name": (clean_name(names(a)) if names else "") or a}
                                    for a in slack.authors]}
    return row


def _people(services: Services):
    """Names for Slack authors where the bot token is set (users.info, scope users:read), else bare IDs.
    A quick client: a refused or unreachable Slack shows IDs rather than holding the listing."""
    from bot.app import conversation_lookup_client
    from bot.people import People

    token = services.settings.slack_bot_token
    return People(conversation_lookup_client(services.settings, token) if token else None)


@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="Serve the Events API, slash commands and interactivity over HTTP (the default).")] = False,
    socket: Annotated[bool, typer.Option("--socket", help="Connect to Slack over Socket Mode (needs SLACK_APP_TOKEN); no public URL needed.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: any free port).")] = 3000,
    host: Annotated[str, typer.Option("--host", help="HTTP address to listen on.")] = "0.0.0.0",
) -> None:
    """Run the Slack bot: answers @mentions in threads, /lorebot, feedback reactions and App Home."""
    from bot.serving import run_http, run_socket_mode

    if http and socket:
        raise typer.BadParameter("choose --http or --socket, not both", param_hint="--socket")
    with _clear_errors():
        settings = load_settings()
        if socket:
            run_socket_mode(settings, console=err)
        else:
            run_http(settings, host=host, port=port, console=err)


@app.command()
def scheduler() -> None:
    """Run the cadence until stopped (Ctrl-C or SIGTERM): reconcile votes with Slack, export the
    dataset, train when enough is new, re-ingest the configured sources. Jobs live in the database."""
    import signal

    from bot.app import build_job_scheduler
    from bot.jobs import job_specs
    from bot.logs import log_like_a_server
    from bot.metrics import METRICS_PATH, Metrics, serving_metrics
    from bot.redaction import install_redaction
    from training.schedule import start_with_jobs

    with _clear_errors(), ExitStack() as stack:
        settings = load_settings()
        install_redaction(settings.secrets)
        log_like_a_server(settings.log_format)
        specs = job_specs(settings)
        metrics = Metrics()
        metrics.expect_jobs(spec.id for spec in specs)
        runner = build_job_scheduler(settings, metrics, blocking=True)
        served = stack.enter_context(serving_metrics(metrics, host=settings.metrics_host, port=settings.metrics_port))
        if served is not None:
            err.print(f"Metrics at {served.url}{METRICS_PATH}")
        previous = signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
        try:
            start_with_jobs(runner, specs, on_started=_print_schedule)
        except KeyboardInterrupt:
            err.print("Stopping: waiting for running jobs to finish (Ctrl-C again to leave them)…")
        finally:
            signal.signal(signal.SIGTERM, previous)
            if runner.running:
                try:
                    runner.shutdown(wait=True)
                except KeyboardInterrupt:
                    raise typer.Exit(130) from None
    err.print("Scheduler stopped.")


def _stop_like_ctrl_c(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _print_schedule(runner, report) -> None:
    from training.schedule import describe_trigger

    changes = [f"{what}: {', '.join(ids)}" for what, ids in
               (("added", report.added), ("updated", report.updated), ("removed", report.removed)) if ids]
    out.print(f"Scheduler running (times in {runner.timezone})" + (f"; {'; '.join(changes)}" if changes else ""))
    table = Table()
    for column in ("job", "schedule", "next run", "what"):
        table.add_column(column)
    for job in sorted(runner.get_jobs(), key=lambda j: j.next_run_time or datetime.max.replace(tzinfo=timezone.utc)):
        next_run = f"{job.next_run_time:%Y-%m-%d %H:%M %Z}" if job.next_run_time else "paused"
        table.add_row(escape(job.id), escape(describe_trigger(job.trigger)), next_run, escape(job.name))
    out.print(table)


feedback_app = typer.Typer(help="Answers given and the votes they got.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("stats")
def feedback_stats(as_json: JsonOption = False) -> None:
    """How many answers were given and how many 👍 / 👎 they got; how the scheduled jobs last ran."""
    with _database() as store:
        stats = store.stats()
        jobs = latest_runs(store.engine)
    if as_json:
        print(json.dumps({**stats.as_json(), "jobs": {name: run.as_json() for name, run in jobs.items()}}))
        return
    out.print(f"{stats.interactions} answers, {stats.upvotes} 👍, {stats.downvotes} 👎 from {stats.voters} voters")
    _print_job_runs(jobs)


def _print_job_runs(jobs: dict[str, JobRun]) -> None:
    if not jobs:
        out.print("No scheduled job has run yet (lorebot scheduler runs them).")
        return
    out.print("Scheduled jobs, last run:")
    colours = {"ok": "green", "skipped": "yellow", "failed": "red", "running": "cyan"}
    for name, run in jobs.items():
        detail = f": {escape(run.detail)}" if run.detail else ""
        out.print(f"  {escape(name)} [{colours.get(run.outcome, 'white')}]{run.outcome}[/] "
                  f"{run.started_at:%Y-%m-%d %H:%M} UTC{detail}")


@feedback_app.command("export")
def feedback_export(
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """One JSON line per answer: question, passages (text and scope), answer, generator, votes, and
    whether it may be trained on (``training``: "train", "heldout" or the reason it is left out)."""
    from training.dataset import build_dataset

    with _services() as services:
        # The dataset rules as the train job applies them (a dry run: nothing is written).
        decisions = build_dataset(services.feedback, services.settings.data_dir / "training" / "export",
                                  services.training_plan().dataset, write=False).decisions
        target = out_file.open("w", encoding="utf-8") if out_file else sys.stdout
        try:
            count = 0
            for record in services.feedback.export():
                record["training"] = decisions.get(record["interaction_id"], "not_endorsed")
                target.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        finally:
            if out_file:
                target.close()
    if out_file:
        err.print(f"Wrote {count} interaction{'s' if count != 1 else ''} to {escape(str(out_file))}")


@contextmanager
def _database() -> Iterator[FeedbackStore]:
    services = None
    with _clear_errors():
        try:
            services = build_services(load_settings())
            yield services.feedback
        finally:
            if services is not None:
                services.close()


eval_app = typer.Typer(help="Measure lorebot on a labelled data set.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    dataset_dir: Annotated[Path, typer.Argument(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")],
    split: Annotated[str, typer.Option("--split", help="Which qrels file to score against.")] = "test",
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Embed the corpus again even if a cached index matches.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON line on stdout.")] = False,
) -> None:
    """Index the corpus (cached), ask every judged query, report nDCG@10, recall@10/100, MRR@10, latency."""
    from knowledge.evaluation.beir import load_beir
    from knowledge.evaluation.runner import run_queries

    if mode not in SEARCH_MODES:
        raise typer.BadParameter(f"choose one of {', '.join(SEARCH_MODES)}", param_hint="--mode")
    with _clear_errors():
        dataset = load_beir(dataset_dir, split)
        settings = load_settings()
        # Set up as the bot runs (question encoder, vectors in memory): latency as users see it.
        services = build_services(settings, long_running=True)
        try:
            with _progress("Indexing", unit="documents", enabled=not as_json) as advance:
                store, index = services.build_eval_index(dataset, rebuild=rebuild, progress=advance)
            try:
                retriever = services.retriever_for(store)
                with _progress("Querying", unit="queries", enabled=not as_json) as advance:
                    result = run_queries(retriever, dataset, mode=mode, progress=advance)
            finally:
                store.close()
        finally:
            services.close()
    summary = {
        "dataset": dataset.name, "split": split, "mode": mode, "queries": result.queries,
        **{name: round(value, 4) for name, value in result.metrics.items()},
        "latency_ms": result.latency(),
        "index": {"documents": index.documents, "chunks": index.chunks, "cached": index.cached,
                  "seconds": round(index.seconds, 1), "failed": len(index.failed)},
        "unanswerable_queries": len(result.unanswerable),
        "settings": {"embedding_model": settings.embedding_model, "chunk_tokens": services.chunking.max_tokens,
                     "dense_weight": settings.dense_weight, "candidates": settings.candidates},
    }
    if not as_json:
        _print_eval(summary, index.failed)
    print(json.dumps(summary))


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Argument(help="JSONL, one question a line: question, channel, facts (strings the answer must contain; [] = should be not found), optional sources.")],
    handbook: Annotated[bool, typer.Option("--handbook", help="Answer from the bundled handbook, ingested into a throwaway index first, instead of the index in LOREBOT_DATA_DIR.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON line on stdout.")] = False,
) -> None:
    """Ask every question from its channel as `lorebot ask` does; report fact recall, citation
    precision, not-found accuracy both ways, answer length and the answer step's latency."""
    from bot.answer_eval import handbook_services, load_dataset, render, run_questions, summarise

    with _clear_errors():
        items = load_dataset(dataset)  # a malformed line fails before any model is loaded
    if handbook and not as_json:
        err.print("Ingesting the bundled handbook into a throwaway index…")
    services_cm = _clear_errors_around(handbook_services()) if handbook else _services(reading=True)
    with services_cm as services:
        with _progress("Answering", unit="questions", enabled=not as_json) as advance:
            outcomes = run_questions(items, services.answer_deps, progress=advance)
        generator = services.answer_deps.generator.name
    summary = summarise(outcomes, generator)
    if as_json:
        print(json.dumps(summary))
    else:
        render(summary, outcomes, out)


@contextmanager
def _clear_errors_around(context) -> Iterator[Services]:
    """``context`` entered, used and closed with ``_clear_errors``' messages and exit codes."""
    with _clear_errors(), context as value:
        yield value


def _print_eval(summary: dict, failed: tuple[tuple[str, str], ...]) -> None:
    for doc, reason in failed:
        err.print(f"[yellow]not indexed[/] {escape(doc)}: {escape(reason)}")
    index = summary["index"]
    where = "cached index" if index["cached"] else f"indexed in {index['seconds']:.0f}s"
    table = Table(title=f"{summary['dataset']} ({summary['split']}, {summary['queries']} queries, "
                        f"{summary['mode']}; {index['documents']} documents, {index['chunks']} chunks, {where})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        table.add_row(name, f"{summary[name]:.4f}")
    latency = summary["latency_ms"]
    table.add_row("latency p50 / p95", f"{latency['p50']:.1f} / {latency['p95']:.1f} ms")
    out.print(table)


index_app = typer.Typer(help="The search index: where it lives.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("migrate")
def index_migrate(
    to: Annotated[str, typer.Option("--to", help="weaviate (from the embedded index) or embedded (from Weaviate).")],
    weaviate_url: Annotated[Optional[str], typer.Option("--weaviate-url", help="Weaviate to copy to or from (default: WEAVIATE_URL).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Copy every chunk, with its vector and scope, to the other store; resumable; verified at the end."""
    from knowledge.migration import migrate

    if to not in ("weaviate", "embedded"):
        raise typer.BadParameter("choose weaviate or embedded", param_hint="--to")
    with _clear_errors():
        settings = load_settings()
        url = weaviate_url or settings.weaviate_url
        if not url:
            raise ConfigurationError("no Weaviate to migrate with: set WEAVIATE_URL or pass --weaviate-url")
        if to == "weaviate" and not settings.index_dir.is_dir():
            raise StoreError(f"there is no embedded index at {settings.index_dir} to copy (check LOREBOT_DATA_DIR)")
        with ExitStack() as stack:
            services = build_services(settings)
            stack.callback(services.close)
            embedded = services.open_index(settings.index_dir)
            stack.callback(embedded.close)
            weaviate = services.open_weaviate(url)
            stack.callback(weaviate.close)
            source, target = (embedded, weaviate) if to == "weaviate" else (weaviate, embedded)
            with _progress("Copying", unit="chunks", enabled=not as_json) as advance:
                report = migrate(source, target, progress=advance)
    summary = {"to": to, **report.as_dict()}
    if as_json:
        print(json.dumps(summary))
    else:
        _print_migration(summary)
    if not report.verified:
        raise typer.Exit(1)


def _print_migration(summary: dict) -> None:
    out.print(f"{summary['documents']} documents, {summary['chunks']} chunks: copied {summary['copied_documents']} "
              f"documents ({summary['copied_chunks']} chunks), {summary['skipped_documents']} already there.")
    for doc_id, problem in sorted(summary["mismatches"].items()):
        err.print(f"[red]not verified[/] {escape(doc_id)}: {escape(problem)}")
    if summary["extra_in_target"]:
        out.print(f"{len(summary['extra_in_target'])} documents were only in the target and were kept.")
    out.print("[green]verified[/]: every document is in the target with all its chunks" if summary["verified"]
              else "[red]the copy is incomplete[/]: run the command again to resume")


@app.command()
def demo() -> None:
    """Ingest the bundled sample handbook into a throwaway index and answer questions from several channels."""
    from bot.demo import run_demo

    with _clear_errors():
        ok = run_demo(out)
    if not ok:
        raise typer.Exit(1)


def print_answer(answer: Answer, console: Console) -> None:
    """An answer and its numbered sources, laid out for a terminal."""
    if answer.note:
        console.print(f"[yellow]{escape(answer.note)}[/]")
    console.print(escape(answer.text))
    if answer.citations:
        console.print("\n[bold]Sources[/]")
    for c in answer.citations:
        console.print(f"  [bold][{c.n}][/] {escape(c.title)} [dim]({escape(c.source)})[/]")
        if not answer.already_quotes(c):
            console.print(f"      [italic]“{escape(c.snippet)}”[/]")
    if answer.consulted:
        console.print("\n[bold]Sources consulted[/] (the answer cites none of them)")
    for c in answer.consulted:
        console.print(f"  • {escape(c.title)} [dim]({escape(c.source)})[/]")


@contextmanager
def _widening_as_json(as_json: bool) -> Iterator[None]:
    """With --json, a refused widening is also one JSON object on stdout (the message stays on stderr)."""
    try:
        yield
    except WideningRefused as e:
        if as_json:
            print(json.dumps({"error": "widening_refused", "message": str(e), "widened": [
                {"path": what, "old_scope": old.as_list(), "new_scope": new.as_list()} for what, old, new in e.widened
            ]}))
        raise


def _print_ingest_report(report: IngestReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}")
    for path, reason in report.failed:
        err.print(f"[red]failed[/]  {escape(path)}: {escape(reason)}")
    out.print(report.summary())


@contextmanager
def _progress(label: str, *, enabled: bool, unit: str = "files") -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal; nothing when output is piped or --json is set."""
    if not (enabled and err.is_terminal):
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


register_training_commands(app, _services, out, err)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
