"""``lorebot adapters …``: list, promote with the configured hook, roll back."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bot.cli import app as cli
from tests.training.test_registry import add_version
from training.registry import AdapterRegistry


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_adapters_list_promote_and_rollback(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    registry = AdapterRegistry(tmp_path / "adapters")
    assert "No adapters trained yet" in run("adapters", "list").stdout
    v1, v2 = add_version(registry, loss=0.9), add_version(registry, loss=0.7, heldout_loss=0.8123)

    assert run("adapters", "promote", v1).exit_code == 0
    result = run("adapters", "promote", v2)
    assert result.exit_code == 0 and f"{v2} is in service" in result.stdout
    listed = json.loads(run("adapters", "list", "--json").stdout)
    assert listed["promoted"] == v2 and [a["version"] for a in listed["adapters"]] == [v1, v2]
    assert listed["adapters"][1]["metrics"] == {"train_loss": 0.7}
    shown = run("adapters", "list").stdout
    assert "→" in shown and "0.7000" in shown and "0.8123" in shown  # train and held-out loss

    result = run("adapters", "rollback")
    assert result.exit_code == 0 and f"{v1} is in service again" in result.stdout
    assert registry.promoted() == v1


def test_a_failing_promotion_hook_is_reported_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    registry = AdapterRegistry(tmp_path / "adapters")
    v1, v2 = add_version(registry), add_version(registry)
    registry.promote(v1)
    monkeypatch.setenv("LOREBOT_PROMOTION_HOOK", "echo 'TGI did not come back healthy' >&2; exit 1")
    result = run("adapters", "promote", v2)
    assert result.exit_code == 2
    assert "TGI did not come back healthy" in result.output and "Traceback" not in result.output
    assert registry.promoted() == v1


def test_promoting_a_version_that_does_not_exist_names_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    v1 = add_version(AdapterRegistry(tmp_path / "adapters"))
    result = run("adapters", "promote", "lorebot-v0042")
    assert result.exit_code == 2 and f"known: {v1}" in " ".join(result.output.split())


def feedback_with_a_private_favourite(tmp_path, embedder):
    from tests.training.test_dataset import a_passage, an_answer, index_their_passages, record
    from training.database import default_database_url, open_engine
    from training.feedback import FeedbackStore

    engine = open_engine(default_database_url(tmp_path))
    store = FeedbackStore(engine)
    topics = ["vacation days", "parental leave", "the 401(k) match", "expense limits", "laptop refresh",
              "remote work", "office hours", "onboarding", "the code of conduct", "travel booking",
              "health insurance", "promotion cycles"]
    public = [record(store, an_answer(f"What is the policy on {topic}?", minutes=n)) for n, topic in enumerate(topics)]
    secret = a_passage("sre/breakglass.md#0", "Break-glass steps.", scope=("C0SRE",), cited_as=1)
    private = record(store, an_answer("What are the break-glass steps?", "Page the DBA [1].", (secret,),
                                      channel_id="C0SRE"), up=10)
    ignored = record(store, an_answer("Where is the office?"), up=0)
    engine.dispose()
    index_their_passages(tmp_path, embedder, [*public, private, ignored])
    return public, private, ignored


def test_train_dry_run_json_reports_the_dataset_and_writes_nothing(tmp_path, monkeypatch, real_embedder):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    public, _, _ = feedback_with_a_private_favourite(tmp_path, real_embedder)
    result = run("train", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["eligible"] == len(public) == report["train"] + report["heldout"]
    assert report["excluded"]["private_passage"] == 1 and report["excluded"]["not_endorsed"] == 1
    assert report["path"] and not (tmp_path / "training").exists()
    text = run("train", "--dry-run")
    assert "12 eligible answers" in text.stdout and "private_passage 1" in text.stdout and "Dry run" in text.stdout


def test_feedback_export_says_whether_each_answer_may_be_trained_on(tmp_path, monkeypatch, real_embedder):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    public, private, ignored = feedback_with_a_private_favourite(tmp_path, real_embedder)
    out = tmp_path / "feedback.jsonl"
    assert run("feedback", "export", "--out", str(out)).exit_code == 0
    decided = {r["interaction_id"]: r["training"] for r in map(json.loads, out.read_text().splitlines())}
    assert decided[private.interaction_id] == "private_passage"
    assert decided[ignored.interaction_id] == "not_endorsed"
    assert {decided[p.interaction_id] for p in public} <= {"train", "heldout"}


def test_train_without_a_base_model_says_so(tmp_path, monkeypatch, real_embedder):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    feedback_with_a_private_favourite(tmp_path, real_embedder)
    result = run("train", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["outcome"] == "skipped" and "LOREBOT_BASE_MODEL" in outcome["detail"]
