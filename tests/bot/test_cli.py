"""The lorebot CLI in-process: JSON shapes, clear errors, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli import app


@pytest.fixture
def run(handbook_data_dir, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(handbook_data_dir))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_ask_json_shape(run):
    result = run("ask", "how many vacation days do I get each year?", "--channel", "C0GENERAL", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert {"answer", "found", "citations", "generator", "adapter", "timings_ms"} <= set(answer)
    assert answer["found"] is True and answer["generator"] == "extractive" and answer["adapter"] is None
    assert answer["citations"], answer
    for n, citation in enumerate(answer["citations"], start=1):
        assert citation["n"] == n
        assert {"n", "title", "source", "snippet", "score"} <= set(citation)
        assert f"[{n}]" in answer["answer"]
    assert answer["answer"].startswith("Quoted from the documents:")
    assert {"embed", "search", "generate", "total"} <= set(answer["timings_ms"])


def test_ask_not_found_json(run):
    result = run("ask", "how do I bake sourdough bread?", "--channel", "C0GENERAL", "--json")
    answer = json.loads(result.stdout)
    assert answer["found"] is False and answer["citations"] == []
    assert "documents visible to this channel" in answer["answer"]


def test_search_json_shape(run):
    result = run("search", "on-call stipend", "--channel", "C0ENGINEER", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["results"]
    assert len(results) == 3
    for r in results:
        assert {"doc_id", "title", "source", "text", "score", "scope"} <= set(r)
        assert isinstance(r["scope"], list)


def test_human_output_of_ask_lists_sources(run):
    result = run("ask", "what is the on-call stipend?", "--channel", "C0ENGINEER")
    assert result.exit_code == 0
    assert "Sources" in result.stdout and "[1]" in result.stdout


def test_ingest_without_a_scope_is_refused_with_a_clear_message(run, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\ntext\n")
    result = run("ingest", str(tmp_path / "a.md"))
    assert result.exit_code == 2
    assert "--channel" in result.stderr and "--public" in result.stderr
    assert "Traceback" not in result.output


def test_ingest_reports_a_bad_file_and_exits_nonzero(run, tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThe espresso machine is descaled on Mondays.\n")
    (docs / "bad.pdf").write_bytes(b"not a pdf at all")
    result = run("ingest", str(docs), "--channel", "C0KITCHEN")
    assert result.exit_code == 1
    # Reported once, in the summary: no log line repeats it.
    assert result.stderr.count("bad.pdf") == 1 and "WARNING" not in result.stderr
    assert result.stdout.startswith("1 added")
    found = json.loads(run("search", "espresso descaled", "--channel", "C0KITCHEN", "--json").stdout)["results"]
    assert found[0]["title"] == "Good"


def test_ingest_json_report(run, tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "b.md").write_text("# B\n\nBicycles are parked in the basement.\n")
    result = run("ingest", str(tmp_path / "b.md"), "--channel", "C0BIKES", "--json")
    report = json.loads(result.stdout)
    assert report["added"] == 1 and report["failed"] == [] and report["chunks_written"] >= 1


@pytest.mark.parametrize("args", [
    ("ask", "question", "--channel", ""),
    ("ask", "question", "--channel", "general"),
    ("search", "question", "--channel", " "),
])
def test_a_missing_or_malformed_audience_is_a_clear_error(run, args):
    result = run(*args)
    assert result.exit_code == 2
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_unknown_search_mode_is_rejected(run):
    result = run("search", "x", "--channel", "C0GENERAL", "--mode", "magic")
    assert result.exit_code == 2


def test_documents_lists_what_a_channel_may_draw_on(run):
    docs = json.loads(run("documents", "--channel", "C0FINANCE", "--json").stdout)["documents"]
    scopes = {tuple(d["scope"]) for d in docs}
    assert ("C0FINANCE",) in scopes and ("C0ENGINEER",) not in scopes


def test_invalid_setting_is_a_clear_error(run, monkeypatch):
    monkeypatch.setenv("LOREBOT_MIN_SIMILARITY", "very high")
    result = run("ask", "q", "--channel", "C0GENERAL")
    assert result.exit_code == 2
    assert "LOREBOT_MIN_SIMILARITY" in result.stderr and "number" in result.stderr


@pytest.mark.parametrize(("name", "value", "example"), [
    ("LOREBOT_CHANNEL_ADAPTERS", "C0OPS:ops-v2", '{"C0123ABCD": "lorebot-v0003"}'),
    ("LOREBOT_TRAINABLE_CHANNELS", "C0OPS,C0SRE", '["C0123ABCD"]'),
])
def test_a_json_setting_that_is_not_json_is_a_clear_error(run, monkeypatch, name, value, example):
    monkeypatch.setenv(name, value)
    result = run("ask", "q", "--channel", "C0GENERAL")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"{name} must be JSON, e.g. {example}" in message and "unexpected" not in message


@pytest.mark.parametrize("question", ["", "   ", "???"])
def test_an_empty_question_is_a_clear_error(run, question):
    result = run("ask", question, "--channel", "C0GENERAL")
    assert result.exit_code == 2
    assert "question is empty" in result.stderr and "Traceback" not in result.output


def test_an_unreadable_index_is_a_short_message_not_a_traceback(run, tmp_path, monkeypatch):
    # The data directory is a file: the store cannot be opened, whatever the library raises.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(blocker))
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nSome text.\n")
    result = run("ingest", str(note), "--public")
    assert result.exit_code == 2
    assert "cannot open the index" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["ask", "q?", "--channel", "C0GENERAL"], ["search", "q", "--channel", "C0GENERAL"],
                                     ["documents"]])
def test_reading_a_missing_index_is_an_error_not_an_empty_answer(run, tmp_path, monkeypatch, command):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "typo"))
    result = run(*command)
    assert result.exit_code == 2
    assert "there is no index at" in result.stderr and "LOREBOT_DATA_DIR" in result.stderr
    assert not (tmp_path / "typo").exists()  # nothing created on the way


def test_an_overlap_too_large_for_the_chunk_names_both_settings(run, monkeypatch):
    monkeypatch.setenv("LOREBOT_CHUNK_OVERLAP_TOKENS", "400")
    result = run("documents")
    assert result.exit_code == 2
    assert "LOREBOT_CHUNK_OVERLAP_TOKENS (400)" in result.stderr and "LOREBOT_CHUNK_TOKENS (128)" in result.stderr


def test_feedback_stats_and_export_read_what_the_bot_recorded(tmp_path, monkeypatch):
    from training.database import default_database_url, open_engine
    from training.feedback import DOWN, UP, FeedbackStore, Interaction, UsedPassage

    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    engine = open_engine(default_database_url(tmp_path))
    store = FeedbackStore(engine)
    passage = UsedPassage(doc_id="d1", chunk_id="d1:0", title="PTO", source="pto.md", text="18 days a year.",
                          scope=("public",), score=0.9, cited_as=1, quote="18 days a year.")
    store.record_interaction(Interaction(
        interaction_id="i1", channel_id="C0GENERAL", user_id="U0ANNA", surface="mention", asked="how many days?",
        question="how many days?", answer="> 18 days a year. [1]", found=True, generator="extractive",
        passages=(passage,)))
    store.cast_vote("i1", user_id="U0ANNA", value=UP, via="reaction", at=1.0)
    store.cast_vote("i1", user_id="U0BORIS", value=DOWN, via="button", at=2.0)
    engine.dispose()

    runner = CliRunner()
    stats = runner.invoke(app, ["feedback", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert {k: json.loads(stats.stdout)[k] for k in ("interactions", "upvotes", "downvotes")} == \
        {"interactions": 1, "upvotes": 1, "downvotes": 1}

    out = tmp_path / "feedback.jsonl"
    exported = runner.invoke(app, ["feedback", "export", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    [line] = out.read_text().splitlines()
    record = json.loads(line)
    assert record["question"] == "how many days?" and record["passages"][0]["text"] == "18 days a year."
    assert record["passages"][0]["scope"] == ["public"]
    assert sorted(v["value"] for v in record["votes"]) == [-1, 1]
    assert record["training"] == "not_endorsed"  # one up, one down: net 0


def test_eval_retrieval_json_and_cached_rerun(tmp_path, monkeypatch):
    from tests.knowledge.test_evaluation import write_dataset

    dataset = write_dataset(tmp_path / "mini")
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "retrieval", str(dataset), "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_ms"} <= set(report)
    assert set(report["latency_ms"]) == {"p50", "p95"} and report["queries"] == 3
    assert report["index"]["documents"] == 4 and report["index"]["cached"] is False
    # Each query's one relevant document shares its words: the real model ranks it first.
    assert report["mrr@10"] == 1.0 and report["recall@100"] == 1.0

    again = runner.invoke(app, ["eval", "retrieval", str(dataset), "--mode", "bm25"])
    assert again.exit_code == 0, again.output
    assert "cached index" in again.stdout and "ndcg@10" in again.stdout
    assert json.loads(again.stdout.strip().splitlines()[-1])["index"]["cached"] is True


def test_eval_retrieval_reports_a_malformed_line(tmp_path, monkeypatch):
    from tests.knowledge.test_evaluation import write_dataset

    dataset = write_dataset(tmp_path / "mini", qrels="q1\td1\t1\nq2\td2\n")
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["eval", "retrieval", str(dataset)])
    assert result.exit_code == 2
    assert "test.tsv:2: expected 3 tab-separated columns" in result.output.replace("\n", "")  # Rich wraps
    assert "Traceback" not in result.output
