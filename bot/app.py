"""The composition root: builds every client once, from settings, and hands them to whoever needs them.

Nothing else in lorebot constructs a store, an embedder or a generator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from sqlalchemy import Engine

from bot.answering import AnswerDeps
from bot.config import Settings
from bot.conversations import ConversationKinds
from bot.credentials import SlackCredentials
from bot.current_documents import IndexedDocuments
from bot.dedup import EventLedger
from bot.generation import ExtractiveGenerator, Generator
from bot.generation.adapters import AdapterChoice
from bot.generation.fallback import WithFallback
from bot.generation.server_errors import GenerationServerError
from bot.generation.tgi import TGIGenerator, TGIOptions
from bot.generation.unit_vectors import UnitVectors
from bot.home import HomeFacts, public_slack_sources
from bot.listeners import BotDeps, register_listeners
from bot.logs import job_request_id, request_context, slack_request_id
from bot.metrics import Metrics, counting_into
from bot.people import Names, People
from bot.redaction import install_redaction
from bot.replies import ReplyDeps
from bot.slack_history.reader import auth_test
from bot.slack_retries import slack_retry_handlers
from bot.slash import SlashDeps
from bot.workers import CountingExecutor
from knowledge.chunking import ChunkingOptions
from knowledge.embedding import Embedder, load_embedder
from knowledge.evaluation.beir import BeirDataset
from knowledge.evaluation.runner import EvalIndex, build_eval_index
from knowledge.ingest import Ingestor
from knowledge.retrieval import RetrievalOptions, Retriever
from knowledge.stores.base import VectorStore
from knowledge.stores.lancedb import LanceStore
from knowledge.stores.weaviate import WeaviateOptions, WeaviateStore
from training.database import default_database_url, open_engine
from training.feedback import FeedbackStore
from training.jobs_log import latest_runs
from training.registry import AdapterRegistry, PromotionHook, command_hook

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from training.pipeline import TrainingPlan

log = logging.getLogger(__name__)

LEDGER_MEMORY = timedelta(days=1)


@dataclass
class Services:
    """Lazily built clients: a command that only lists documents never loads the model twice, etc.

    ``long_running`` (the bot, not a one-shot command) buys query speed with start-up work and
    memory: questions are embedded by an ONNX export of the model, and the store keeps its vectors
    in memory below the ANN threshold. A single ``lorebot ask`` would pay for both and use neither.
    """

    settings: Settings
    long_running: bool = False

    @cached_property
    def embedder(self) -> Embedder:
        int8 = self.settings.embedding_backend == "onnx-int8"
        onnx_cache = self.settings.data_dir / "models" if self.long_running or int8 else None
        return load_embedder(self.settings.embedding_model, batch_size=self.settings.embedding_batch_size,
                             onnx_cache_dir=onnx_cache, backend=self.settings.embedding_backend)

    @cached_property
    def store(self) -> VectorStore:
        """Weaviate when WEAVIATE_URL is set, else the embedded index in the data directory."""
        if self.settings.weaviate_url:
            return self.open_weaviate(self.settings.weaviate_url)
        return self.open_index(self.settings.index_dir)

    def open_weaviate(self, url: str) -> WeaviateStore:
        """The Weaviate collection at ``url`` (connects and checks readiness and schema now)."""
        s = self.settings
        options = WeaviateOptions(
            url=url, api_key=s.weaviate_api_key, grpc_host=s.weaviate_grpc_host, grpc_port=s.weaviate_grpc_port,
            collection=s.weaviate_collection,
            timeout_s=s.weaviate_timeout_s, retries=s.weaviate_retries, replication_factor=s.weaviate_replication_factor,
            shards=s.weaviate_shards, consistency=s.weaviate_consistency, fusion=s.weaviate_fusion,
        )
        return WeaviateStore(options, dimension=self.embedder.dimension, model_id=self.embedder.model_id)

    def open_index(self, path: Path) -> LanceStore:
        """An embedded index at ``path`` set up like the main one (``eval`` builds its own)."""
        return LanceStore(
            path,
            dimension=self.embedder.dimension,
            model_id=self.embedder.model_id,
            ann_min_rows=self.settings.ann_min_rows,
            vectors_in_memory=self.long_running,
            write_lock_timeout_s=self.settings.index_lock_timeout_s,
        )

    @property
    def chunking(self) -> ChunkingOptions:
        return ChunkingOptions(
            max_tokens=min(self.settings.chunk_tokens, getattr(self.embedder, "max_tokens", 10_000)),
            overlap_tokens=self.settings.chunk_overlap_tokens,
        )

    @property
    def retrieval_options(self) -> RetrievalOptions:
        return RetrievalOptions(
            candidates=self.settings.candidates,
            dense_weight=self.settings.dense_weight,
            min_similarity=self.settings.min_similarity,
            min_similarity_all_words=self.settings.min_similarity_all_words,
            mend_questions=self.settings.mend_questions,
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        prepare = self.unit_vectors.prepare if self.settings.answer_unit_vectors else None
        return Ingestor(store=self.store, embedder=self.embedder, chunking=self.chunking, after_write=prepare)

    @cached_property
    def unit_vectors(self) -> UnitVectors:
        """Quotable units' vectors: embedded at ingest, read back by the extractive generator."""
        path = self.settings.data_dir / "unit_vectors.sqlite3" if self.settings.answer_unit_vectors else None
        return UnitVectors(self.embedder, path)

    @cached_property
    def retriever(self) -> Retriever:
        return self.retriever_for(self.store)

    def build_eval_index(self, dataset: BeirDataset, *, rebuild: bool = False,
                         progress: Callable[[int, int], None] | None = None) -> tuple[LanceStore, EvalIndex]:
        """A throwaway index of an evaluation corpus, ingested as real documents are (cached)."""
        return build_eval_index(
            dataset, cache_root=self.settings.data_dir / "eval", open_store=self.open_index,
            ingestor_for=lambda store: Ingestor(store=store, embedder=self.embedder, chunking=self.chunking),
            model_id=self.embedder.model_id, chunking=self.chunking, rebuild=rebuild, progress=progress,
        )

    def retriever_for(self, store: VectorStore) -> Retriever:
        return Retriever(store=store, embedder=self.embedder, options=self.retrieval_options)

    @cached_property
    def generator(self) -> Generator:
        """The model at TGI_URL (quoting whenever it cannot answer), else quoting."""
        extractive = ExtractiveGenerator(embedder=self.embedder, max_units=self.settings.answer_max_units,
                                         max_chars=self.settings.answer_max_chars, unit_vectors=self.unit_vectors)
        if not self.settings.tgi_url:
            return extractive
        return WithFallback(primary=self.tgi, fallback=extractive, on_fallback=self.metrics.fallback)

    @cached_property
    def tgi(self) -> TGIGenerator:
        s = self.settings
        options = TGIOptions(
            url=s.tgi_url or "", token=s.hf_token, connect_timeout_s=s.tgi_connect_timeout_s,
            first_token_timeout_s=s.tgi_first_token_timeout_s, total_timeout_s=s.tgi_total_timeout_s,
            retries=s.tgi_retries, max_answer_tokens=s.max_answer_tokens, temperature=s.temperature,
            breaker_failures=s.tgi_breaker_failures, breaker_cooldown_s=s.tgi_breaker_cooldown_s,
        )
        adapters = AdapterChoice(configured=s.adapter, registry=self.registry, per_channel=s.channel_adapters)
        return TGIGenerator(options, adapters=adapters)

    def check_generation_server(self) -> str:
        """One line on the generation server, for start-up: what it serves, or why answers will quote."""
        if not self.settings.tgi_url:
            return "Answers quote the documents (extractive); set TGI_URL to have a model write them."
        try:
            info = self.tgi.check()
        except GenerationServerError as e:
            return f"warning: {e}. Answers quote the documents until it is back."
        adapter = self.tgi.adapters.adapter_for(None)
        return f"Answers are written by {info.describe()}; adapter: {adapter or 'none (base model)'}."

    @cached_property
    def metrics(self) -> Metrics:
        """This process's metrics (``/metrics``), on a registry of their own."""
        return Metrics()

    @property
    def answer_deps(self) -> AnswerDeps:
        return AnswerDeps(retriever=self.retriever, generator=self.generator)

    @cached_property
    def registry(self) -> AdapterRegistry:
        return AdapterRegistry(self.settings.adapter_registry_dir)

    def training_plan(self) -> TrainingPlan:
        """What ``lorebot train`` and the scheduler's train job run with, from settings."""
        # Imported here: the dataset and training modules (torch, peft) are for training commands only.
        from training.dataset import DatasetOptions
        from training.evaluate import GateOptions
        from training.finetune import LoraOptions
        from training.pipeline import TrainingPlan

        s = self.settings
        return TrainingPlan(
            base_model=s.base_model,
            dataset=DatasetOptions(min_net_votes=s.train_min_net_votes, min_upvotes=s.train_min_upvotes,
                                   trainable_channels=frozenset(s.trainable_channels),
                                   heldout_fraction=s.heldout_fraction,
                                   documents=IndexedDocuments(lambda: self.store)),
            lora=LoraOptions(rank=s.lora_rank, alpha=s.lora_alpha, dropout=s.lora_dropout,
                             target_modules=tuple(s.lora_target_modules), epochs=s.train_epochs,
                             learning_rate=s.train_learning_rate, batch_size=s.train_batch_size,
                             max_seq_len=s.train_max_seq_len),
            # The gate measures examples laid out as training saw them: the same length cap.
            gate=GateOptions(margin=s.promotion_margin, min_citation_validity=s.promotion_min_citation_validity,
                             max_seq_len=s.train_max_seq_len),
            min_new_examples=s.train_min_new_examples,
            promotion_hook=self.promotion_hook,
        )

    @property
    def promotion_hook(self) -> PromotionHook | None:
        return command_hook(self.settings.promotion_hook) if self.settings.promotion_hook else None

    @cached_property
    def database(self) -> Engine:
        """Feedback and the event ledger: SQLite in the data directory unless LOREBOT_DATABASE_URL says otherwise."""
        return open_engine(self.settings.database_url or default_database_url(self.settings.data_dir))

    @cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.database)

    @cached_property
    def ledger(self) -> EventLedger:
        return EventLedger(self.database)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
        if "database" in self.__dict__:
            self.database.dispose()
        if "unit_vectors" in self.__dict__:
            self.unit_vectors.close()


def build_services(settings: Settings, *, embedder: Embedder | None = None, long_running: bool = False) -> Services:
    """Services for these settings; an already loaded embedder can be shared (tests, the demo)."""
    services = Services(settings=settings, long_running=long_running)
    if embedder is not None:
        services.__dict__["embedder"] = embedder  # pre-fills the cached_property
    return services


@dataclass
class SlackBot:
    """The Bolt app with everything its listeners use; ``close()`` stops the answer workers."""

    app: App
    deps: BotDeps
    listener_threads: CountingExecutor
    workers: CountingExecutor
    metrics: Metrics
    stopping: threading.Event = field(default_factory=threading.Event)
    # Slack history updates from events (one thread: updates of a channel apply in order).
    history_workers: CountingExecutor | None = None

    def start_housekeeping(self, every_s: float = 3600.0) -> None:
        """Forget events older than a day, hourly: Slack stops retrying an event within the hour,
        and the ledger would otherwise grow forever."""

        def loop() -> None:
            while not self.stopping.wait(every_s):
                try:
                    self.deps.ledger.forget_older_than(LEDGER_MEMORY)
                except Exception:
                    log.warning("could not prune the event ledger", exc_info=True)

        threading.Thread(target=loop, name="lorebot-housekeeping", daemon=True).start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every request received so far has been fully handled (listeners hand work
        to the workers, so both must be empty at once)."""
        deadline = time.monotonic() + timeout
        # Workers never hand work back to listeners, so once the listeners are idle only the
        # workers' queue can still grow, and it only shrinks.
        idle = self.listener_threads.wait_idle(timeout) and \
            self.workers.wait_idle(max(0.0, deadline - time.monotonic()))
        if self.history_workers is None:
            return idle
        return idle and self.history_workers.wait_idle(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Finish what was accepted: listeners first (they hand work to the workers), then answers."""
        self.stopping.set()
        self.listener_threads.shutdown(wait=True)
        self.workers.shutdown(wait=True)
        if self.history_workers is not None:
            self.history_workers.shutdown(wait=True)


def slack_client(settings: Settings, token: str) -> WebClient:
    """The Web API client for every Slack call: SLACK_API_URL, and retries that honour rate limits
    (429 with Retry-After) and brief connection failures, so an answer is delayed, not lost."""
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=slack_retry_handlers(),
    )


def conversation_lookup_client(settings: Settings, token: str) -> WebClient:
    """The client for lookups an answer waits on (what kind of conversation it came from, source
    authors' names): quick, and never waiting out a rate limit (the answer would wait with it; the
    kind is recorded as unknown, a name shown as the bare ID, instead)."""
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=5,
                     retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)])


def build_slack_bot(services: Services, credentials: SlackCredentials) -> SlackBot:
    """The Bolt app, its listeners registered with their dependencies.

    The bot token is checked with ``auth.test`` first, so a revoked token or an unreachable
    SLACK_API_URL is one clear error at start.
    """
    settings = services.settings
    install_redaction(settings.secrets)
    client = slack_client(settings, credentials.bot_token)
    identity = auth_test(client, settings.slack_api_url)
    workers = CountingExecutor(settings.answer_workers, name="lorebot-answer")
    # Bolt runs listeners here after acking; they only parse, de-duplicate and hand over, so a few
    # threads keep up with any burst.
    listener_threads = CountingExecutor(8, name="lorebot-listener")
    history_workers = CountingExecutor(1, name="lorebot-history")
    # Lookups on the way to an answer (the conversation's kind, Slack sources' authors' names) use the
    # quick client: a rate-limited users.info must not hold the answer back by Retry-After × retries.
    quick = conversation_lookup_client(settings, credentials.bot_token)
    conversations = ConversationKinds(quick)
    people = People(quick)  # one cache of authors' names for answers, /lorebot sources and the Home tab
    replies = ReplyDeps(client=client, answering=services.answer_deps, feedback=services.feedback,
                        bot_user_id=identity.get("user_id"), bot_id=identity.get("bot_id"), metrics=services.metrics,
                        thread_messages=settings.thread_context_messages, thread_chars=settings.thread_context_chars,
                        conversations=conversations, names=people)
    deps = BotDeps(
        replies=replies,
        slash=SlashDeps(client=client, answering=services.answer_deps, feedback=services.feedback,
                        store=services.store, metrics=services.metrics, conversations=conversations,
                        names=people),
        ledger=services.ledger,
        workers=workers,
        home_facts=lambda: _home_facts(services, people),
        follow_up_in_threads=settings.follow_up_in_threads,
        slack_sync=_slack_sync(services, client, identity, conversations),
        history_workers=history_workers,
    )
    app = _TracedApp(
        client=client,
        signing_secret=credentials.signing_secret,
        # Socket Mode messages come over an authenticated socket and carry no signature.
        request_verification_enabled=credentials.signing_secret is not None,
        # Already verified above; Bolt still learns the bot's IDs (to ignore its own events).
        token_verification_enabled=True,
        logger=logging.getLogger("lorebot.bolt"),
        listener_executor=listener_threads,
    )
    register_listeners(app, deps)
    bot = SlackBot(app=app, deps=deps, listener_threads=listener_threads, workers=workers, metrics=services.metrics,
                   history_workers=history_workers)
    bot.start_housekeeping()
    # The words questions are mended from: read now (seconds on a large index), not on the first
    # question, and kept current beside the questions.
    services.retriever.keep_vocabulary_current(bot.stopping)
    return bot


def _slack_sync(services: Services, client: WebClient, identity: dict, conversations: ConversationKinds):
    """What keeps listed channels' history current from events (bot/slack_history/sync.py)."""
    from bot.slack_history.reader import Identity
    from bot.slack_history.sync import build_slack_sync

    me = Identity(workspace_url=str(identity.get("url") or ""), user_id=str(identity.get("user_id") or ""),
                  bot_id=identity.get("bot_id"))
    sync = build_slack_sync(services, client, me, conversations=conversations)
    sync.events_missed()  # whatever happened while no bot listened: the next catch-up reads listed channels whole
    return sync


class _TracedApp(App):
    """Bolt's app, each request handled under its own request ID (the logs' ``request_id``): Bolt's
    middleware cannot wrap the listeners it starts, so the dispatch itself is wrapped."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        with request_context(slack_request_id(req.body)):
            return super().dispatch(req)


def build_job_scheduler(settings: Settings, metrics: Metrics, *, blocking: bool) -> BaseScheduler:
    """The scheduler ``lorebot scheduler`` runs (not started): jobs in lorebot's database, every run
    counted in ``metrics`` and logged under the request ID ``job:run``."""
    from training.schedule import build_scheduler

    url = settings.database_url or default_database_url(settings.data_dir)
    return build_scheduler(url, blocking=blocking, on_run=metrics.job_run, run_context=partial(_job_run, metrics))


@contextmanager
def _job_run(metrics: Metrics, job_id: str, run_id: int) -> Iterator[None]:
    with request_context(job_request_id(job_id, run_id)), counting_into(metrics):
        yield


def _home_facts(services: Services, people: Names | None = None) -> HomeFacts:
    try:
        stats = services.feedback.stats()
    except Exception:
        log.error("could not read feedback totals for the App Home", exc_info=True)
        stats = None
    try:
        jobs = latest_runs(services.database)
    except Exception:
        log.error("could not read the scheduled jobs' runs for the App Home", exc_info=True)
        jobs = None
    documents = services.store.list_documents(None)
    return HomeFacts(documents=documents, stats=stats,
                     generator=services.generator.name,
                     adapter=services.tgi.adapters.adapter_for(None) if services.settings.tgi_url else None,
                     jobs=jobs, slack_sources=public_slack_sources(services.store, documents), names=people)
