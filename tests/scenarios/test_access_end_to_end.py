"""The access property end to end, through the real `lorebot` command in its own process:
a document scoped to one channel, queried from another with its exact text, never appears in
search results, answers or citations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SECRET = "The Falcon acquisition closes on 14 March and the offer price is 41 dollars per share."


def lorebot(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOREBOT_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    private, public = root / "private", root / "public"
    private.mkdir()
    public.mkdir()
    (private / "deal.md").write_text(f"# Project Falcon\n\n## Terms\n\n{SECRET}\n")
    (public / "lunch.md").write_text("# Lunch\n\nLunch is served at noon on the third floor every weekday.\n")
    data = root / "data"
    assert lorebot(data, "ingest", str(private), "--channel", "C0DEALS").returncode == 0
    assert lorebot(data, "ingest", str(public), "--public").returncode == 0
    return data


@pytest.mark.parametrize("channel", ["C0GENERAL", "G0OTHERPRIVATE", "D0DIRECTMSG"])
def test_another_conversation_never_sees_the_private_document(data_dir, channel):
    search = lorebot(data_dir, "search", SECRET, "--channel", channel, "--json")
    assert search.returncode == 0, search.stderr
    results = json.loads(search.stdout)["results"]
    # Search has no floor: the one document this conversation may see comes back, and only it.
    assert [r["title"] for r in results] == ["Lunch"]
    assert all("Falcon" not in r["title"] and "41 dollars" not in r["text"] for r in results)
    assert all(r["scope"] == ["public"] for r in results)

    ask = lorebot(data_dir, "ask", SECRET, "--channel", channel, "--json")
    assert ask.returncode == 0, ask.stderr
    assert "41 dollars" not in ask.stdout and "Falcon" not in ask.stdout
    answer = json.loads(ask.stdout)
    assert all(c["title"] != "Project Falcon" for c in answer["citations"])


def test_its_own_channel_finds_and_cites_it(data_dir):
    ask = lorebot(data_dir, "ask", "When does the Falcon acquisition close?", "--channel", "C0DEALS", "--json")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert answer["found"] is True
    assert answer["citations"][0]["title"] == "Project Falcon"
    assert "14 March" in answer["answer"]
