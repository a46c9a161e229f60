"""Issue 19's re-ingest repros, through the real `lorebot` command in its own process: a channel-only
document never becomes visible to another conversation because of how it was re-ingested (a parent
folder as public, a symlink in a public folder, overlapping configured sources) unless an admin
confirms with --allow-widen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.jobs import reingest_sources
from knowledge.errors import ConfigurationError

from tests.conftest import FALCON_SECRET as SECRET
from tests.conftest import write_falcon_handbook


def lorebot(data_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    # Sources only where a test passes them: a search must not trip over the ones it is testing.
    env = {**{k: v for k, v in os.environ.items() if k != "LOREBOT_SOURCES"}, "LOREBOT_DATA_DIR": str(data_dir), **env}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def titles_seen_by(data_dir, channel: str) -> list[str]:
    search = lorebot(data_dir, "search", SECRET, "--channel", channel, "--json")
    assert search.returncode == 0, search.stderr
    return [r["title"] for r in json.loads(search.stdout)["results"]]


@pytest.fixture
def handbook(tmp_path):
    """handbook/private/deal.md ingested for C0DEALS only; handbook/public/lunch.md not yet ingested."""
    root = write_falcon_handbook(tmp_path / "handbook")
    data = tmp_path / "data"
    first = lorebot(data, "ingest", str(root / "private"), "--channel", "C0DEALS")
    assert first.returncode == 0, first.stderr
    return root, data


def test_ingesting_the_parent_folder_as_public_is_refused_until_confirmed(handbook):
    root, data = handbook
    refused = lorebot(data, "ingest", str(root), "--public")
    assert refused.returncode == 2
    stderr = "".join(refused.stderr.split())
    assert "private/deal.md" in stderr and "C0DEALS→public" in stderr and "--allow-widen" in stderr
    assert "Traceback" not in refused.stderr
    assert titles_seen_by(data, "C0GENERAL") == []  # refused whole: not even the lunch menu was added

    confirmed = lorebot(data, "ingest", str(root), "--public", "--allow-widen")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "Project Falcon" in titles_seen_by(data, "C0GENERAL")


def test_a_symlink_in_a_public_folder_does_not_publish_the_file_it_points_to(handbook):
    root, data = handbook
    link = root / "public" / "falcon.md"
    link.symlink_to(root / "private" / "deal.md")
    ingested = lorebot(data, "ingest", str(root / "public"), "--public")
    assert ingested.returncode == 0, ingested.stderr
    assert titles_seen_by(data, "C0GENERAL") == ["Lunch"]
    assert "public/falcon.md:symboliclinktooutsidethefolder" in "".join(ingested.stderr.split())

    # Named on the command line, the link is the file it points to: the same widening rule.
    assert lorebot(data, "ingest", str(link), "--public").returncode == 2
    assert lorebot(data, "ingest", str(link), "--public", "--allow-widen").returncode == 0
    assert "Project Falcon" in titles_seen_by(data, "C0GENERAL")


def test_overlapping_configured_sources_with_different_scopes_are_refused(handbook, monkeypatch):
    root, data = handbook
    overlapping = json.dumps([{"path": str(root / "private"), "channels": ["C0DEALS"]},
                              {"path": str(root), "public": True}])
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(data))
    monkeypatch.setenv("LOREBOT_SOURCES", overlapping)
    with pytest.raises(ConfigurationError, match="overlap"):
        reingest_sources()  # the scheduled job: the scheduler records it as a failed run
    assert titles_seen_by(data, "C0GENERAL") == []

    started = lorebot(data, "documents", LOREBOT_SOURCES=overlapping)
    assert started.returncode == 2 and "Traceback" not in started.stderr
    message = "".join(started.stderr.split())
    assert str(root / "private") in message and f"{root}(public)" in message
