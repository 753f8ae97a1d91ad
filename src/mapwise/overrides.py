"""Run with some params changed, then give params.yaml back byte for byte.

DVC stages read `params.yaml`, so an override has to be written there for the length of a run. The
original is kept beside it first (`<dir>/.mapwise/params.before-overrides.yaml`); a run that dies
half-way leaves that copy, and the next run puts it back before doing anything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mapwise.atomic import write_bytes
from mapwise.params import Params, parse_params, read_params, with_overrides


def backup_path(path: Path) -> Path:
    return path.parent / ".mapwise" / f"{path.stem}.before-overrides{path.suffix}"


def restore_interrupted(path: Path) -> bool:
    """Put back the params an interrupted run left overridden; True if there were any."""
    backup = backup_path(path)
    if not backup.exists():
        return False
    write_bytes(path, backup.read_bytes())
    backup.unlink()
    return True


@contextmanager
def params_overridden(path: Path, overrides: dict[str, object]) -> Iterator[Params]:
    """The params with `overrides` applied, written to `path` while the block runs (validated before)."""
    data = read_params(path)
    merged = with_overrides(data, overrides)
    params = parse_params(merged, str(path))
    if not overrides:
        yield params
        return
    backup = backup_path(path)
    backup.parent.mkdir(parents=True, exist_ok=True)
    original = path.read_bytes()
    write_bytes(backup, original)
    write_bytes(path, yaml.safe_dump(merged, sort_keys=False).encode())
    try:
        yield params
    finally:
        write_bytes(path, original)
        backup.unlink()
