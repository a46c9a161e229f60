"""``lorebot train`` and ``lorebot adapters …``: the fine-tuning loop by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.app import Services

adapters_app = typer.Typer(help="Trained LoRA adapters: which exist, which is in service.", no_args_is_help=True)

ServicesFactory = Callable[[], AbstractContextManager[Services]]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def register(app: typer.Typer, services: ServicesFactory, out: Console, err: Console) -> None:
    """Add the commands to the main CLI; ``services`` opens settings and clients with clear errors."""

    @app.command()
    def train(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Build and report the dataset; train nothing.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Train even with fewer new examples than LOREBOT_TRAIN_MIN_NEW_EXAMPLES.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Turn the answers people marked 👍 into a dataset, train a LoRA adapter, and promote it if it is better."""
        with services() as s:
            plan = s.training_plan()
            work = s.settings.data_dir / "training"
            if dry_run:
                from training.dataset import build_dataset

                report = build_dataset(s.feedback, work / "datasets" / "dry-run", plan.dataset, write=False)
                result = report.as_json()
            else:
                from training.pipeline import run_training

                result = run_training(s.feedback, s.registry, plan, work_dir=work, force=force,
                                      progress=err.is_terminal and not as_json).as_json()
        if as_json:
            print(json.dumps(result))
            return
        _print_training(result, dry_run=dry_run)

    def _print_training(result: dict, *, dry_run: bool) -> None:
        dataset = result if dry_run else result.get("dataset") or {}
        if dataset:
            excluded = ", ".join(f"{reason} {n}" for reason, n in sorted((dataset.get("excluded") or {}).items()))
            out.print(f"Dataset: {dataset.get('eligible', 0)} eligible answers → train {dataset.get('train', 0)}, "
                      f"held-out {dataset.get('heldout', 0)}; excluded: {excluded or 'none'}")
        if dry_run:
            out.print("Dry run: nothing written, nothing trained.")
            return
        out.print(f"[bold]{escape(result['outcome'])}[/]: {escape(result['detail'])}")

    @adapters_app.command("list")
    def adapters_list(as_json: JsonOption = False) -> None:
        """Every trained version, with its metrics; the one in service is marked."""
        with services() as s:
            versions = s.registry.versions()
        if as_json:
            print(json.dumps({"adapters": [v.as_json() for v in versions],
                              "promoted": next((v.name for v in versions if v.promoted), None)}))
            return
        if not versions:
            out.print("No adapters trained yet: answers come from the base model (lorebot train makes one).")
            return
        table = Table()
        for column in ("", "version", "created", "train loss", "held-out loss"):
            table.add_column(column)
        for v in versions:
            table.add_row("→" if v.promoted else "", v.name, v.created.strftime("%Y-%m-%d %H:%M"),
                          _number(v.metrics.get("train_loss")), _number(v.evaluation.get("candidate_loss")))
        out.print(table)

    @adapters_app.command("promote")
    def adapters_promote(version: Annotated[str, typer.Argument(help="The version to put in service, e.g. lorebot-v0003.")]) -> None:
        """Put a version in service (runs LOREBOT_PROMOTION_HOOK first; if it fails, nothing changes)."""
        with services() as s:
            s.registry.promote(version, hook=s.promotion_hook, reason="promoted by hand")
        out.print(f"{version} is in service.")

    @adapters_app.command("rollback")
    def adapters_rollback() -> None:
        """Back to the version in service before the current one (or the base model)."""
        with services() as s:
            previous = s.registry.rollback(hook=s.promotion_hook)
        out.print(f"{previous or 'The base model'} is in service again.")

    app.add_typer(adapters_app, name="adapters")


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"
