"""Fixtures the knowledge tests share."""

from __future__ import annotations

import pytest

from knowledge.ingest import Ingestor
from knowledge.stores.lancedb import LanceStore


@pytest.fixture
def ingestor(tmp_path, hashing_embedder):
    """An ingestor over a fresh embedded index, with the hashing stand-in for the model."""
    store = LanceStore(tmp_path / "index", dimension=hashing_embedder.dimension, model_id=hashing_embedder.model_id)
    yield Ingestor(store=store, embedder=hashing_embedder)
    store.close()
