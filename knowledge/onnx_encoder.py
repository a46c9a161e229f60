"""A fast path for embedding questions: the same transformer, exported to ONNX and run by ONNX Runtime.

For one short question PyTorch spends most of its time in per-operator overhead: about 11 ms for
all-MiniLM-L6-v2 on two cores, against about 3 ms in ONNX Runtime, for vectors that agree to 1e-6.
The export is made locally from the weights already on disk (nothing is downloaded), once per
model, cached as ``<cache_dir>/<weights digest>.onnx``, and checked against PyTorch on probe
sentences before it is used; anything unexpected leaves questions on PyTorch, with a log line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from knowledge.errors import EmbeddingError

log = logging.getLogger(__name__)

# One export at a time in this process; across processes the atomic rename keeps files whole.
_EXPORT_LOCK = threading.Lock()
# Vectors from the two runtimes must agree this closely, or the export is not used.
MAX_DIFFERENCE = 1e-4
# The int8 encoder's vectors must keep at least this cosine to PyTorch's on every probe (a one-word
# probe drifts most, ~0.97; a full-range quantization on a CPU without VNNI fell to ~0.90).
MIN_INT8_COSINE = 0.95
_PROBES = [
    "How many vacation days do new employees get?",
    "Rotate the production database credentials every ninety days; record it in the runbook.",
    "ok",
]


class OnnxQueryEncoder:
    """Mean-pooled, normalized sentence vectors from an exported transformer (small batches)."""

    def __init__(self, session, tokenizer, *, max_tokens: int):
        self._session = session
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._inputs = [i.name for i in session.get_inputs()]

    def encode_each(self, texts: list[str]) -> np.ndarray:
        """Every text on its own. With dynamic int8 quantization a batch shares one activation
        scale, so a text's vector would depend on its batch-mates; alone, it is always the same.
        It costs nothing: with no padding to compute, one at a time is as fast on a CPU."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate([self.encode([text]) for text in texts])

    def encode(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_tokens,
                                  return_tensors="np")
        feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in self._inputs}
        hidden = self._session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def onnx_query_encoder(model, *, weights_digest: str, cache_dir: Path | None) -> OnnxQueryEncoder | None:
    """The ONNX twin of a sentence-transformers ``model``, or None where it cannot be made safely."""
    if cache_dir is None or not _is_mean_pooled_transformer(model):
        return None
    try:
        import onnxruntime
    except ImportError:
        log.info("onnxruntime is not installed: questions are embedded with PyTorch")
        return None
    path = Path(cache_dir) / f"{weights_digest}.onnx"
    try:
        encoder = _load_or_export(onnxruntime, model, path)
        reference = model.encode(_PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        difference = float(np.abs(encoder.encode(_PROBES) - reference).max())
    except Exception as e:  # an exporter or runtime that cannot handle this model: stay on PyTorch
        log.warning("questions are embedded with PyTorch: no usable ONNX export (%s: %s)", type(e).__name__, e)
        return None
    if difference > MAX_DIFFERENCE:
        log.warning("questions are embedded with PyTorch: the ONNX export differs by %.2g", difference)
        return None
    return encoder


def int8_encoder(model, *, weights_digest: str, cache_dir: Path) -> OnnxQueryEncoder:
    """The model with its attention and layer norms fused and its weights quantized to int8.

    About twice as fast as PyTorch on a CPU without VNNI; the vectors differ slightly (cosine
    ~0.99 to PyTorch's), so an index built with it is a different index (see the embedder's
    model ID). Made once from the local weights and cached; refused if it strays further than
    ``MIN_INT8_COSINE`` from PyTorch on the probe sentences.
    """
    import onnxruntime

    if not _is_mean_pooled_transformer(model):
        raise EmbeddingError("the onnx-int8 backend supports mean-pooled transformer models only")
    path = Path(cache_dir) / f"{weights_digest}.int8.onnx"
    if not path.is_file():
        _quantize(model, path)
    try:
        session = _session(onnxruntime, path)
    except Exception as e:  # a truncated or foreign file: build it again
        log.warning("the cached int8 encoder %s is unreadable (%s): building it again", path, type(e).__name__)
        _quantize(model, path)
        session = _session(onnxruntime, path)
    encoder = OnnxQueryEncoder(session, model.tokenizer, max_tokens=int(model.max_seq_length))
    reference = model.encode(_PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    agreement = float((encoder.encode(_PROBES) * reference).sum(axis=1).min())
    if agreement < MIN_INT8_COSINE:
        raise EmbeddingError(f"the int8 encoder strays from the model (cosine {agreement:.3f}): "
                             "use LOREBOT_EMBEDDING_BACKEND=torch")
    return encoder


def _quantize(model, path: Path) -> None:
    """Export (eager attention, which the optimizer knows how to fuse), fuse, quantize; atomic."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = model[0].auto_model.config
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported, fused, quantized = (Path(scratch) / name for name in ("fp32.onnx", "fused.onnx", path.name))
        _export(model, exported, attention="eager")
        optimize_model(str(exported), model_type="bert", num_heads=config.num_attention_heads,
                       hidden_size=config.hidden_size).save_model_to_file(str(fused))
        # Per-channel scales and 7-bit weights: without VNNI, full-range int8 products saturate
        # and the vectors drift (cosine ~0.95 to PyTorch's instead of ~0.99).
        quantize_dynamic(str(fused), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(quantized, path)
    log.info("built the int8 encoder at %s", path)


def _load_or_export(onnxruntime, model, path: Path) -> OnnxQueryEncoder:
    """The cached export, made (again) when it is missing or unreadable."""
    max_tokens = int(model.max_seq_length)
    if path.is_file():
        try:
            return OnnxQueryEncoder(_session(onnxruntime, path), model.tokenizer, max_tokens=max_tokens)
        except Exception as e:  # a truncated or foreign file: replace it
            log.warning("the cached ONNX export %s is unreadable (%s): exporting again", path, type(e).__name__)
    _export(model, path)
    return OnnxQueryEncoder(_session(onnxruntime, path), model.tokenizer, max_tokens=max_tokens)


def _is_mean_pooled_transformer(model) -> bool:
    """Only the plain layout (transformer, mean pooling, optional normalize) is reproduced here."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        return False
    return model[1].get_config_dict().get("pooling_mode", "mean") == "mean" and hasattr(model[0], "auto_model")


def _export(model, path: Path, *, attention: str | None = None) -> None:
    import torch

    transformer = model[0].auto_model.eval()
    if attention is not None:  # the export traces whichever implementation is set
        previous = transformer.config._attn_implementation
        transformer.set_attn_implementation(attention)
        try:
            _export(model, path)
        finally:
            transformer.set_attn_implementation(previous)
        return
    names = list(model.tokenizer.model_input_names)

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            return self.transformer(**dict(zip(names, inputs))).last_hidden_state

    example = model.tokenizer(["an example question"], return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _EXPORT_LOCK, tempfile.TemporaryDirectory(dir=path.parent) as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python conditionals: fixed shapes are not used
        partial = Path(scratch) / path.name
        torch.onnx.export(
            LastHiddenState(), tuple(example[n] for n in names), str(partial),
            input_names=names, output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17, dynamo=False,
        )
        os.replace(partial, path)  # atomic: a concurrent reader sees no file or a whole one
    log.info("exported the question encoder to %s", path)


def _session(onnxruntime, path: Path):
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores PyTorch was given
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle workers sleep instead of spinning: spinning ones stole the cores from the vector search
    # and the keyword search that run right after (the query's p95 doubled on two cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
