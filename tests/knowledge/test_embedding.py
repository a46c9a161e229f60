"""The embedding model: the bundled default verified, others from disk only, output normalised."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from knowledge.embedding import BUNDLED_WEIGHTS_SHA256, bundled_model_path, load_embedder, verify_weights
from knowledge.errors import EmbeddingError


def test_bundled_weights_match_the_pinned_hash():
    verify_weights(bundled_model_path(), BUNDLED_WEIGHTS_SHA256)


def test_tampered_weights_are_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(bundled_model_path(), copy)
    with (copy / "model.safetensors").open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(EmbeddingError, match="do not match their pinned sha256"):
        verify_weights(copy, BUNDLED_WEIGHTS_SHA256)


def test_missing_weights_are_refused(tmp_path):
    with pytest.raises(EmbeddingError, match="no weights"):
        verify_weights(tmp_path, BUNDLED_WEIGHTS_SHA256)


def test_default_embeddings_are_normalised_and_batched(real_embedder):
    texts = [f"sentence number {i} about expense reports" for i in range(150)]
    vectors = real_embedder.encode(texts)
    assert vectors.shape == (150, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert real_embedder.encode([]).shape == (0, 384)


def test_meaning_is_closer_than_unrelated_text(real_embedder):
    q, near, far = real_embedder.encode(["how many vacation days do I get?", "Employees receive 18 days of paid leave a year.",
                                         "The deploy pipeline runs integration tests."])
    assert q @ near > q @ far + 0.2


def test_a_model_folder_loads_by_path(tmp_path):
    copy = tmp_path / "my-model"
    shutil.copytree(bundled_model_path(), copy)
    embedder = load_embedder(str(copy))
    assert embedder.model_id == str(copy) and embedder.dimension == 384


def test_a_model_name_not_on_disk_is_a_clear_error_and_fetches_nothing():
    with pytest.raises(EmbeddingError, match="from disk"):
        load_embedder("example-org/model-that-is-not-cached")
