"""The batch ledger: one JSON line per batch seen, keyed by the sha256 of its content.

It sits beside the data it describes (`orchestrate.ledger`, tracked by git, recorded with each run).

A line is complete once its newline is on disk. A process killed mid-append leaves a torn last line:
that entry was never recorded, so reading skips it and the next append cuts it off first.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from mapwise.errors import MapwiseError


class Ledger:
    """Append-only; the same content arriving again is found by its hash, whatever its name."""

    def __init__(self, path: Path):
        self.path = path

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]  # a torn last line aside
        found = []
        for number, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                raise MapwiseError(f"{self.path}:{number}: not a JSON line; the ledger is damaged") from None
        return found

    def find(self, sha256: str) -> dict | None:
        """The last entry for this content, or None if it was never seen or the data no longer holds it.

        The ledger is versioned with the data (the flows record both in one commit), and an accepted batch
        counts only while its `<stored>.dvc` exists: after a rollback to a data version without it, the same
        content is processed again.
        """
        entry = next((e for e in reversed(self.entries()) if e["sha256"] == sha256), None)
        if entry and entry["status"] == "accepted" and not Path(f"{entry.get('stored')}.dvc").exists():
            return None
        return entry

    def record(self, **entry: object) -> dict:
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as out:
            out.seek(0)
            kept = out.read().rfind(b"\n") + 1
            out.truncate(kept)  # a torn last line, left by a kill mid-append
            out.write(json.dumps(entry).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return entry
