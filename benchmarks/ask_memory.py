"""Peak memory (RSS) and wall time of the real ``lorebot ask`` command.

    .venv/bin/python benchmarks/ask_memory.py [--data-dir DIR | --index DIR] [--question TEXT ...]

By default the bundled handbook is ingested with the CLI into a fresh data dir (each folder with
the scope ``bot/handbook/channels.json`` gives it), then ``lorebot ask QUESTION --channel C0GENERAL
--json`` runs as a child process once per question. With ``--data-dir`` the asks run against an
existing data dir instead; ``--index`` takes a bare index folder (such as ``.bench/index-100000``
from query_latency.py) and wraps it in a throwaway data dir whose ``index`` links to it.

How peak RSS is measured: each child is started with ``subprocess.Popen`` and reaped with
``os.wait4(pid)``, which returns that child's own resource usage. On Linux its ``ru_maxrss`` is the
child's high-water mark of resident memory in KiB (the larger of its own and that of any process
it waited for) — the same number ``/usr/bin/time -v`` prints as "Maximum resident set size",
taken from the same system call, but exact per child (``RUSAGE_CHILDREN`` would be a running
maximum over every child so far) and without parsing another tool's output. MB here are 10⁶ bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    DEFAULT_OUT_DIR, REPO_ROOT, emit_json, fmt, log, foreign_load, print_table, source_digests,
)

BENCHMARK = "ask_memory"
TARGET_PEAK_BYTES = 1.5e9
DEFAULT_CHANNEL = "C0GENERAL"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="ask against this existing data dir (no ingest)")
    where.add_argument("--index", type=Path, help="ask against this bare index folder (e.g. .bench/index-100000)")
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: 3 handbook questions)")
    parser.add_argument("--channel", default=DEFAULT_CHANNEL, help="conversation the answers are for")
    parser.add_argument("--lorebot", type=Path, default=Path(sys.executable).parent / "lorebot",
                        help="the lorebot executable (default: next to this Python)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the scratch data dir goes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data dir")
    return parser.parse_args(argv)


# --- Running a child and measuring it ----------------------------------------------------------


@dataclass
class Measured:
    """One finished child process: exit status, output, wall time and peak resident memory."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_bytes: int

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / 1e6


def run_measured(args: list[str], *, env: dict[str, str]) -> Measured:
    """Run ``args`` to completion and return its own peak RSS (``wait4``'s ``ru_maxrss``, KiB)."""
    # Output goes to files, not pipes: with pipes a chatty child could block on a full pipe
    # while this process sits in wait4 instead of reading.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=REPO_ROOT)
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Measured(args=args, returncode=child.returncode, stdout=out.read().decode(errors="replace"),
                        stderr=err.read().decode(errors="replace"), wall_s=wall, peak_rss_bytes=usage.ru_maxrss * 1024)


def child_env(data_dir: Path) -> dict[str, str]:
    """This environment with the data dir pointed at ours (everything else as the user has it)."""
    return {**os.environ, "LOREBOT_DATA_DIR": str(data_dir)}


# --- The handbook ------------------------------------------------------------------------------


def handbook_dir() -> Path:
    """The handbook shipped inside the ``bot`` package (found without importing it)."""
    spec = importlib.util.find_spec("bot")
    return Path(next(iter(spec.submodule_search_locations))) / "handbook"


def handbook_questions(handbook: Path, n: int = 3) -> list[str]:
    """The first ``n`` distinct demo questions of ``channels.json``."""
    questions = json.loads((handbook / "channels.json").read_text())["questions"]
    return list(dict.fromkeys(q["question"] for q in questions))[:n]


def ingest_handbook(lorebot: Path, handbook: Path, data_dir: Path) -> list[Measured]:
    """``lorebot ingest FOLDER --public | --channel ID`` for each folder, as channels.json scopes it."""
    folders = json.loads((handbook / "channels.json").read_text())["folders"]
    runs = []
    for folder, spec in folders.items():
        scope = ["--public"] if spec["scope"] == "public" else ["--channel", spec["scope"]]
        run = run_measured([str(lorebot), "ingest", str(handbook / folder), *scope, "--json"], env=child_env(data_dir))
        if run.returncode != 0:
            raise SystemExit(f"lorebot ingest {folder} failed ({run.returncode}):\n{run.stderr}")
        log(f"  ingested {folder} ({' '.join(scope)}): {json.loads(run.stdout)['chunks_written']} chunks, "
            f"peak RSS {run.peak_rss_mb:,.0f} MB, {run.wall_s:.1f}s")
        runs.append(run)
    return runs


def index_as_data_dir(index: Path, scratch: Path) -> Path:
    """A data dir whose ``index`` is a link to a bare index folder built elsewhere."""
    data_dir = scratch / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "index").symlink_to(index.resolve(), target_is_directory=True)
    return data_dir


# --- Asking ------------------------------------------------------------------------------------


def ask(lorebot: Path, data_dir: Path, question: str, channel: str) -> dict:
    """One ``lorebot ask --json`` run, with what it answered and what it cost."""
    with foreign_load() as others:
        run = run_measured([str(lorebot), "ask", question, "--channel", channel, "--json"], env=child_env(data_dir))
    if run.returncode != 0:
        raise SystemExit(f"lorebot ask failed ({run.returncode}):\n{run.stderr}")
    answer = json.loads(run.stdout)
    stderr_lines = [line for line in run.stderr.splitlines() if line.strip()]
    return {
        "question": question, "channel": channel, "peak_rss_mb": round(run.peak_rss_mb, 1),
        "peak_rss_bytes": run.peak_rss_bytes, "wall_s": round(run.wall_s, 3), "found": answer["found"],
        "citations": len(answer["citations"]), "generator": answer["generator"],
        "answer_timings_ms": answer.get("timings_ms", {}),
        "other_processes_cpu_share": others["share"],  # the wall time includes waiting for a core
        # Anything on stderr is something a user of `ask --json` sees too.
        "stderr_lines": len(stderr_lines), "stderr_sample": stderr_lines[:2],
    }


def results_table(asks: list[dict], where: str) -> Table:
    table = Table(title=f"lorebot ask --json: peak RSS per run ({where})")
    for column in ("#", "question", "found", "peak RSS MB", "target < 1,500 MB", "wall s", "answer total ms", "stderr lines"):
        table.add_column(column, justify="right" if column != "question" else "left", overflow="fold")
    for i, a in enumerate(asks, start=1):
        ok = a["peak_rss_bytes"] < TARGET_PEAK_BYTES
        table.add_row(str(i), _shorten(a["question"], 60), "yes" if a["found"] else "no", fmt(a["peak_rss_mb"]),
                      "[green]met[/]" if ok else "[red]MISSED[/]", fmt(a["wall_s"], 2),
                      fmt(a["answer_timings_ms"].get("total")), str(a["stderr_lines"]))
    peak = max(a["peak_rss_mb"] for a in asks)
    table.add_row("max", "", "", fmt(peak), "[green]met[/]" if peak * 1e6 < TARGET_PEAK_BYTES else "[red]MISSED[/]",
                  fmt(max(a["wall_s"] for a in asks), 2), "", "")
    return table


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests()  # before anything runs: the code this process imported
    started = time.perf_counter()
    if not args.lorebot.is_file():
        raise SystemExit(f"no lorebot executable at {args.lorebot} (give --lorebot)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    handbook = handbook_dir()
    questions = args.question or handbook_questions(handbook)
    scratch = Path(tempfile.mkdtemp(prefix="ask-memory-", dir=args.out_dir))
    ingest_runs: list[Measured] = []
    try:
        if args.data_dir:
            data_dir, where = args.data_dir, f"data dir {args.data_dir}"
        elif args.index:
            data_dir, where = index_as_data_dir(args.index, scratch), f"index {args.index}"
        else:
            data_dir, where = scratch / "data", "bundled handbook"
            log(f"ingesting the handbook with the CLI into {data_dir} …")
            ingest_runs = ingest_handbook(args.lorebot, handbook, data_dir)
        asks = []
        for question in questions:
            log(f"asking from {args.channel}: {question[:70]}")
            asks.append(ask(args.lorebot, data_dir, question, args.channel))
            log(f"  peak RSS {asks[-1]['peak_rss_mb']:,.0f} MB in {asks[-1]['wall_s']:.1f}s")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)  # removes the link, never the linked index
    print_table(results_table(asks, where))
    peak = max(a["peak_rss_bytes"] for a in asks)
    results = {
        "where": where, "channel": args.channel, "asks": asks,
        "max_peak_rss_mb": round(peak / 1e6, 1), "target_peak_rss_mb": TARGET_PEAK_BYTES / 1e6,
        "meets_target": peak < TARGET_PEAK_BYTES, "max_wall_s": round(max(a["wall_s"] for a in asks), 3),
        "ingest": [{"folder": Path(r.args[2]).name, "peak_rss_mb": round(r.peak_rss_mb, 1), "wall_s": round(r.wall_s, 3)}
                   for r in ingest_runs],
        "method": "os.wait4 ru_maxrss of each child",
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    emit_json(BENCHMARK, results, sources=sources)
    return results


if __name__ == "__main__":
    main()
