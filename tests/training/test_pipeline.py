"""One training run end to end, on the tiny model: 👍 answers in public channels become a
promoted adapter; a private channel's answer never reaches the dataset; nothing new, no training."""

from __future__ import annotations

import random

import pytest

from tests.training.test_dataset import a_passage, an_answer, record
from tests.training.tiny_model import DAYS, ROOMS, TEAMS, tiny_lora_options
from training.dataset import DatasetOptions
from training.evaluate import GateOptions
from training.feedback import FeedbackStore
from training.pipeline import TrainingPlan, run_training
from training.registry import AdapterRegistry


def fill(store: FeedbackStore, count: int, *, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(count):
        team, day, room = rng.choice(TEAMS), rng.choice(DAYS), rng.choice(ROOMS)
        fact = a_passage(f"{team}-{i}#0", f"The {team} team meets every {day} in the {room} room.", cited_as=1)
        other = a_passage(f"{team}-{i}#1", f"The {rng.choice(TEAMS)} team meets in the {rng.choice(ROOMS)} room.")
        record(store, an_answer(f"When does the {team} team number {seed}-{i} meet?",
                                f"The {team} team meets on {day} in the {room} room [1].", (fact, other),
                                minutes=i))


def plan(base: str, hook=None, **changes) -> TrainingPlan:
    return TrainingPlan(base_model=base, dataset=DatasetOptions(heldout_fraction=0.25),
                        lora=tiny_lora_options(max_steps=30), gate=GateOptions(generations=4, max_new_tokens=24,
                                                                               min_citation_validity=0.0),
                        min_new_examples=changes.pop("min_new_examples", 10), promotion_hook=hook, **changes)


@pytest.fixture
def store(open_database) -> FeedbackStore:
    return FeedbackStore(open_database())


def test_endorsed_public_answers_become_a_promoted_adapter_and_private_ones_never_do(store, tiny_base, tmp_path):
    fill(store, 40, seed=1)
    secret = a_passage("sre/breakglass.md#0", "The break-glass password rotates every Friday.",
                       scope=("C0SRE",), cited_as=1)
    private = record(store, an_answer("When does the break-glass password rotate?", "Every Friday [1].",
                                      (secret,), channel_id="C0SRE"), up=12)
    registry = AdapterRegistry(tmp_path / "adapters")
    hooked: list[str] = []

    outcome = run_training(store, registry, plan(tiny_base, hook=lambda version, path: hooked.append(version)),
                           work_dir=tmp_path / "work", progress=False)

    assert outcome.outcome == "promoted", outcome.detail
    assert registry.promoted() == outcome.version == hooked[0]
    assert outcome.dataset["excluded"]["private_passage"] == 1 and outcome.new_examples == outcome.dataset["eligible"]
    assert outcome.gate["candidate_loss"] < outcome.gate["incumbent_loss"] and outcome.gate["incumbent"] is None
    version_dir = registry.path(outcome.version)
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "dataset_manifest.json",
                 "eval_report.json", "tokenizer_config.json"):
        assert (version_dir / name).is_file(), name
    trained_on = "".join(p.read_text() for p in (tmp_path / "work" / "datasets").rglob("*.json*"))
    trained_on += (version_dir / "dataset_manifest.json").read_text()
    assert private.interaction_id not in trained_on and "break-glass" not in trained_on


def test_with_nothing_new_since_the_last_adapter_the_run_is_skipped(store, tiny_base, tmp_path):
    fill(store, 40, seed=2)
    registry = AdapterRegistry(tmp_path / "adapters")
    first = run_training(store, registry, plan(tiny_base), work_dir=tmp_path / "work", progress=False)
    assert first.outcome == "promoted", first.detail
    again = run_training(store, registry, plan(tiny_base), work_dir=tmp_path / "work", progress=False)
    assert again.outcome == "skipped" and again.new_examples == 0 and "training waits for 10" in again.detail
    assert [v.name for v in registry.versions()] == [first.version]


def test_a_failing_promotion_hook_keeps_the_previous_adapter(store, tiny_base, tmp_path):
    fill(store, 40, seed=3)
    registry = AdapterRegistry(tmp_path / "adapters")

    def reload_fails(version, path):
        raise RuntimeError("TGI did not come back")

    outcome = run_training(store, registry, plan(tiny_base, hook=reload_fails), work_dir=tmp_path / "work",
                           progress=False)
    assert outcome.outcome == "promotion_failed" and "TGI did not come back" in outcome.detail
    assert registry.promoted() is None and "the base model stays in service" in outcome.detail
    assert [v.name for v in registry.versions()] == [outcome.version]  # trained and kept, not in service


def test_without_a_base_model_nothing_runs(store, tmp_path):
    outcome = run_training(store, AdapterRegistry(tmp_path), plan(None), work_dir=tmp_path, progress=False)
    assert outcome.outcome == "skipped" and "LOREBOT_BASE_MODEL" in outcome.detail
