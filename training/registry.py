"""The adapter registry: one directory per trained LoRA adapter version, and a pointer to the one
in service.

Layout (the generation server's deployment reads it too, see ``deploy/tgi/start-tgi.sh``)::

    adapters/
        lorebot-v0003/          # a complete version: adapter_config.json, weights, tokenizer, …
        .lorebot-v0004.partial/ # being written: ignored until renamed into place
        promoted.json           # {"version": "lorebot-v0003", ...}: the adapter in service

A version's directory name is the adapter name the generation server serves it under.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

PROMOTED_FILE = "promoted.json"


class AdapterRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def promoted(self) -> str | None:
        """The adapter version in service, or None (no adapter promoted yet: the base model)."""
        try:
            data = json.loads((self.root / PROMOTED_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.root / PROMOTED_FILE} is unreadable: {e}") from e
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) and version else None

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
