"""Switching a running installation from the embedded index to Weaviate, as the README tells it:
start Weaviate, ``lorebot index migrate --to weaviate``, set WEAVIATE_URL, restart. The answers
and who may see what stay the same; and the way back works too."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.fakes.weaviate_server import FakeWeaviate, deployed_version

pytestmark = pytest.mark.slow

VACATION = "how many vacation days do I get each year?"
VENDOR = "we're about to pay a brand-new drone survey contractor around $30k. who has to sign off on that payment?"
PINNED_VERSION = deployed_version()


@pytest.fixture
def cli(handbook_data_dir, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    shutil.copytree(handbook_data_dir, data_dir)  # the way back writes into it
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(data_dir))
    monkeypatch.delenv("WEAVIATE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> dict:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return invoke


def answer(cli, question: str, channel: str) -> tuple[str, list[str]]:
    reply = cli("ask", question, "--channel", channel, "--json")
    return reply["answer"], [c["title"] for c in reply["citations"]]


def test_migrate_then_switch_keeps_answers_and_access(cli, monkeypatch, tmp_path):
    before = {(q, ch): answer(cli, q, ch) for q, ch in [(VACATION, "C0GENERAL"), (VENDOR, "C0FINANCE"),
                                                          (VENDOR, "C0ENGINEER")]}
    with FakeWeaviate(api_key="compose-key", version=PINNED_VERSION) as weaviate:
        monkeypatch.setenv("WEAVIATE_GRPC_PORT", str(weaviate.grpc_port))
        monkeypatch.setenv("WEAVIATE_API_KEY", "compose-key")

        copied = cli("index", "migrate", "--to", "weaviate", "--weaviate-url", weaviate.url, "--json")
        assert copied["verified"] and copied["copied_chunks"] == copied["chunks"] > 0
        assert len(weaviate.objects("LorebotChunk")) == copied["chunks"]

        monkeypatch.setenv("WEAVIATE_URL", weaviate.url)  # "set WEAVIATE_URL, restart"
        after = {key: answer(cli, *key) for key in before}
        assert after == before
        assert "Vendor Payment Approval Limits" in after[(VENDOR, "C0FINANCE")][1]
        assert "Vendor Payment Approval Limits" not in after[(VENDOR, "C0ENGINEER")][1]
        # Every search the answers made went with the asking channel's filter.
        for sent in weaviate.grpc_requests("Search"):
            if sent.HasField("hybrid_search"):
                assert sent.filters.target.property == "scope"
                assert set(sent.filters.value_text_array.values) <= {"public", "C0GENERAL", "C0FINANCE", "C0ENGINEER"}

        again = cli("index", "migrate", "--to", "weaviate", "--json")  # resumable: nothing left to copy
        assert again["verified"] and again["copied_documents"] == 0 and again["skipped_documents"] == again["documents"]

        # And back, into an empty data directory.
        monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "back"))
        back = cli("index", "migrate", "--to", "embedded", "--json")
        assert back["verified"] and back["copied_chunks"] == copied["chunks"]
    monkeypatch.delenv("WEAVIATE_URL")
    assert {key: answer(cli, *key) for key in before} == before


def test_migrating_without_a_weaviate_says_what_to_set(cli, monkeypatch):
    result = CliRunner().invoke(app, ["index", "migrate", "--to", "weaviate"])
    assert result.exit_code == 2 and "WEAVIATE_URL" in result.stderr and "Traceback" not in result.output


def test_an_unreachable_weaviate_is_a_one_line_error_for_every_command(cli, monkeypatch):
    monkeypatch.setenv("WEAVIATE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LOREBOT_WEAVIATE_RETRIES", "0")
    result = CliRunner().invoke(app, ["ask", VACATION, "--channel", "C0GENERAL"])
    assert result.exit_code == 2 and "cannot reach Weaviate at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.output
