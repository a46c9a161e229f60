"""Ingest throughput of the whole pipeline against the raw encoder on the same chunk texts.

    .venv/bin/python benchmarks/ingest_throughput.py [--docs 2000] [--repeat 1]

The first ``--docs`` SciFact abstracts are written as Markdown files (``# title`` then the text).

- Pipeline: ``Services.ingestor.ingest_paths([folder], scope=public)`` into a fresh data dir, built
  by ``bot.app.build_services`` exactly as the CLI builds it. Model loading is excluded (the
  embedder is loaded and warmed up before the clock starts); everything else — discovery, loading,
  chunking, hashing, encoding, writing, ``optimize()`` — is in. chunks written / wall time.
- Raw encoder: the very chunk texts the pipeline embedded, recomputed with ``load_file`` and
  ``chunk_document`` (same ``ChunkingOptions``), passed to ``embedder.encode`` in the same batches
  the ingestor makes (documents accumulated until ``batch_chunks`` chunks). chunks / encode time.
- Re-ingest unchanged: the same folder again into the same data dir; it should embed nothing.
- With answer units (the default, ``LOREBOT_ANSWER_UNIT_VECTORS``): the same ingest into another
  fresh data dir, also embedding every chunk's sentences, list items and table rows for the
  extractive answer step. Reported beside the pipeline, not in the ratio: the ratio measures the
  indexing pipeline against its own encoder work (units off), this row what the default costs.

The ratio pipeline ÷ raw says how much of the encoder's speed the pipeline keeps (target ≥ 85%).
With ``--repeat`` > 1 the order of the two alternates, so neither always runs on a warmer machine.
The encoder's own speed drifts by ±15% between runs minutes apart on a small shared machine, so
the breakdown table also gives the encoder's share of the pipeline's wall time, timed inside the
same run (``encode`` wrapped per instance): 1 − share is the pipeline's own overhead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# LanceDB's Rust log down to errors: a store version that logged a deprecation warning on every
# query buried the progress lines under thousands of copies.
os.environ.setdefault("LANCEDB_LOG", "error")

from benchmarks.common import (  # noqa: E402
    DEFAULT_OUT_DIR, SCIFACT_DIR, CorpusDoc, emit_json, fmt, load_corpus, log, foreign_load, print_table, source_digests, stopwatch,
)
from bot.app import Services, build_services  # noqa: E402
from bot.config import load_settings  # noqa: E402
from knowledge.access import Scope  # noqa: E402
from knowledge.chunking import ChunkingOptions, chunk_document  # noqa: E402
from knowledge.ingest import content_hash, document_id  # noqa: E402
from knowledge.loaders import discover, load_file  # noqa: E402
from knowledge.types import Document  # noqa: E402

BENCHMARK = "ingest_throughput"
TARGET_RATIO = 0.85


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="SciFact documents to ingest")
    parser.add_argument("--repeat", type=int, default=1, help="pipeline/raw pairs, alternating which goes first")
    parser.add_argument("--scifact", type=Path, default=SCIFACT_DIR, help="BEIR SciFact folder")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the files and data dirs go")
    return parser.parse_args(argv)


# --- Inputs ------------------------------------------------------------------------------------


def write_markdown_files(docs: list[CorpusDoc], folder: Path) -> list[Path]:
    """One ``{id}.md`` per document; the folder ends up holding exactly these files."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {folder / f"{d.doc_id}.md": f"# {d.title}\n\n{d.text}\n" for d in docs}
    for stale in set(folder.iterdir()) - set(wanted):
        stale.unlink()  # left by an earlier run with a larger --docs
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return sorted(wanted)


def embedding_batches(folder: Path, chunking: ChunkingOptions, batch_chunks: int) -> list[list[str]]:
    """The texts the ingestor embeds, grouped the way it groups them: whole documents, in
    discovery order, accumulated until a batch holds at least ``batch_chunks`` chunks."""
    batches, current = [], []
    for path in discover([folder.resolve()]).files:
        loaded = load_file(path)
        resolved = Path(path).resolve()
        doc = Document(doc_id=document_id(resolved), title=loaded.title, source=str(resolved), path=str(resolved),
                       text=loaded.text, content_hash=content_hash(title=loaded.title, text=loaded.text, chunking=chunking),
                       scope=Scope.public())
        current.extend(c.embedding_text for c in chunk_document(doc, chunking))
        if len(current) >= batch_chunks:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


# --- Measuring ---------------------------------------------------------------------------------


@contextmanager
def time_calls(obj: object, names: list[str]) -> Iterator[dict[str, float]]:
    """Seconds spent in each named method of ``obj`` while the block runs (patched per instance,
    restored after): shows where the pipeline's time goes without touching project code."""
    spent = {name: 0.0 for name in names}
    originals = {name: getattr(obj, name) for name in names}

    def timed(name, method):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    for name, method in originals.items():
        setattr(obj, name, timed(name, method))
    try:
        yield spent
    finally:
        for name in names:
            delattr(obj, name)  # the class's method shows through again


def progress_logger(every: int = 250):
    """An ``ingest_paths`` progress callback that logs every ``every`` files."""
    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            log(f"  ingested {done}/{total} files")
    return progress


@dataclass
class PipelineRun:
    seconds: float
    chunks_written: int
    chunks_embedded: int
    encode_s: float
    upsert_s: float
    optimize_s: float
    reingest_s: float
    reingest_embedded: int
    reingest_unchanged: int

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_written / self.seconds


def run_pipeline(services: Services, folder: Path) -> PipelineRun:
    """Ingest the folder into the (fresh) data dir, then ingest it again unchanged."""
    ingestor, store = services.ingestor, services.store
    with time_calls(services.embedder, ["encode"]) as enc, time_calls(store, ["upsert_documents", "optimize"]) as st:
        with stopwatch() as wall:
            report = ingestor.ingest_paths([folder], scope=Scope.public(), progress=progress_logger())
    if not report.ok:
        raise SystemExit(f"ingest failed for {len(report.failed)} files, e.g. {report.failed[0]}")
    log(f"  pipeline: {report.summary()}")
    with stopwatch() as again:
        second = ingestor.ingest_paths([folder], scope=Scope.public())
    log(f"  re-ingest: {second.summary()}")
    return PipelineRun(
        seconds=wall[0], chunks_written=report.chunks_written, chunks_embedded=report.chunks_embedded,
        encode_s=enc["encode"], upsert_s=st["upsert_documents"], optimize_s=st["optimize"],
        reingest_s=again[0], reingest_embedded=second.chunks_embedded, reingest_unchanged=second.unchanged,
    )


def run_raw(services: Services, batches: list[list[str]]) -> float:
    """Seconds the embedder alone takes for the same texts in the same batches."""
    with stopwatch() as wall:
        for batch in batches:
            services.embedder.encode(batch)
    return wall[0]


def fresh_services(data_dir: Path, *, answer_units: bool = False, embedder=None) -> Services:
    """Services for an empty data dir, with the model loaded and warmed up (not timed)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    settings = load_settings(data_dir=data_dir).model_copy(update={"answer_unit_vectors": answer_units})
    services = build_services(settings, embedder=embedder)
    services.embedder.encode(["warm-up: the first call allocates and picks kernels"] * 8)
    services.ingestor  # noqa: B018 — opens the store now, not inside the timed ingest
    return services


def one_round(round_no: int, folder: Path, out_dir: Path) -> dict:
    """One pipeline run and one raw run, raw first on odd rounds."""
    log(f"round {round_no + 1}: loading the model into fresh services …")
    services = fresh_services(out_dir / "ingest-data")
    ingestor = services.ingestor
    batches = embedding_batches(folder, ingestor.chunking, ingestor.batch_chunks)
    texts = sum(len(b) for b in batches)
    order = ["pipeline", "raw"] if round_no % 2 == 0 else ["raw", "pipeline"]
    pipeline, raw_s = None, 0.0
    others = {}
    for step in order:
        log(f"round {round_no + 1}: {step} …")
        with foreign_load() as others[step]:
            if step == "pipeline":
                pipeline = run_pipeline(services, folder)
            else:
                raw_s = run_raw(services, batches)
                log(f"  raw encoder: {texts} chunks in {raw_s:.1f}s ({texts / raw_s:.1f} chunks/s)")
    log(f"round {round_no + 1}: pipeline with answer units (the default) …")
    with_units_services = fresh_services(out_dir / "ingest-data-units", answer_units=True, embedder=services.embedder)
    with foreign_load() as others["units"]:
        with_units = run_pipeline(with_units_services, folder)
    with_units_services.close()
    services.close()
    if texts != pipeline.chunks_embedded:
        log(f"[yellow]warning:[/] raw pass has {texts} chunk texts, the pipeline embedded {pipeline.chunks_embedded}")
    raw_cps = texts / raw_s
    return {
        "round": round_no + 1, "order": order, **asdict(pipeline),
        "pipeline_chunks_per_s": round(pipeline.chunks_per_s, 2), "raw_chunks": texts, "raw_s": round(raw_s, 3),
        "raw_chunks_per_s": round(raw_cps, 2), "ratio": round(pipeline.chunks_per_s / raw_cps, 4),
        "other_s": round(pipeline.seconds - pipeline.encode_s - pipeline.upsert_s - pipeline.optimize_s, 3),
        # Measured inside one run, so immune to the encoder's speed drifting between the two runs.
        "encode_share": round(pipeline.encode_s / pipeline.seconds, 4),
        "pipeline_other_processes_cpu_share": others["pipeline"]["share"],
        "raw_other_processes_cpu_share": others["raw"]["share"],
        "batches": len(batches), "batch_chunks": ingestor.batch_chunks, "encoder_batch_size": services.embedder.batch_size,
        "with_answer_units": {"seconds": round(with_units.seconds, 3), "chunks_per_s": round(with_units.chunks_per_s, 2),
                              "encode_s": round(with_units.encode_s, 3),
                              "slower_than_pipeline": round(with_units.seconds / pipeline.seconds, 3),
                              "other_processes_cpu_share": others["units"]["share"]},
    }


# --- Reporting ---------------------------------------------------------------------------------


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds of every timing and rate (the rounds themselves stay in the JSON)."""
    keys = ["seconds", "pipeline_chunks_per_s", "raw_s", "raw_chunks_per_s", "ratio", "encode_s", "upsert_s",
            "optimize_s", "other_s", "reingest_s", "encode_share"]
    summary = {k: round(statistics.median(r[k] for r in rounds), 4) for k in keys}
    summary["with_answer_units"] = {k: round(statistics.median(r["with_answer_units"][k] for r in rounds), 4)
                                    for k in ("seconds", "chunks_per_s", "slower_than_pipeline")}
    summary.update(chunks_written=rounds[0]["chunks_written"], reingest_embedded=max(r["reingest_embedded"] for r in rounds),
                   meets_target=summary["ratio"] >= TARGET_RATIO, target_ratio=TARGET_RATIO)
    return summary


def results_table(rounds: list[dict], summary: dict, docs: int) -> Table:
    table = Table(title=f"Ingest throughput: {docs:,} SciFact documents as Markdown, scope public")
    for column in ("round", "chunks", "pipeline s", "pipeline chunks/s", "raw encoder s", "raw chunks/s",
                   "pipeline ÷ raw", "re-ingest s (embedded)", "other load pipeline/raw"):
        table.add_column(column, justify="right")
    rows = [(str(r["round"]), r) for r in rounds]
    if len(rounds) > 1:
        rows.append(("median", {**summary, "reingest_embedded": summary["reingest_embedded"]}))
    for label, r in rows:
        table.add_row(label, f"{summary['chunks_written']:,}", fmt(r["seconds"]), fmt(r["pipeline_chunks_per_s"]),
                      fmt(r["raw_s"]), fmt(r["raw_chunks_per_s"]), _ratio_cell(r["ratio"]),
                      f"{fmt(r['reingest_s'], 2)} ({r['reingest_embedded']})", _loads(r))
    return table


def _loads(row: dict) -> str:
    """Other processes' CPU share during the pipeline and the raw run (blank for the median row)."""
    if "pipeline_other_processes_cpu_share" not in row:
        return "–"
    return f"{row['pipeline_other_processes_cpu_share']:.0%} / {row['raw_other_processes_cpu_share']:.0%}"


def _ratio_cell(ratio: float) -> str:
    colour = "green" if ratio >= TARGET_RATIO else "red"
    return f"[{colour}]{ratio:.1%}[/] (target ≥ {TARGET_RATIO:.0%})"


def breakdown_table(rounds: list[dict]) -> Table:
    table = Table(title="Where the pipeline's time goes (seconds inside each call)")
    for column in ("round", "encode", "upsert_documents", "optimize", "load + chunk + hash + other", "total",
                   "encode share"):
        table.add_column(column, justify="right")
    for r in rounds:
        table.add_row(str(r["round"]), fmt(r["encode_s"]), fmt(r["upsert_s"]), fmt(r["optimize_s"]), fmt(r["other_s"]),
                      fmt(r["seconds"]), f"{r['encode_share']:.1%}")
    return table


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests()  # before anything runs: the code this process imported
    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    docs = load_corpus(args.scifact)[: args.docs]
    folder = args.out_dir / "ingest-files"
    log(f"writing {len(docs)} Markdown files to {folder} …")
    write_markdown_files(docs, folder)
    rounds = [one_round(i, folder, args.out_dir) for i in range(args.repeat)]
    summary = summarize(rounds)
    print_table(results_table(rounds, summary, len(docs)))
    print_table(breakdown_table(rounds))
    units = summary["with_answer_units"]
    log(f"with answer units (the default): {units['chunks_per_s']} chunks/s, {units['seconds']} s, "
        f"{units['slower_than_pipeline']}× the indexing pipeline's time")
    results = {"docs": len(docs), "repeat": args.repeat, "summary": summary, "rounds": rounds,
               "elapsed_s": round(time.perf_counter() - started, 1), "loadavg_at_start": load_at_start}
    emit_json(BENCHMARK, results, sources=sources)
    return results


if __name__ == "__main__":
    main()
