"""deploy/hooks/run-train-job.sh, the scheduler's LOREBOT_TRAIN_COMMAND on Kubernetes: it creates the
training Job from its template, waits for it, and reports its last log line; a failed, unstartable
or overdue Job is a failed run. Offline: a fake kubectl plays the API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "hooks" / "run-train-job.sh"
JOB = "job.batch/lorebot-train-x7k2p"
RESULT = {"outcome": "promoted", "detail": "lorebot-v0002 promoted: held-out loss 1.20 < 1.31",
          "version": "lorebot-v0002"}

FAKE_KUBECTL = """#!{python}
import json, os, sys
state = os.environ["FAKE_KUBE_DIR"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
scenario = json.load(open(os.path.join(state, "scenario.json")))
verb = args[0]
if verb == "create":
    if scenario.get("create") == "fail":
        print('error: jobs.batch is forbidden: User "system:serviceaccount:lorebot:default" cannot create',
              file=sys.stderr)
        sys.exit(1)
    assert args[1] == "-f" and os.path.isfile(args[2]) and args[3:] == ["-o", "name"], args
    print("{job}")
elif verb == "get":
    query = args[args.index("-o") + 1]
    if ".reason" in query:
        print(scenario.get("reason", ""), end="")
    else:
        seen = os.path.join(state, "looks")
        looks = int(open(seen).read()) if os.path.exists(seen) else 0
        open(seen, "w").write(str(looks + 1))
        conditions = scenario["conditions"]
        answer = conditions[min(looks, len(conditions) - 1)]
        if answer == "ERROR":
            print("The connection to the server was refused", file=sys.stderr)
            sys.exit(1)
        print(answer, end="")
elif verb == "logs":
    assert args[1] == "{job}" and "--tail=1" in args, args
    print(scenario.get("logs", ""))
elif verb == "delete":
    pass
else:
    sys.exit("fake kubectl: unexpected " + " ".join(args))
"""


@pytest.fixture
def cluster(tmp_path):
    """A fake kubectl on PATH; ``cluster(scenario)`` runs the script and returns (result, kubectl calls)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.replace("{python}", sys.executable).replace("{job}", JOB))
    kubectl.chmod(0o755)
    template = tmp_path / "train-job.yaml"
    template.write_text((ROOT / "deploy" / "k8s" / "train-job.yaml").read_text())
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "LC_ALL": "C",
           "FAKE_KUBE_DIR": str(state), "LOREBOT_TRAIN_JOB_TEMPLATE": str(template),
           "LOREBOT_TRAIN_JOB_POLL_INTERVAL_S": "0.05"}

    def run(scenario: dict, **extra: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        (state / "scenario.json").write_text(json.dumps(scenario))
        result = subprocess.run(["sh", str(SCRIPT)], env={**env, **extra}, capture_output=True, text=True, timeout=30)
        calls_file = state / "calls.jsonl"
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
        return result, calls

    run.env = env
    run.template = template
    return run


def test_the_script_is_posix_sh():
    assert os.access(SCRIPT, os.X_OK) and SCRIPT.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_a_completed_job_reports_its_last_log_line(cluster):
    result, calls = cluster({"conditions": ["", "", "Complete"], "logs": json.dumps(RESULT)})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == RESULT
    assert calls[0] == ["create", "-f", str(cluster.template), "-o", "name"]
    assert [c[0] for c in calls].count("get") == 3 and calls[-1][:2] == ["logs", JOB]
    assert f"started {JOB}" in result.stderr


def test_a_failed_job_is_a_failure_that_says_why(cluster):
    result, calls = cluster({"conditions": ["", "FailureTarget Failed"], "reason": "BackoffLimitExceeded",
                             "logs": "torch.OutOfMemoryError: CUDA out of memory"})

    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("run-train-job: FAILED:") and JOB in last and "BackoffLimitExceeded" in last
    assert "CUDA out of memory" in result.stderr
    assert not any(c[0] == "delete" for c in calls)


def test_a_job_that_cannot_be_created_fails_at_once(cluster):
    result, calls = cluster({"create": "fail", "conditions": [""]})

    assert result.returncode == 1
    assert "cannot create" in result.stderr and "FAILED" in result.stderr.splitlines()[-1]
    assert [c[0] for c in calls] == ["create"]


def test_an_unanswered_look_is_not_a_failure(cluster):
    result, _ = cluster({"conditions": ["ERROR", "ERROR", "Complete"], "logs": json.dumps(RESULT)})
    assert result.returncode == 0 and json.loads(result.stdout.splitlines()[-1]) == RESULT


def test_an_overdue_job_is_deleted_and_failed(cluster):
    started = time.monotonic()
    result, calls = cluster({"conditions": [""]}, LOREBOT_TRAIN_JOB_TIMEOUT_S="1")

    assert result.returncode == 1 and time.monotonic() - started < 20
    assert ["delete", JOB, "--wait=false"] in calls
    assert "did not finish within 1s" in result.stderr.splitlines()[-1]


def test_a_missing_template_is_named(cluster, tmp_path):
    result, calls = cluster({"conditions": [""]}, LOREBOT_TRAIN_JOB_TEMPLATE=str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml" in result.stderr and calls == []


def test_the_scheduler_records_the_jobs_result(cluster, monkeypatch, tmp_path):
    """End to end: the train job with LOREBOT_TRAIN_COMMAND set to the script, as scheduler.yaml does."""
    from bot.jobs import train_if_enough

    cluster({"conditions": ["", "Complete"], "logs": json.dumps(RESULT)})  # writes the scenario
    (tmp_path / "state" / "looks").unlink()
    (tmp_path / "state" / "calls.jsonl").unlink()
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOREBOT_TRAIN_COMMAND", str(SCRIPT))

    outcome = train_if_enough()

    assert (outcome.outcome, outcome.detail) == ("ok", RESULT["detail"])
