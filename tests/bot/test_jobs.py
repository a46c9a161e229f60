"""The scheduler's train job with LOREBOT_TRAIN_COMMAND: the command trains instead of the scheduler's
own process (on Kubernetes, a GPU Job), and what it reports becomes the job log's outcome."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from bot.jobs import train_if_enough
from training.jobs_log import FAILED, OK, SKIPPED

FAKE_TRAINER = """\
import json, os, sys, time
record = os.environ["FAKE_TRAINER_RECORD"]
with open(record, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "data_dir": os.environ.get("LOREBOT_DATA_DIR")}) + "\\n")
mode = sys.argv[1]
print("loading the dataset", flush=True)
print("some progress on stderr", file=sys.stderr, flush=True)
if mode == "promoted":
    print(json.dumps({"outcome": "promoted", "detail": "lorebot-v0002 promoted: held-out loss 1.20 < 1.31",
                      "version": "lorebot-v0002", "new_examples": 61}))
elif mode == "refused":
    print(json.dumps({"outcome": "refused", "detail": "held-out loss 1.40 is not lower than 1.31",
                      "version": "lorebot-v0003"}))
elif mode == "skipped":
    print(json.dumps({"outcome": "skipped", "detail": "12 new eligible examples since the last adapter; "
                                                     "training waits for 50"}))
elif mode == "plain":
    print("job.batch/lorebot-train-x7k2p completed")
elif mode == "fails":
    print("FAILED: job.batch/lorebot-train-x7k2p failed (BackoffLimitExceeded)", file=sys.stderr)
    sys.exit(3)
elif mode == "hangs":
    print("waiting for a GPU node", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def trainer(tmp_path, monkeypatch):
    """Sets LOREBOT_TRAIN_COMMAND to a fake trainer in ``mode``; returns what it recorded."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TRAINER_RECORD", str(record))
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))

    def use(mode: str, *, timeout_s: float | None = None) -> Path:
        monkeypatch.setenv("LOREBOT_TRAIN_COMMAND", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode}")
        if timeout_s is not None:
            monkeypatch.setenv("LOREBOT_TRAIN_COMMAND_TIMEOUT_S", str(timeout_s))
        return record

    return use


def calls(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_the_command_trains_instead_of_the_scheduler_and_its_result_is_the_outcome(trainer, tmp_path):
    record = trainer("promoted")

    outcome = train_if_enough()

    assert (outcome.outcome, outcome.detail) == (OK, "lorebot-v0002 promoted: held-out loss 1.20 < 1.31")
    assert calls(record) == [{"argv": ["promoted"], "data_dir": str(tmp_path / "data")}]
    # Nothing was trained or opened here: no database, no dataset in the scheduler's data directory.
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("mode", "expected", "detail"), [
    ("skipped", SKIPPED, "12 new eligible examples since the last adapter; training waits for 50"),
    ("refused", OK, "lorebot-v0003 not promoted: held-out loss 1.40 is not lower than 1.31"),
    ("plain", OK, "job.batch/lorebot-train-x7k2p completed"),
])
def test_what_the_command_reports_reads_as_an_in_process_run_would(trainer, mode, expected, detail):
    trainer(mode)
    outcome = train_if_enough()
    assert (outcome.outcome, outcome.detail) == (expected, detail)


def test_a_failing_command_is_a_failed_run_with_its_exit_status_and_last_line(trainer):
    record = trainer("fails")

    outcome = train_if_enough()

    assert outcome.outcome == FAILED
    assert outcome.detail == ("the training command exited with status 3: "
                              "FAILED: job.batch/lorebot-train-x7k2p failed (BackoffLimitExceeded)")
    assert len(calls(record)) == 1


def test_a_command_past_its_timeout_is_stopped_and_failed(trainer):
    trainer("hangs", timeout_s=1)

    started = time.monotonic()
    outcome = train_if_enough()

    assert time.monotonic() - started < 15
    assert outcome.outcome == FAILED
    assert "did not finish within 1 s" in outcome.detail and "waiting for a GPU node" in outcome.detail


def test_a_command_that_cannot_start_is_a_failed_run(trainer, monkeypatch):
    trainer("promoted")
    monkeypatch.setenv("LOREBOT_TRAIN_COMMAND", "/nonexistent/train-on-gpu")

    outcome = train_if_enough()

    assert outcome.outcome == FAILED and "status 127" in outcome.detail
