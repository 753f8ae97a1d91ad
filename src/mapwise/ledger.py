"""The batch ledger: one JSON line per batch seen, keyed by the sha256 of its content."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path


class Ledger:
    """Append-only; the same content arriving again is found by its hash, whatever its name."""

    def __init__(self, path: Path):
        self.path = path

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def find(self, sha256: str) -> dict | None:
        """The last entry for this content, or None if it was never seen."""
        return next((e for e in reversed(self.entries()) if e["sha256"] == sha256), None)

    def record(self, **entry: object) -> dict:
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
        return entry
