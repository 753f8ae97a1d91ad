"""The drop folder: `<incoming>/<source>/<file>`, on local disk or any fsspec URL (s3://, gs://, ...).

Files are only ever read here; what arrives stays where its producer put it.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec

from mapwise.atomic import write_json
from mapwise.errors import MapwiseError

_PARTIAL = (".tmp", ".part", ".partial", ".crdownload")


def open_location(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of a local path or URL; a missing fsspec driver is one line."""
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise MapwiseError(f"{url}: cannot open ({err})") from None


def display(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A local path as a plain path, anything else as its URL."""
    return path if "file" in fs.protocol else fs.unstrip_protocol(path)


def source_of(url: str) -> str:
    """The source a dropped file belongs to: the name of the folder it was dropped in."""
    parent = url.rstrip("/").rsplit("/", 2)
    return parent[-2] if len(parent) >= 2 else ""


def _ready_candidate(path: str, info: dict) -> bool:
    name = path.rsplit("/", 1)[-1]
    return info.get("type") == "file" and not name.startswith(".") and not name.endswith(_PARTIAL)


class Watcher:
    """Lists the drop folder on each `poll()`; reports a file once its size and time held still for a poll.

    What was reported is kept in `state_file`, so a restarted watcher does not report it again.
    """

    def __init__(self, url: str, state_file: Path):
        self.fs, self.root = open_location(url)
        self.state_file = state_file
        self.reported: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.pending: dict[str, str] = {}

    def _listing(self) -> dict[str, str]:
        if not self.fs.exists(self.root):
            return {}
        found = self.fs.find(self.root, detail=True, maxdepth=2)
        return {
            display(self.fs, path): f"{info.get('size')}|{info.get('mtime') or info.get('LastModified') or info.get('ETag')}"
            for path, info in found.items() if _ready_candidate(path, info)
        }

    def poll(self) -> list[str]:
        """Files that are new or changed and have stopped changing since the last poll."""
        seen = self._listing()
        ready = [f for f, sig in seen.items() if self.pending.get(f) == sig and self.reported.get(f) != sig]
        self.pending = {f: sig for f, sig in seen.items() if self.reported.get(f) != sig}
        for f in ready:
            self.reported[f] = seen[f]
            self.pending.pop(f)
        if ready:
            write_json(self.state_file, self.reported, indent=1)
        return sorted(ready)
