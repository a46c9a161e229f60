"""LOREBOT_SOURCES: two configured sources that cover the same files must agree on who sees them."""

from __future__ import annotations

import json

import pytest

from bot.config import load_settings
from knowledge.errors import ConfigurationError


def sources(monkeypatch, *entries: dict):
    monkeypatch.setenv("LOREBOT_SOURCES", json.dumps(list(entries)))
    return load_settings()


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "handbook" / "deals").mkdir(parents=True)
    return tmp_path / "handbook"


@pytest.mark.parametrize(("outer", "inner"), [
    ({"public": True}, {"channels": ["C0DEALS"]}),
    ({"channels": ["C0ENG"]}, {"channels": ["C0DEALS"]}),
    ({"channels": ["C0DEALS"]}, {"channels": ["C0DEALS", "C0LEGAL"]}),
])
def test_a_source_inside_another_with_another_scope_is_refused_naming_both(monkeypatch, tree, outer, inner):
    with pytest.raises(ConfigurationError) as refused:
        sources(monkeypatch, {"path": str(tree / "deals"), **inner}, {"path": str(tree), **outer})
    message = str(refused.value)
    assert "LOREBOT_SOURCES" in message and str(tree / "deals") in message and f"{tree}" in message
    assert "overlap" in message


def test_the_same_folder_by_another_name_overlaps_too(monkeypatch, tree, tmp_path):
    (tmp_path / "alias").symlink_to(tree, target_is_directory=True)
    with pytest.raises(ConfigurationError, match="overlap"):
        sources(monkeypatch, {"path": str(tree), "public": True},
                {"path": str(tmp_path / "alias" / "deals" / ".." / "deals"), "channels": ["C0DEALS"]})


def test_only_overlap_with_another_scope_is_refused(monkeypatch, tree):
    (tree / "deals-archive").mkdir()
    same_scope = sources(monkeypatch, {"path": str(tree), "channels": ["C0DEALS"]},
                         {"path": str(tree / "deals"), "channels": ["C0DEALS"], "source_url": "https://wiki/deals"})
    side_by_side = sources(monkeypatch, {"path": str(tree / "deals"), "channels": ["C0DEALS"]},
                           {"path": str(tree / "deals-archive"), "public": True})
    assert len(same_scope.sources) == len(side_by_side.sources) == 2
    with pytest.raises(ConfigurationError, match="overlap"):
        sources(monkeypatch, {"path": str(tree / "deals"), "channels": ["C0DEALS"]},
                {"path": str(tree / "deals-archive"), "public": True}, {"path": str(tree), "channels": ["C0DEALS"]},
                {"path": str(tree / "deals-archive" / "2023"), "channels": ["C0DEALS"]})
