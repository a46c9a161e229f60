"""From 👍 to a promoted adapter, one run: build the dataset, train when there is enough new to
learn from, evaluate the candidate against the adapter in service, promote only if it is better.

Every run ends in an outcome a person can read (``lorebot train``, the scheduler's job log):
skipped (and why), refused by the gate (with the numbers), promotion failed (the hook's message;
the previous adapter stays), or promoted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from training.dataset import DatasetOptions, DatasetReport, build_dataset
from training.feedback import FeedbackStore
from training.registry import AdapterRegistry, PromotionHook, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPlan:
    base_model: str | None
    dataset: DatasetOptions
    lora: object  # training.finetune.LoraOptions (imported lazily: torch is slow to import)
    gate: object  # training.evaluate.GateOptions
    min_new_examples: int = 50
    promotion_hook: PromotionHook | None = None


@dataclass
class TrainingOutcome:
    outcome: str  # "skipped", "refused", "promotion_failed", "promoted"
    detail: str
    dataset: dict = field(default_factory=dict)
    new_examples: int = 0
    version: str | None = None
    gate: dict | None = None
    train_metrics: dict | None = None

    def as_json(self) -> dict:
        return {"outcome": self.outcome, "detail": self.detail, "new_examples": self.new_examples,
                "version": self.version, "dataset": self.dataset, "gate": self.gate, "train": self.train_metrics}


def run_training(feedback: FeedbackStore, registry: AdapterRegistry, plan: TrainingPlan, *, work_dir: Path,
                 force: bool = False, progress: bool = True) -> TrainingOutcome:
    """One training run; ``force`` trains even with fewer new examples than the plan asks for."""
    if not plan.base_model:
        return TrainingOutcome("skipped", "no base model configured (LOREBOT_BASE_MODEL)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = build_dataset(feedback, work_dir / "datasets" / stamp, plan.dataset)
    new = new_examples(report, registry)
    summary = report.as_json()
    if report.train == 0 or report.heldout == 0:
        return TrainingOutcome("skipped", f"the dataset needs examples on both sides of the split "
                                          f"(train {report.train}, held-out {report.heldout})", summary, new)
    if new < plan.min_new_examples and not force:
        return TrainingOutcome("skipped", f"{new} new eligible examples since the last adapter; "
                                          f"training waits for {plan.min_new_examples}", summary, new)
    from training.evaluate import evaluate_candidate
    from training.finetune import finetune

    result = finetune(dataset_dir=report.path, base_model=plan.base_model, registry=registry, options=plan.lora,
                      work_dir=work_dir / "checkpoints", progress=progress)
    incumbent = registry.promoted()
    gate = evaluate_candidate(base_model=plan.base_model, candidate=result.path,
                              incumbent=registry.path(incumbent) if incumbent else None,
                              heldout=report.path / "heldout.jsonl", options=plan.gate)
    outcome = TrainingOutcome("refused", gate.reason, summary, new, result.version, gate.as_json(), result.metrics)
    if not gate.promote:
        return outcome
    try:
        registry.promote(result.version, hook=plan.promotion_hook, reason=gate.reason)
    except RegistryError as e:
        outcome.outcome, outcome.detail = "promotion_failed", f"{e}; {incumbent or 'the base model'} stays in service"
        return outcome
    outcome.outcome, outcome.detail = "promoted", f"{result.version} promoted: {gate.reason}"
    return outcome


def new_examples(report: DatasetReport, registry: AdapterRegistry) -> int:
    """Eligible interactions not in the dataset the newest adapter was trained on."""
    versions = registry.versions()
    seen: set[str] = set()
    if versions:
        manifest = _read_json(versions[-1].path / "dataset_manifest.json")
        seen = set(_interaction_ids(manifest))
    return len(set(_interaction_ids(report.manifest)) - seen)


def _interaction_ids(manifest: dict) -> list[str]:
    ids = manifest.get("interaction_ids") or {}
    if isinstance(ids, dict):
        return [i for split in ids.values() for i in split]
    return list(ids)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
