"""The right to be forgotten: the append-only request log, batch request files, and scrubbing Parquet outputs.

The log (`privacy.forget_log`) is one JSON object a line, {request_id, customer_id, requested_at, origin}, and
holds pseudonyms only (lines starting with `#` are comments): raw ids are pseudonymised by the caller before they reach `append_requests`. Ingest
leaves the logged customers out; `scrub` removes them from outputs already written; older versions kept by
DVC are `mapwise.privacy.history`'s business.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.atomic import replacing
from mapwise.errors import MapwiseError, one_line
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH

_PSEUDONYM = re.compile(rf"[0-9a-f]{{{PSEUDONYM_LENGTH}}}")
_PARQUET_MAGIC = b"PAR1"
_HISTORY = {".dvc", ".git"}  # folders whose files are versions, never rewritten (see privacy.history)


@dataclass(frozen=True)
class Request:
    """One forget request, as logged."""

    request_id: str  # uuid4 hex
    customer_id: str  # the pseudonym
    requested_at: str  # UTC, ISO 8601 to the second
    origin: str  # where it came from: "cli", "file:requests.csv", ...


def _request(line: str, path: Path, number: int) -> Request:
    try:
        data = json.loads(line)
        request = Request(**data)
    except (ValueError, TypeError) as err:
        raise MapwiseError(f"{path}: line {number}: not a forget request ({one_line(str(err))})") from None
    if not all(isinstance(v, str) for v in asdict(request).values()) or not _PSEUDONYM.fullmatch(request.customer_id):
        raise MapwiseError(f"{path}: line {number}: not a forget request (text fields, customer_id a pseudonym)")
    return request


def _parse(text: str, path: Path) -> list[Request]:
    return [_request(line, path, n) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]  # blank and comment lines are not requests


def read_log(path: Path) -> list[Request]:
    """The logged requests, oldest first; an absent file is an empty log."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise MapwiseError(f"{path}: cannot read the forget log ({one_line(str(err))})") from None
    return _parse(text, path)


def forgotten(path: Path) -> frozenset[str]:
    """The pseudonyms of every customer in the log."""
    return frozenset(r.customer_id for r in read_log(path))


def _read_fd(fd: int) -> str:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_requests(
    path: Path, pseudonyms: list[str], origin: str, *, now: datetime | None = None
) -> tuple[list[Request], list[str]]:
    """Log a request for each pseudonym not logged yet; returns (the new requests, the ones already forgotten).

    Appends only (O_APPEND, then fsync), under an exclusive lock so two writers never log one customer twice.
    """
    bad = next((p for p in pseudonyms if not _PSEUDONYM.fullmatch(p)), None)
    if bad is not None:
        raise MapwiseError(f"{path}: refusing to log a value that is not a pseudonym ({len(bad)} characters): "
                           "raw ids never go in the log")
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seen = {r.customer_id for r in _parse(_read_fd(fd), path)}
        new, skipped = [], []
        for p in pseudonyms:
            if p in seen:
                skipped.append(p)
            else:
                seen.add(p)
                new.append(Request(uuid.uuid4().hex, p, at, origin))
        _write_all(fd, "".join(json.dumps(asdict(r)) + "\n" for r in new).encode())
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return new, skipped


def _csv_ids(lines: list[str], path: Path) -> Iterator[str]:
    rows = csv.reader(lines)
    header = [h.strip() for h in next(rows, [])]
    if c.CUSTOMER_ID in header:
        col = header.index(c.CUSTOMER_ID)
    elif len(header) == 1:
        col = 0
    else:
        raise MapwiseError(f"{path}: no '{c.CUSTOMER_ID}' column (columns: {one_line(', '.join(header))})")
    for row in rows:
        if not any(v.strip() for v in row):
            continue
        if col >= len(row):
            raise MapwiseError(f"{path}: line {rows.line_num}: {len(row)} fields, no value for column {col + 1}")
        yield row[col].strip()


def read_request_file(path: Path) -> list[str]:
    """The raw customer ids of a batch request file: one a line, or a .csv with a `customer_id` (or single) column.

    Blank lines and blank ids are skipped. The ids are returned, never written anywhere; errors never echo them.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise MapwiseError(f"{path}: cannot read the request file ({one_line(str(err))})") from None
    lines = text.splitlines()
    try:
        ids = list(_csv_ids(lines, path)) if path.suffix.lower() == ".csv" else [s.strip() for s in lines]
    except csv.Error as err:
        raise MapwiseError(f"{path}: not a readable CSV ({one_line(str(err))})") from None
    ids = [i for i in ids if i]
    if not ids:
        raise MapwiseError(f"{path}: no customer ids in the request file")
    return ids


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == _PARQUET_MAGIC


def _parquet_files(paths: Iterable[Path]) -> Iterator[Path]:
    for root in paths:
        if root.is_file():
            found = [root]
        else:
            found = []
            for folder, subfolders, files in os.walk(root):
                subfolders[:] = sorted(d for d in subfolders if d not in _HISTORY)
                found += [Path(folder, f) for f in sorted(files)]
        yield from (p for p in found if p.is_file() and _is_parquet(p))


def _holds(schema: pl.Schema, pseudonyms: set[str]) -> pl.Expr | None:
    """True for a row that names one of these customers in any text column (customer_id, a target's row_id,
    ...): a pseudonym is a keyed hash, so matching it anywhere means the row is about that customer."""
    wanted = sorted(pseudonyms)
    hits = [pl.col(name).cast(pl.String).is_in(wanted).fill_null(False)
            for name, dtype in schema.items() if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)]
    return pl.any_horizontal(hits) if hits else None


def _matching_rows(path: Path, pseudonyms: set[str]) -> int:
    try:
        frame = pl.scan_parquet(path, hive_partitioning=False)
        holds = _holds(frame.collect_schema(), pseudonyms)
        return 0 if holds is None else frame.select(holds.sum()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise MapwiseError(f"{path}: not a readable Parquet file ({one_line(str(err))})") from None


def mentions(paths: list[Path], pseudonyms: set[str]) -> dict[str, int]:
    """{file: rows of these customers} for every Parquet file under `paths` that has any (a dry run of `scrub`)."""
    if not pseudonyms:
        return {}
    counts = {str(p): _matching_rows(p, pseudonyms) for p in _parquet_files(paths)}
    return {path: n for path, n in counts.items() if n}


def _rewrite_without(path: Path, pseudonyms: set[str]) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        frame = pl.scan_parquet(path, hive_partitioning=False)
        holds = _holds(frame.collect_schema(), pseudonyms)
        with replacing(path) as tmp:
            frame.filter(holds.not_()).sink_parquet(tmp)
            os.chmod(tmp, mode)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise MapwiseError(f"{path}: cannot rewrite without the forgotten customers ({one_line(str(err))})") from None


def scrub(paths: list[Path], pseudonyms: set[str]) -> dict[str, int]:
    """Remove these customers' rows from every Parquet file under `paths` (a row naming one in any text column).

    Each changed file is rewritten beside itself and renamed over it (schema, row order and permissions kept):
    its old inode is never written, so a hard link or symlink into DVC's cache keeps the old content there for
    `history.purge`. Files inside `.dvc` or `.git` folders are skipped. Returns {file: rows removed}.
    """
    found = mentions(paths, pseudonyms)
    for path in found:
        _rewrite_without(Path(path), pseudonyms)
    return found
