"""A batch of new data: copied in from the drop folder, checked whole, then accepted or rejected whole."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import MapwiseError
from mapwise.incoming import open_location, source_of
from mapwise.ingest import ingest_source
from mapwise.mapping.spec import Mapping


@dataclass(frozen=True)
class Batch:
    """A dropped file, copied to a local staging folder; the original is never touched."""

    origin: str
    source: str
    path: Path
    sha256: str


def stage(origin: str, staging_dir: Path, sources: list[str], source: str | None = None) -> Batch:
    """Copy the file at `origin` (path or URL) into `staging_dir` as `<sha256[:12]>-<name>`.

    Its source is the name of the folder it was dropped in, unless given.
    """
    source = source or source_of(origin)
    if source not in sources:
        raise MapwiseError(f"{origin}: '{source}' is not a source ({', '.join(sources)}); "
                           f"drop files into <incoming>/<source>/")
    fs, path = open_location(origin)
    try:
        data = fs.cat_file(path)
    except (OSError, FileNotFoundError) as err:
        raise MapwiseError(f"{origin}: cannot read ({err})") from None
    sha = hashlib.sha256(data).hexdigest()
    staging_dir.mkdir(parents=True, exist_ok=True)
    staged = staging_dir / f"{sha[:12]}-{path.rsplit('/', 1)[-1]}"
    staged.write_bytes(data)
    return Batch(origin, source, staged, sha)


FILTERED = "excluded by filter"  # rows a mapping's filter leaves out: not failures


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str
    report: dict


def check(batch: Batch, mapping: Mapping, key: bytes, max_bad_share: float) -> Check:
    """Map and validate the batch alone; it fails whole if unreadable, empty, or too many rows would be quarantined."""
    label = f"{batch.source}/{batch.path.name}"
    try:
        _, _, report = ingest_source([(batch.path, label)], mapping, key, {})
    except MapwiseError as err:  # the caller names the file, by where it arrived
        return Check(False, str(err).removeprefix(f"{batch.path}: ").replace(str(batch.path), batch.origin), {})
    if report["rows_read"] == 0:
        return Check(False, "no rows", report)
    for table, counts in report["tables"].items():
        failures = {r: n for r, n in counts["reasons"].items() if not r.startswith(FILTERED)}
        bad = sum(failures.values())
        share = bad / counts["read"]
        if share > max_bad_share:
            reasons = "; ".join(f"{r} ({n})" for r, n in list(failures.items())[:3])
            return Check(False, f"{bad} of {counts['read']} rows for {table} fail the contract "
                                f"({share:.0%} > orchestrate.max_bad_share {max_bad_share:.0%}): {reasons}", report)
    return Check(True, f"{report['rows_read']} rows, fit to ingest", report)


def _move(batch: Batch, folder: Path) -> Path:
    target = folder / batch.source / batch.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(batch.path, target)
    return target


def accept(batch: Batch, batches_dir: Path) -> Path:
    """Move the staged batch into `<batches_dir>/<source>/`, where ingest reads it."""
    return _move(batch, batches_dir)


def reject(batch: Batch, quarantine_dir: Path, result: Check) -> Path:
    """Move the staged batch into `<quarantine_dir>/<source>/` with `<file>.reason.json` beside it."""
    target = _move(batch, quarantine_dir)
    reason = {"origin": batch.origin, "sha256": batch.sha256, "reason": result.reason, "report": result.report}
    target.with_name(target.name + ".reason.json").write_text(json.dumps(reason, indent=2) + "\n")
    return target
