"""Helpers shared by the benchmark programs: the SciFact data, statistics, machine facts, output.

Benchmarks are programs, not timed tests (DESIGN.md, convention 9): each prints a Rich table and
then one JSON line on stdout; progress goes to stderr so that stdout stays machine-readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from knowledge.embedding import Embedder

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / ".bench"  # git-ignored: caches, built indexes, scratch data dirs
SCIFACT_DIR = Path("/work/shared/bench-data/scifact")

stderr = Console(stderr=True, soft_wrap=True)  # one progress line per message, never wrapped


# --- SciFact -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusDoc:
    """One SciFact abstract."""

    doc_id: str
    title: str
    text: str


def load_corpus(scifact_dir: Path = SCIFACT_DIR) -> list[CorpusDoc]:
    """Every document of ``corpus.jsonl``, in file order."""
    with (scifact_dir / "corpus.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [CorpusDoc(doc_id=str(r["_id"]), title=r.get("title", ""), text=r.get("text", "")) for r in rows]


def load_queries(scifact_dir: Path = SCIFACT_DIR) -> dict[str, str]:
    """Query ID → query text, for every query in ``queries.jsonl`` (train and test)."""
    with (scifact_dir / "queries.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {str(r["_id"]): r["text"] for r in rows}


def load_qrels(scifact_dir: Path = SCIFACT_DIR, split: str = "test") -> dict[str, set[str]]:
    """Query ID → relevant document IDs, in the order queries first appear in the qrels file."""
    qrels: dict[str, set[str]] = {}
    with (scifact_dir / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        next(f)  # header: query-id, corpus-id, score
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], set()).add(parts[1])
    return qrels


# --- Embedding with a cache -----------------------------------------------------------------


def embed_cached(embedder: Embedder, texts: list[str], out_dir: Path, *, batch: int = 256) -> np.ndarray:
    """The real vectors of ``texts``, from the cache when the same texts met the same model before."""
    key = hashlib.sha256("\x1e".join([embedder.model_id, *texts]).encode()).hexdigest()[:16]
    path = out_dir / f"vectors-{key}.npy"
    if path.is_file():
        log(f"real vectors: cached {path.name} ({len(texts)} texts)")
        return np.load(path)
    log(f"embedding {len(texts)} texts (cached afterwards in {path.name}) …")
    parts, started = [], time.perf_counter()
    for start in range(0, len(texts), batch):
        parts.append(embedder.encode(texts[start : start + batch]))
        done = start + len(parts[-1])
        rate = done / (time.perf_counter() - started)
        log(f"  embedded {done}/{len(texts)} ({rate:.0f} texts/s)")
    vectors = np.concatenate(parts).astype(np.float32)
    np.save(path, vectors)
    return vectors


# --- Statistics --------------------------------------------------------------------------------


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds (linear interpolation between samples).

    >>> latency_summary([0.001, 0.002, 0.003, 0.004])
    {'n': 4, 'p50_ms': 2.5, 'p95_ms': 3.85, 'p99_ms': 3.97, 'mean_ms': 2.5}
    """
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(ms.size), "p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3),
            "p99_ms": round(float(p99), 3), "mean_ms": round(float(ms.mean()), 3)}


# --- Machine and files -------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """What a reader needs to compare numbers across machines.

    Versions come from package metadata, so this never imports torch (ask_memory stays light).
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "lancedb": _version("lancedb"),
        "pylance": _version("pylance"),
        "sentence_transformers": _version("sentence-transformers"),
        "numpy": _version("numpy"),
        # Other work on a small machine skews every timing: say how busy it was at the end.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


# The project code a benchmark exercises. Engineers edit it while benchmarks run, so each result
# records exactly which versions of these files it measured.
MEASURED_SOURCES = ("knowledge/stores/lancedb.py", "knowledge/retrieval.py", "knowledge/ingest.py",
                    "knowledge/embedding.py", "knowledge/chunking.py", "bot/app.py", "bot/cli.py")


def source_digests(paths: tuple[str, ...] = MEASURED_SOURCES) -> dict[str, str | None]:
    """Short sha256 of each project file, relative to the repository root (None when missing)."""
    digests = {}
    for rel in paths:
        try:
            digests[rel] = hashlib.sha256((REPO_ROOT / rel).read_bytes()).hexdigest()[:12]
        except OSError:
            digests[rel] = None
    return digests


def disk_usage_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path``, as ``du`` counts them (512-byte blocks)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass  # a file removed while walking (LanceDB cleans up old versions)
    return total


# --- Output ------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress for the person watching: stderr, so stdout stays table + one JSON line."""
    stderr.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed wall time in seconds."""
    elapsed = [0.0]
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - started


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``: all but idle/iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def foreign_load() -> Iterator[dict[str, float]]:
    """Share of the machine's CPU capacity that *other* processes used while the block ran.

    A benchmark on a shared 2-core machine measures its neighbours too; this says how much.
    ``result["share"]`` is 0.0 on an otherwise idle machine, 1.0 when others kept every core busy.
    """
    result = {"share": float("nan")}
    try:
        busy, own, started = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    except (OSError, ValueError, IndexError):  # no /proc (not Linux): say nothing rather than guess
        yield result
        return
    try:
        yield result
    finally:
        wall = time.perf_counter() - started
        foreign = (_busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)
        capacity = wall * (os.cpu_count() or 1)
        result["share"] = round(min(1.0, max(0.0, foreign / capacity)), 3) if capacity > 0 else float("nan")


def print_table(table: Table) -> None:
    """The results table on stdout; wide enough not to fold columns when stdout is a file."""
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)


def emit_json(benchmark: str, results: dict, *, sources: dict[str, str | None] | None = None) -> None:
    """The final line on stdout: ``{"benchmark": name, ..., "machine": {...}, "sources": {...}}``.

    ``sources`` should be taken when the benchmark *started* (the code it imported); by default
    they are taken now.
    """
    line = {"benchmark": benchmark, **results, "machine": machine_info(), "sources": sources or source_digests()}
    sys.stdout.flush()
    print(json.dumps(line, default=_json_default), flush=True)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; blank when there is nothing to show."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"
