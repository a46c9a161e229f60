"""The adapter registry: one directory per trained LoRA adapter version, and a pointer to the one
in service.

Layout (the generation server's deployment reads it too, see ``deploy/tgi/start-tgi.sh``)::

    adapters/
        lorebot-v0003/          # a complete version: adapter_config.json, weights, tokenizer,
                                # metrics.json, dataset_manifest.json, eval_report.json
        .lorebot-v0004.partial/ # being written: ignored until renamed into place
        promoted.json           # {"version": "lorebot-v0003", "history": [...]}: the adapter in service

A version's directory name is the adapter name the generation server serves it under. A version
appears all at once (a rename) and the pointer changes all at once (a rename), so a reader never
sees half of either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from knowledge.errors import LorebotError

PROMOTED_FILE = "promoted.json"
VERSION_PREFIX = "lorebot-v"
ADAPTER_CONFIG = "adapter_config.json"
_VERSION = re.compile(rf"^{VERSION_PREFIX}(\d{{4,}})$")


class RegistryError(LorebotError):
    """A version that does not exist, a promotion refused, a hook that failed."""


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    path: Path
    created: datetime
    metrics: dict  # training's metrics.json
    evaluation: dict  # the gate's eval_report.json ({} until it has run)
    promoted: bool = False

    def as_json(self) -> dict:
        return {"version": self.name, "path": str(self.path), "created": self.created.isoformat(),
                "promoted": self.promoted, "metrics": self.metrics, "evaluation": self.evaluation}


# A hook gets the version and its directory; it raises (or a command exits non-zero) to refuse.
PromotionHook = Callable[[str, Path], None]


class AdapterRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ reading

    def promoted(self) -> str | None:
        """The adapter version in service, or None (no adapter promoted yet: the base model)."""
        data = self._pointer()
        version = data.get("version")
        return version if isinstance(version, str) and version else None

    def versions(self) -> list[AdapterVersion]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        promoted = self.promoted()
        found = []
        for path in self.root.iterdir():
            if _VERSION.match(path.name) and (path / ADAPTER_CONFIG).is_file():
                found.append(AdapterVersion(name=path.name, path=path, created=_mtime(path),
                                            metrics=_read_json(path / "metrics.json"),
                                evaluation=_read_json(path / "eval_report.json"), promoted=path.name == promoted))
        return sorted(found, key=lambda v: _number(v.name))

    def path(self, version: str) -> Path:
        """The directory of a complete version; :class:`RegistryError` if there is none."""
        path = self.root / version
        if not _VERSION.match(version) or not (path / ADAPTER_CONFIG).is_file():
            known = ", ".join(v.name for v in self.versions()) or "none"
            raise RegistryError(f"no adapter version {version!r} in {self.root} (known: {known})")
        return path

    def history(self) -> list[str]:
        """Versions promoted before the current one, most recent last."""
        return [v for v in self._pointer().get("history", []) if isinstance(v, str)]

    # ------------------------------------------------------------------ writing versions

    def reserve(self) -> tuple[str, Path]:
        """A new version's name and the hidden directory to write it in (see :meth:`commit`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        taken = [_number(p.name.strip(".").removesuffix(".partial")) for p in self.root.iterdir()
                 if _VERSION.match(p.name.strip(".").removesuffix(".partial"))]
        number = max(taken, default=0) + 1
        while True:
            name = f"{VERSION_PREFIX}{number:04d}"
            partial = self.root / f".{name}.partial"
            try:
                partial.mkdir()
                return name, partial
            except FileExistsError:  # another trainer reserved it a moment ago
                number += 1

    def commit(self, name: str, partial: Path) -> Path:
        """Make a written version visible at once (a rename)."""
        if not (partial / ADAPTER_CONFIG).is_file():
            raise RegistryError(f"{partial} holds no {ADAPTER_CONFIG}: not a complete adapter")
        final = self.root / name
        os.replace(partial, final)
        return final

    def discard(self, partial: Path) -> None:
        shutil.rmtree(partial, ignore_errors=True)

    # ------------------------------------------------------------------ the pointer

    def promote(self, version: str, *, hook: PromotionHook | None = None, reason: str = "") -> None:
        """Put ``version`` in service: run ``hook`` first (reload the generation server); if it
        fails, nothing changes and :class:`RegistryError` says why."""
        path = self.path(version)
        current = self.promoted()
        if version == current:
            return
        _run_hook(hook, version, path)
        history = [*self.history(), current] if current else self.history()
        self.write_promoted(version, history=history[-50:], reason=reason,
                            promoted_at=datetime.now(timezone.utc).isoformat())

    def rollback(self, *, hook: PromotionHook | None = None) -> str | None:
        """Back to the version promoted before the current one (None: the base model)."""
        history = self.history()
        current = self.promoted()
        if current is None:
            raise RegistryError("no adapter is promoted: nothing to roll back")
        previous = history[-1] if history else None
        if previous is not None:
            _run_hook(hook, previous, self.path(previous))
        self.write_promoted(previous, history=history[:-1], reason=f"rollback from {current}",
                            promoted_at=datetime.now(timezone.utc).isoformat())
        return previous

    def write_promoted(self, version: str | None, **details: object) -> None:
        """Point at ``version`` atomically: readers see the old pointer or the new one, never half."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".promoted.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": version, **details}, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / PROMOTED_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _pointer(self) -> dict:
        try:
            data = json.loads((self.root / PROMOTED_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.root / PROMOTED_FILE} is unreadable: {e}") from e
        return data if isinstance(data, dict) else {}


def command_hook(command: str, *, timeout_s: float = 900.0) -> PromotionHook:
    """A hook that runs ``command`` (a shell command line, e.g. ``deploy/hooks/reload-tgi.sh``) with
    ``LOREBOT_ADAPTER_VERSION`` and ``LOREBOT_ADAPTER_PATH`` set; a non-zero exit refuses."""

    def run(version: str, path: Path) -> None:
        env = {**os.environ, "LOREBOT_ADAPTER_VERSION": version, "LOREBOT_ADAPTER_PATH": str(path)}
        try:
            done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise RegistryError(f"promotion hook {command!r} did not finish in {timeout_s:.0f} s") from e
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise RegistryError(f"promotion hook {command!r} failed (exit {done.returncode}): {detail[0]}")

    return run


def _run_hook(hook: PromotionHook | None, version: str, path: Path) -> None:
    if hook is None:
        return
    try:
        hook(version, path)
    except RegistryError:
        raise
    except Exception as e:
        raise RegistryError(f"promotion hook failed for {version}: {e}") from e


def _number(name: str) -> int:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else -1


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
