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


def test_questions_go_through_an_onnx_export_that_gives_the_same_vectors(tmp_path):
    embedder = load_embedder(onnx_cache_dir=tmp_path)
    exported = tmp_path / f"{BUNDLED_WEIGHTS_SHA256}.onnx"
    assert embedder.question_encoder is not None and exported.is_file()
    questions = ["What is the on-call allowance?", "and for contractors?"]
    fast = embedder.encode(questions)
    slow = embedder.model.encode(questions, normalize_embeddings=True, convert_to_numpy=True)
    assert fast.shape == (2, 384) and np.abs(fast - slow).max() < 1e-5
    # The export is made once and reused.
    made_at = exported.stat().st_mtime_ns
    again = load_embedder(onnx_cache_dir=tmp_path)
    assert again.question_encoder is not None and exported.stat().st_mtime_ns == made_at


def test_a_corrupt_onnx_export_is_made_again(tmp_path, caplog):
    cached = tmp_path / f"{BUNDLED_WEIGHTS_SHA256}.onnx"
    cached.write_bytes(b"not a model")
    embedder = load_embedder(onnx_cache_dir=tmp_path)
    assert embedder.question_encoder is not None and cached.stat().st_size > 1_000_000
    assert "exporting again" in caplog.text


def test_without_a_usable_export_questions_stay_on_pytorch(tmp_path, caplog):
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file where the cache folder should be")
    embedder = load_embedder(onnx_cache_dir=not_a_folder)
    assert embedder.question_encoder is None
    assert "embedded with PyTorch" in caplog.text
    assert embedder.encode(["still works"]).shape == (1, 384)


def test_the_int8_backend_is_close_to_the_model_and_its_own_index(tmp_path, real_embedder):
    texts = ["How many vacation days do new employees get?", "Rotate credentials every ninety days.",
             "The on-call engineer is paid a weekly stipend.", "ok", "a" * 40]
    int8 = load_embedder(backend="onnx-int8", onnx_cache_dir=tmp_path)
    # Slightly different vectors: never mixed into an index built by PyTorch.
    assert int8.model_id == real_embedder.model_id + "+onnx-int8"
    vectors = int8.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * real_embedder.encode(texts)).sum(axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98
    # A text's vector does not depend on what it is embedded with.
    assert np.array_equal(int8.encode(texts[:1])[0], vectors[0])
    assert np.array_equal(int8.encode(texts[::-1])[::-1], vectors)
    built = sorted(tmp_path.glob("*.int8.onnx"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    load_embedder(backend="onnx-int8", onnx_cache_dir=tmp_path)
    assert built[0].stat().st_mtime_ns == mtime  # cached, not built again
    built[0].write_bytes(b"truncated")  # a damaged cache is built again, not an unexpected error
    again = load_embedder(backend="onnx-int8", onnx_cache_dir=tmp_path)
    assert np.array_equal(again.encode(texts), vectors)


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(EmbeddingError, match="unknown embedding backend 'tensorrt'"):
        load_embedder(backend="tensorrt")
