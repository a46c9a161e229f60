"""Dataset-build time for a feedback store of 100k interactions: read, screen, scrub, de-duplicate, write.

    .venv/bin/python benchmarks/dataset_build.py [--interactions 100000] [--database-url URL] [--seed 0]

The requirement
    "Report dataset-build time for 100k stored interactions."

The setup
    A feedback store (SQLite in a temporary directory, or the database at ``--database-url``) is
    filled with ``--interactions`` synthetic interactions, as the bot would have recorded them:
    - a corpus of 4,000 handbook chunks of 80–160 words, 60% ``public``, the rest scoped to one of
      five team channels (some to two); a few hold an e-mail address, a phone number or a token;
    - questions asked over 180 days in #general and DMs (which see public chunks only) or in a team
      channel (public chunks and that channel's), each with 4–8 passages that channel may see,
      1–3 of them cited as ``[n]`` in the answer; 5% answered "not found"; questions from eight
      templates filled with handbook words, most with a context ("for the payroll team", "in
      March"), so some come out alike; 5% mention a colleague (``<@U…>``); 10% repeat an earlier
      question with other case, punctuation or a "please" (near-duplicates);
    - votes of several people: ~30% endorsed (1–5 👍, sometimes a 👎), ~8% net 0 or below, the
      rest never voted on.
    The store is filled by a child process (bulk inserts into the store's own tables), so neither
    its time nor its memory counts; the clock starts once the builder's process holds an engine.

What is timed
    ``build_dataset(store, out_dir, DatasetOptions())`` writing train.jsonl, heldout.jsonl and
    manifest.json, then the same build as a dry run (``write=False``). Reading the store and
    screening every interaction (until the builder reports the last one read) is timed apart from
    the rest (near-duplicates, scrubbing the passages shown, distractors, the split, writing).
    Peak RSS is the builder process's high-water mark (``ru_maxrss``): before the builds (imports,
    an engine) and after them.

Output
    A table, then one JSON line.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit_json, fmt, foreign_load, log, print_table, source_digests  # noqa: E402
from training.database import masked, open_engine  # noqa: E402
from training.dataset import DatasetOptions, build_dataset  # noqa: E402
from training.feedback import DOWN, UP, FeedbackStore, Interaction, UsedPassage, interactions, votes  # noqa: E402

BENCHMARK = "dataset_build"
MEASURED = ("training/dataset.py", "training/feedback.py", "training/chat_format.py", "training/database.py")
CHANNELS = ("C0ENGINEER", "C0FINANCE", "C0PEOPLE", "C0SRE", "G0LEGAL")
WORDS = ("policy", "expense", "receipt", "laptop", "vacation", "leave", "payroll", "badge", "office", "vpn",
         "deploy", "release", "incident", "on-call", "budget", "invoice", "contract", "hiring", "review", "travel",
         "hotel", "flight", "approval", "manager", "deadline", "quarter", "benefit", "insurance", "pension",
         "training", "security", "password", "access", "account", "printer", "wifi", "parking", "desk", "meeting",
         "calendar", "holiday", "remote", "equipment", "refund", "limit", "team", "project", "customer", "data")
FILLER = ("the", "a", "of", "to", "and", "in", "for", "is", "on", "with", "must", "be", "by", "within", "days",
          "each", "your", "after", "before", "all", "can", "should", "will", "are", "at", "per", "up", "more")
TEMPLATES = ("How do I {a} my {b}?", "What is the {a} {b} for {c}?", "Who approves {a} {b} requests?",
             "When is the {a} deadline for {b}?", "Where do I find the {a} {b} for the {c} team?",
             "Can I get a {a} {b} reimbursed in {c}?", "What happens if my {a} {b} is late?",
             "Is there a {a} limit on {b} and {c}?")
CONTEXTS = (" for the {c} team", " in {m}", " after the {c} change in {m}", " now that {c} moved",
            " if I work remotely in {m}", " for a contractor on {c}")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=100_000, help="interactions in the store")
    parser.add_argument("--database-url", default=None,
                        help="fill and read this database (an empty scratch one; PostgreSQL e.g.) instead of a "
                             "temporary SQLite file")
    parser.add_argument("--reuse", action="store_true",
                        help="with --database-url: build from what the database already holds, filling nothing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic store")
    args = parser.parse_args(argv)
    if args.interactions < 1:
        parser.error("--interactions must be at least 1")
    if args.reuse and not args.database_url:
        parser.error("--reuse needs --database-url")
    return args


# --- The synthetic store ------------------------------------------------------------------------


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) if rng.random() < 0.4 else rng.choice(FILLER) for _ in range(words))


def corpus(rng: random.Random, size: int = 4000) -> list[UsedPassage]:
    chunks = []
    for n in range(size):
        roll = rng.random()
        scope = ("public",) if roll < 0.6 else tuple(sorted(rng.sample(CHANNELS, 2 if roll > 0.95 else 1)))
        text = ". ".join(_sentence(rng, rng.randint(8, 16)) for _ in range(rng.randint(8, 12))).capitalize() + "."
        extra = rng.random()
        if extra < 0.04:
            text += f" Questions to {rng.choice(WORDS)}-team@example.com."
        elif extra < 0.07:
            text += f" Call +1 (415) 555-{rng.randint(1000, 9999)} out of hours."
        elif extra < 0.08:
            text += f" The service token is xoxb-{rng.randint(10**11, 10**12)}-{rng.randbytes(8).hex()}."
        doc = f"handbook/{rng.choice(WORDS)}-{n // 8}.md"
        chunks.append(UsedPassage(doc_id=doc, chunk_id=f"{doc}#{n % 8}", title=doc.split("/")[1][:-3].title(),
                                  source=f"https://wiki.example.com/{doc}", text=text, scope=scope, score=0.0))
    return chunks


def synthetic_interaction(rng: random.Random, n: int, total: int, visible: dict[str, list[UsedPassage]],
                          asked: list[str]) -> Interaction:
    channel = rng.choice(["C0GENERAL", "D0DM", *CHANNELS, *CHANNELS])
    if asked and rng.random() < 0.10:
        earlier = rng.choice(asked)
        question = rng.choice([earlier.lower(), earlier.rstrip("?"), earlier.replace("?", ", please?")])
    else:
        question = rng.choice(TEMPLATES).format(a=rng.choice(WORDS), b=rng.choice(WORDS), c=rng.choice(WORDS))
        if rng.random() < 0.6:
            question = question[:-1] + rng.choice(CONTEXTS).format(c=rng.choice(WORDS), m=rng.choice(MONTHS)) + "?"
        if rng.random() < 0.05:
            question = f"<@U0{rng.randint(10**6, 10**7)}> asked: {question}"
        asked.append(question)
    chosen = rng.sample(visible[channel], rng.randint(4, 8))
    cited = rng.randint(1, min(3, len(chosen)))
    passages = tuple(UsedPassage(**{**p.__dict__, "score": round(1 - i / 10, 2),
                                    "cited_as": i + 1 if i < cited else None,
                                    "quote": p.text[:120] if i < cited else None})
                     for i, p in enumerate(chosen))
    found = rng.random() >= 0.05
    answer = (" ".join(f"{_sentence(rng, rng.randint(6, 14)).capitalize()} [{i + 1}]." for i in range(cited))
              if found else "I couldn't find anything in the documents visible to this channel that answers this.")
    return Interaction(
        interaction_id=f"{n:08d}{rng.randbytes(12).hex()}", channel_id=channel, user_id=f"U0ASK{rng.randint(1, 400)}",
        surface="mention", asked=question, question=question, answer=answer, found=found,
        generator=rng.choice(["tgi", "tgi", "extractive"]), passages=passages if found else (),
        team_id="T0TEAM", thread_ts=f"{1735689600 + n}.000100", timings_ms={"retrieve": 12.0, "generate": 900.0},
        created_at=START + timedelta(days=180 * n / total, seconds=rng.randint(0, 59)),
    )


def synthetic_votes(rng: random.Random, interaction_id: str) -> list[dict]:
    roll = rng.random()
    if roll < 0.30:
        up, down = rng.randint(1, 5), 0
        down = rng.randint(0, up - 1) if rng.random() < 0.2 else 0
    elif roll < 0.38:
        down = rng.randint(1, 3)
        up = rng.randint(0, down)
    else:
        return []
    voters = rng.sample(range(1, 500), up + down)
    return [{"interaction_id": interaction_id, "user_id": f"U0V{v:04d}", "value": UP if i < up else DOWN,
             "via": rng.choice(["reaction", "button"]), "at": 1735689600.0 + i} for i, v in enumerate(voters)]


def fill(url: str, count: int, seed: int) -> None:
    """Fill the store at ``url`` (runs in a child process: its memory is not the builder's)."""
    rng = random.Random(seed)
    chunks = corpus(rng)
    public = [c for c in chunks if c.scope == ("public",)]
    visible = {"C0GENERAL": public, "D0DM": public}
    for channel in CHANNELS:
        visible[channel] = public + [c for c in chunks if channel in c.scope]
    engine = open_engine(url)
    FeedbackStore(engine)
    asked: list[str] = []
    batch = 2000
    for start in range(0, count, batch):
        rows, vote_rows = [], []
        for n in range(start, min(start + batch, count)):
            interaction = synthetic_interaction(rng, n, count, visible, asked)
            rows.append(interaction.as_json() | {"created_at": interaction.created_at})
            vote_rows.extend(synthetic_votes(rng, interaction.interaction_id))
        with engine.begin() as connection:
            connection.execute(interactions.insert(), rows)
            if vote_rows:
                connection.execute(votes.insert(), vote_rows)
        if (start // batch) % 10 == 0:
            log(f"  filled {start + len(rows):,}/{count:,}")
    engine.dispose()


# --- Timing -------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed_build(store: FeedbackStore, out_dir: Path, *, write: bool) -> dict:
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        marks["read"] = time.perf_counter()

    started = time.perf_counter()
    report = build_dataset(store, out_dir, DatasetOptions(), progress=progress, write=write)
    seconds = time.perf_counter() - started
    read_s = marks["read"] - started
    return {"seconds": round(seconds, 2), "read_and_screen_s": round(read_s, 2),
            "dedup_scrub_write_s": round(seconds - read_s, 2), "report": report}


def summarise(args: argparse.Namespace, url: str, fill_s: float | None, written: dict, dry: dict,
              rss: dict, out_dir: Path, load: float) -> dict:
    report = written["report"]
    read = report.manifest["counts"]["interactions"]
    return {
        "interactions": read, "database": url.split(":", 1)[0].split("+", 1)[0],
        "build_s": written["seconds"], "interactions_per_s": round(read / written["seconds"]),
        "read_and_screen_s": written["read_and_screen_s"], "dedup_scrub_write_s": written["dedup_scrub_write_s"],
        "dry_run_s": dry["seconds"], "peak_rss_mib": rss,
        "eligible": report.eligible, "train": report.train, "heldout": report.heldout,
        "excluded": report.excluded, "scrubbed": report.manifest["scrubbed"],
        "output_bytes": sum(f["bytes"] for f in report.manifest["files"].values())
        + (out_dir / "manifest.json").stat().st_size,
        "near_duplicates": report.manifest["near_duplicates"],
        "fill_s": None if fill_s is None else round(fill_s, 1), "seed": args.seed,
        "other_processes_cpu_share": load,
    }


def report_table(s: dict) -> Table:
    table = Table(title=f"Dataset build from {s['interactions']:,} stored interactions ({s['database']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("build, writing the files (s)", fmt(s["build_s"], 2))
    table.add_row("  reading + screening the store (s)", fmt(s["read_and_screen_s"], 2))
    table.add_row("  near-duplicates, scrubbing, examples, writing (s)", fmt(s["dedup_scrub_write_s"], 2))
    table.add_row("interactions / s", f"{s['interactions_per_s']:,}")
    table.add_row("dry run (s)", fmt(s["dry_run_s"], 2))
    table.add_row("peak RSS before → after the builds (MiB)",
                  f"{fmt(s['peak_rss_mib']['before'], 0)} → {fmt(s['peak_rss_mib']['after'], 0)}")
    table.add_row("eligible (train / held-out)", f"{s['eligible']:,} ({s['train']:,} / {s['heldout']:,})")
    for reason, count in s["excluded"].items():
        table.add_row(f"  excluded: {reason}", f"{count:,}")
    table.add_row("placeholders written", ", ".join(f"{k} {v:,}" for k, v in s["scrubbed"].items()))
    table.add_row("output (MB)", fmt(s["output_bytes"] / 1e6, 1))
    table.add_row("store fill, not timed (s)", fmt(s["fill_s"]))
    table.add_row("other processes' CPU share", "–" if s["other_processes_cpu_share"] != s["other_processes_cpu_share"]
                  else f"{s['other_processes_cpu_share']:.0%}")
    return table


# --- Main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests(MEASURED)
    scratch = Path(tempfile.mkdtemp(prefix="lorebot-bench-dataset-"))
    url = args.database_url or f"sqlite:///{scratch / 'lorebot.db'}"
    try:
        fill_s = None
        if not args.reuse:
            engine = open_engine(url)
            existing = FeedbackStore(engine).stats().interactions
            engine.dispose()
            if existing:
                raise SystemExit(f"{masked(url)} already holds {existing:,} interactions: give an empty database, "
                                 "or --reuse to build from them")
            log(f"filling {masked(url)} with {args.interactions:,} synthetic interactions (not timed) …")
            started = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(target=fill, args=(url, args.interactions, args.seed))
            child.start()
            child.join()
            if child.exitcode != 0:
                raise SystemExit(f"filling the store failed (exit status {child.exitcode})")
            fill_s = time.perf_counter() - started
        engine = open_engine(url)
        store = FeedbackStore(engine)
        rss = {"before": round(peak_rss_mib(), 1)}
        log("building the dataset …")
        with foreign_load() as other:
            written = timed_build(store, scratch / "dataset", write=True)
            log(f"  built in {written['seconds']:.1f} s; dry run …")
            dry = timed_build(store, scratch / "dry-run", write=False)
        rss["after"] = round(peak_rss_mib(), 1)
        summary = summarise(args, url, fill_s, written, dry, rss, scratch / "dataset", other["share"])
        engine.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(report_table(summary))
    emit_json(BENCHMARK, summary, sources=sources)
    return summary


if __name__ == "__main__":
    main()
