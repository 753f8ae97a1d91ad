"""A batch of new data: copied in from the drop folder, checked whole, then accepted or rejected whole."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mapwise.atomic import move, replacing, write_json
from mapwise.errors import MapwiseError
from mapwise.sources.incoming import open_location, source_of
from mapwise.sources.ingest import Limits, ingest_source, inside
from mapwise.sources.mapping.readers import over_limit
from mapwise.sources.mapping.spec import Mapping
from mapwise.params import OrchestrateParams


@dataclass(frozen=True)
class Batch:
    """A dropped file, copied to a local staging folder; the original is never touched."""

    origin: str
    source: str
    path: Path
    sha256: str


def stage(origin: str, staging_dir: Path, sources: list[str], incoming: str, source: str | None = None,
          max_bytes: int | None = None) -> Batch:
    """Copy the file at `origin` (path or URL) into `staging_dir` as `<sha256[:12]>-<name>`, as a stream.

    Its source is the name of the folder it was dropped in, unless given. A local file must lie in the
    `incoming` drop folder, links followed; one larger than `max_bytes` is refused before it is copied.
    """
    source = source or source_of(origin)
    if source not in sources:
        raise MapwiseError(f"{origin}: '{source}' is not a source ({', '.join(sources)}); "
                           f"drop files into <incoming>/<source>/")
    fs, path = open_location(origin)
    if "file" in fs.protocol and not inside(Path(path), [Path(open_location(incoming)[1])]):
        raise MapwiseError(f"{origin}: refused: it resolves to a file outside the drop folder {incoming} (a link?)")
    digest = hashlib.sha256()
    staged = staging_dir / f".{Path(path).name}.staging"
    try:
        size = fs.size(path)
        if max_bytes is not None and size > max_bytes:
            raise MapwiseError(f"{origin}: {size / 2**20:,.0f} MiB, {over_limit(max_bytes)}")
        with fs.open(path, "rb") as src, replacing(staged) as tmp, tmp.open("wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, FileNotFoundError) as err:
        raise MapwiseError(f"{origin}: cannot read ({err})") from None
    sha = digest.hexdigest()
    named = staged.with_name(f"{sha[:12]}-{Path(path).name}")
    staged.replace(named)
    return Batch(origin, source, named, sha)


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str
    report: dict


def check(batch: Batch, mapping: Mapping, key: bytes, limits: Limits, p: OrchestrateParams) -> Check:
    """Read and check the batch alone by ingest's own rules; it fails whole when ingest would refuse the file,
    when any record is damaged beyond `p.max_broken_lines`, when nothing is accepted, or when a table would
    quarantine more than `p.max_bad_share` of its rows for a reason not in `p.uncounted_reasons`."""
    label = f"{batch.source}/{batch.path.name}"
    try:
        _, _, report = ingest_source([(batch.path, label)], mapping, key, {}, limits)
    except MapwiseError as err:  # the caller names the file, by where it arrived
        return Check(False, str(err).removeprefix(f"{batch.path}: ").replace(str(batch.path), batch.origin), {})
    read = report["rows_read"]
    if read == 0:
        return Check(False, "no rows", report)
    if report["broken"] > p.max_broken_lines:
        return Check(False, f"damaged: {report['broken']} of {read} records cannot be parsed "
                            f"(orchestrate.max_broken_lines {p.max_broken_lines}): {_top(report['broken_reasons'])}", report)
    for table, counts in report["tables"].items():
        counted = {r: n for r, n in counts["reasons"].items() if not r.startswith(tuple(p.uncounted_reasons))}
        bad = sum(counted.values())
        if bad / read > p.max_bad_share:
            return Check(False, f"{bad} of {read} rows for {table} fail the contract "
                                f"({bad / read:.0%} > orchestrate.max_bad_share {p.max_bad_share:.0%}): {_top(counted)}", report)
    if not any(counts["accepted"] for counts in report["tables"].values()):
        first = next(iter(report["tables"].values()))
        return Check(False, f"none of {read} rows is accepted by any table: {_top(first['reasons'])}", report)
    return Check(True, f"{read} rows, fit to ingest", report)


def _top(reasons: dict[str, int]) -> str:
    return "; ".join(f"{r} ({n})" for r, n in list(reasons.items())[:3])


def _move(batch: Batch, folder: Path) -> Path:
    target = folder / batch.source / batch.path.name
    move(batch.path, target)
    return target


def accept(batch: Batch, batches_dir: Path) -> Path:
    """Move the staged batch into `<batches_dir>/<source>/`, where ingest reads it."""
    return _move(batch, batches_dir)


def reject(batch: Batch, quarantine_dir: Path, result: Check) -> Path:
    """Move the staged batch into `<quarantine_dir>/<source>/` with `<file>.reason.json` beside it."""
    target = _move(batch, quarantine_dir)
    reason = {"origin": batch.origin, "sha256": batch.sha256, "reason": result.reason, "report": result.report}
    write_json(target.with_name(target.name + ".reason.json"), reason)
    return target
