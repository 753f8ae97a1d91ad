"""PII scan: find raw ids (or other needles) and personal column names left in artifacts.

Files are told apart by their first bytes, not their names (DVC cache objects have none):
Parquet (string values, column names, key-value metadata), SQLite (every text cell, read-only),
gzip and zip (decompressed, at most MAX_DECOMPRESSED bytes a stream), anything else as raw bytes,
read in overlapping chunks. A needle matches as a whole token only: not inside a longer run of
ASCII letters and digits, unless it is a whole length-prefixed binary string (protobuf, pickle),
whose next byte may be anything. A personal column name matches as a Parquet column or a JSON key.
Candidates are found with Aho-Corasick (polars), so thousands of needles cost about as much as one.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import string
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from mapwise.errors import MapwiseError

MIN_NEEDLE = 4  # shorter needles would match almost anything
MAX_DECOMPRESSED = 1 << 31  # bytes read from one gzip stream or zip member; the rest is not scanned
_CHUNK = 16 << 20  # bytes of a file searched at once
_KEY_GAP = 64  # whitespace allowed between a JSON key and its colon
_ALNUM = frozenset(string.ascii_letters + string.digits)
_KEY = "json key"
_PARQUET, _SQLITE, _GZIP, _ZIP = b"PAR1", b"SQLite format 3\x00", b"\x1f\x8b", b"PK\x03\x04"

Patterns = dict[str, list[tuple[str, str]]]  # searched text -> [(kind, needle or column name)]


@dataclass(frozen=True, order=True)
class Finding:
    """A needle (or personal column name) found in `file`; `where` says in which part of it."""

    file: Path
    where: str
    needle: str


@dataclass(frozen=True)
class _Search:
    text: Patterns  # for decoded text (Parquet values and names, SQLite cells)
    raw: Patterns  # for bytes decoded as latin-1: one character a byte
    overlap: int  # characters kept between chunks so that no match (with its context) is cut


def _patterns(needles: list[str], pii_columns: list[str], form: Callable[[str], str]) -> Patterns:
    out: Patterns = defaultdict(list)
    for needle in needles:
        out[form(needle)].append(("", needle))
    for column in pii_columns:
        out[form(json.dumps(column))].append((_KEY, column))
    return dict(out)


def _length_prefixed(text: str, i: int, n: int) -> bool:
    """Whether the n characters at i are preceded by their length: one control byte, or four bytes little-endian."""
    return (n < 32 and i >= 1 and ord(text[i - 1]) == n) or (
        i >= 4 and text[i - 4:i] == n.to_bytes(4, "little").decode("latin-1"))


def _found(text: str, pattern: str, kind: str, at_start: bool, at_end: bool) -> bool:
    """Whether `pattern` occurs in `text` as a whole token (a JSON key: followed by a colon).

    `at_start`/`at_end`: the text begins/ends its stream; else a match without its context there is
    left to the neighbouring chunk, which holds it whole.
    """
    i = text.find(pattern)
    while i >= 0:
        j = i + len(pattern)
        if kind == _KEY:
            ok = text[j:j + _KEY_GAP].lstrip(" \t\r\n").startswith(":")
        else:
            left = at_start if i == 0 else text[i - 1] not in _ALNUM
            right = at_end if j == len(text) else text[j] not in _ALNUM
            token = (left or pattern[0] not in _ALNUM) and (right or pattern[-1] not in _ALNUM)
            ok = token or _length_prefixed(text, i, len(pattern))
        if ok:
            return True
        i = text.find(pattern, i + 1)
    return False


def _matches(
    texts: pl.Series, patterns: Patterns, at_start: bool = True, at_end: bool = True
) -> set[tuple[str, str]]:
    """The (kind, name) of every pattern found in any of `texts`."""
    texts = texts.drop_nulls()
    if not patterns or texts.is_empty():
        return set()
    hits = texts.str.extract_many(list(patterns), overlapping=True).list.unique()
    hit = hits.list.len() > 0
    found: set[tuple[str, str]] = set()
    for text, candidates in zip(texts.filter(hit), hits.filter(hit)):
        for pattern in candidates:
            found.update(m for m in patterns[pattern] if m not in found and _found(text, pattern, m[0], at_start, at_end))
    return found


def _findings(file: Path, where: str, matches: set[tuple[str, str]]) -> set[Finding]:
    return {Finding(file, f"{where}, {kind}" if kind else where, name) for kind, name in matches}


def _read(stream: BinaryIO, size: int) -> bytes:
    parts, got = [], 0
    while got < size and (part := stream.read(size - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _scan_stream(stream: BinaryIO, search: _Search, limit: int | None = None) -> set[tuple[str, str]]:
    """Matches in a byte stream, read in overlapping chunks (at most `limit` bytes)."""
    chunk = max(_CHUNK, 4 * search.overlap)
    found: set[tuple[str, str]] = set()
    carry, at_start, total = "", True, 0
    while True:
        want = chunk if limit is None else min(chunk, limit - total)
        block = _read(stream, want)
        total += len(block)
        at_end = len(block) < want or total == limit
        text = carry + block.decode("latin-1")
        found |= _matches(pl.Series([text]), search.raw, at_start, at_end)
        if at_end:
            return found
        carry, at_start = text[-search.overlap:], False


def _strings(expr: pl.Expr, dtype: pl.DataType) -> list[pl.Expr]:
    """Expressions yielding every string inside a column of `dtype` (lists, arrays, structs opened)."""
    if dtype == pl.String:
        return [expr]
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return [expr.cast(pl.String)]
    if isinstance(dtype, pl.List):
        return _strings(expr.list.explode(), dtype.inner)
    if isinstance(dtype, pl.Array):
        return _strings(expr.arr.explode(), dtype.inner)
    if isinstance(dtype, pl.Struct):
        return [e for field in dtype.fields for e in _strings(expr.struct.field(field.name), field.dtype)]
    return []


def _scan_parquet(file: Path, search: _Search, pii_columns: list[str]) -> set[Finding]:
    schema = pl.read_parquet_schema(file)
    metadata = pl.read_parquet_metadata(file)
    found = _findings(file, "column name", _matches(pl.Series(list(schema), dtype=pl.String), search.text))
    found |= {Finding(file, "column name", column) for column in pii_columns if column in schema}
    found |= _findings(file, "metadata", _matches(pl.Series([*metadata, *metadata.values()]), search.text))
    lazy = pl.scan_parquet(file)
    for name, dtype in schema.items():
        for expr in _strings(pl.col(name), dtype):
            values = lazy.select(expr.drop_nulls().unique()).collect().to_series()
            found |= _findings(file, f"column {name}", _matches(values, search.text))
    return found


def _scan_sqlite(file: Path, search: _Search) -> set[Finding]:
    found: set[Finding] = set()
    db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            quoted = table.replace('"', '""')
            rows = db.execute(f'SELECT * FROM "{quoted}"')
            while batch := rows.fetchmany(10_000):
                cells = [v for row in batch for v in row if isinstance(v, str)]
                blobs = [v.decode("latin-1") for row in batch for v in row if isinstance(v, bytes)]
                matches = _matches(pl.Series(cells, dtype=pl.String), search.text)
                matches |= _matches(pl.Series(blobs, dtype=pl.String), search.raw)
                found |= _findings(file, f"table {table}", matches)
    finally:
        db.close()
    return found


def _scan_zip(file: Path, search: _Search) -> set[Finding]:
    found: set[Finding] = set()
    with zipfile.ZipFile(file) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        found |= _findings(file, "zip member names", _matches(pl.Series([m.filename for m in members]), search.text))
        for member in members:
            with archive.open(member) as stream:
                found |= _findings(file, f"zip {member.filename}", _scan_stream(stream, search, MAX_DECOMPRESSED))
    return found


def _scan_bytes(file: Path, search: _Search) -> set[Finding]:
    with file.open("rb") as stream:
        return _findings(file, "bytes", _scan_stream(stream, search))


def _scan_file(file: Path, search: _Search, pii_columns: list[str]) -> set[Finding]:
    """Findings in one file, read by its kind; a file that fails to parse as its kind is scanned as bytes."""
    with file.open("rb") as stream:
        head = stream.read(len(_SQLITE))
    try:
        if head.startswith(_PARQUET):
            return _scan_parquet(file, search, pii_columns)
        if head.startswith(_SQLITE):
            return _scan_sqlite(file, search)
        if head.startswith(_GZIP):
            with gzip.open(file, "rb") as stream:
                return _findings(file, "gzip", _scan_stream(stream, search, MAX_DECOMPRESSED))
        if head.startswith(_ZIP):
            return _scan_zip(file, search)
    except (pl.exceptions.PolarsError, sqlite3.Error, gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile,
            RuntimeError, NotImplementedError):  # corrupt, encrypted or truncated
        pass
    return _scan_bytes(file, search)


def _files(paths: list[Path]) -> Iterator[Path]:
    """Every regular file under `paths`, folders walked recursively (links to folders not followed)."""
    for path in map(Path, paths):
        if path.is_dir():
            for root, folders, names in os.walk(path):
                folders.sort()
                yield from (f for f in (Path(root) / n for n in sorted(names)) if f.is_file())
        elif path.is_file():
            yield path
        else:
            raise MapwiseError(f"{path}: no such file or folder to scan")


def scan(paths: list[Path], needles: list[str], *, pii_columns: list[str] = ()) -> list[Finding]:
    """Every place under `paths` holding a needle as a whole token, or a `pii_columns` name as a column or JSON key.

    Needles shorter than MIN_NEEDLE characters are refused (ValueError); they are never echoed.
    """
    needles, pii_columns = list(dict.fromkeys(needles)), list(dict.fromkeys(pii_columns))
    short = sum(len(n) < MIN_NEEDLE for n in needles)
    if short:
        raise ValueError(f"{short} needle(s) shorter than {MIN_NEEDLE} characters would match almost anything")
    raw = _patterns(needles, pii_columns, lambda s: s.encode().decode("latin-1"))
    search = _Search(_patterns(needles, pii_columns, str), raw, max(map(len, raw), default=0) + _KEY_GAP + 2)
    found: set[Finding] = set()
    for file in _files(paths):
        found |= _scan_file(file, search, pii_columns)
    return sorted(found)
