"""Read one raw file into columns (text, or parquet's own types) with the line each row came from, never losing a row.

Every data row of the file ends up either in `frame` or in `rejects` (with the reason it could
not be parsed: wrong number of fields, invalid bytes for the encoding, malformed JSON). A file
that cannot be read at all (corrupt compression, no header) raises MapwiseError.

Clean delimited files take a fast path (polars' parser, checked for row structure afterwards);
anything irregular takes an exact, slower path through Python's csv module.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.mapping.expressions import LINE_COLUMN
from mapwise.mapping.spec import ReadSpec

_DECOMPRESS = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}
_SUFFIX = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz"}
_REJECT_SCHEMA = {c.Q_LINE: pl.Int64, c.Q_COLUMN: pl.String, c.Q_REASON: pl.String, c.Q_VALUE: pl.String}
_PREVIEW = 80  # characters of an offending value kept in the quarantine


@dataclass(frozen=True)
class RawTable:
    """The parsed rows of one file (text columns plus LINE_COLUMN) and the rows that failed parsing."""

    frame: pl.DataFrame
    rejects: pl.DataFrame

    @property
    def rows_read(self) -> int:
        return self.frame.height + self.rejects.height


def preview(value: str) -> str:
    """A short, printable excerpt of an offending value."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= _PREVIEW else f"{text[:_PREVIEW]}... ({len(text)} chars)"


def preview_expr(value: pl.Expr) -> pl.Expr:
    """`preview` for a column of text."""
    length = value.str.len_chars()
    short = pl.concat_str([value.str.slice(0, _PREVIEW), pl.lit("... ("), length.cast(pl.String), pl.lit(" chars)")])
    return pl.when(length > _PREVIEW).then(short).otherwise(value)


def _rejects(rows: list[tuple[int, str | None, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_REJECT_SCHEMA, orient="row")


def decompress(path: Path, data: bytes, compression: str) -> bytes:
    """The file's bytes, decompressed as the mapping (or the file name, for 'auto') says."""
    kind = _SUFFIX.get(path.suffix.lower(), "none") if compression == "auto" else compression
    if kind == "none":
        return data
    try:
        return _DECOMPRESS[kind](data)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as err:
        raise MapwiseError(f"{path}: cannot decompress as {kind} (truncated or corrupt: {err})") from None


def read_raw(path: Path, data: bytes, spec: ReadSpec) -> RawTable:
    """Parse decompressed bytes as the mapping's read section says."""
    if spec.format == "parquet":
        return _read_parquet(path, data)
    if spec.encoding != "utf-8":
        data = data.decode(spec.encoding, "surrogateescape").encode("utf-8", "surrogateescape")
    if spec.format == "jsonl":
        return _read_jsonl(data)
    if not data.strip():
        return RawTable(pl.DataFrame({LINE_COLUMN: []}, schema={LINE_COLUMN: pl.Int64}), _rejects([]))
    if spec.format != "whitespace":
        fast = _read_fast(data, spec)
        if fast is not None:
            return fast
    return _read_exact(path, data, spec)


def _header_lines(spec: ReadSpec) -> int:
    return spec.skip_rows + (1 if spec.header else 0)


def _read_fast(data: bytes, spec: ReadSpec) -> RawTable | None:
    """polars' parser, or None when the file needs the exact path (ragged, bad bytes, multi-line)."""
    sep = spec.separator.encode()
    header = _header_lines(spec)
    counts: dict[str, int] = {}

    def count() -> None:  # runs on a thread while polars parses (polars releases the GIL)
        head_end = 0
        for _ in range(header):
            head_end = data.find(b"\n", head_end) + 1
        counts["lines"] = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        counts["separators"] = data.count(sep) - data.count(sep, 0, head_end)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        frame = pl.read_csv(
            data,
            has_header=spec.header,
            new_columns=None if spec.header else spec.names,
            separator=spec.separator,
            quote_char=spec.quote,
            skip_rows=spec.skip_rows,
            infer_schema=False,
            null_values=spec.null_values,
            raise_if_empty=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
        return None
    finally:
        counter.join()
    if frame.height + header != counts["lines"]:  # blank or multi-line records: line numbers would drift
        return None
    expected = frame.width - 1
    if not spec.quote or spec.quote.encode() not in data:
        # polars pads a short row silently: every row must have exactly `expected` separators
        return _fast_table(frame, header) if counts["separators"] == frame.height * expected else None
    return _fast_table(frame, header) if _quoted_rows_regular(data, spec, header, expected) else None


def _quoted_rows_regular(data: bytes, spec: ReadSpec, header: int, expected: int) -> bool:
    """Every data line has `expected` separators outside quotes (checked exactly where quoted)."""
    if b"\x1f" in data:
        return False
    lines = pl.read_csv(
        data,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        skip_rows=header,
        infer_schema=False,
        new_columns=["l"],
        raise_if_empty=False,
    )["l"]
    counts = lines.str.count_matches(spec.separator, literal=True)
    odd = lines.filter(counts != expected)
    for text in odd.to_list():
        if text is None or spec.quote not in text:
            return False
        fields = next(csv.reader([text], delimiter=spec.separator, quotechar=spec.quote), [])
        if len(fields) != expected + 1:
            return False
    return True


def _fast_table(frame: pl.DataFrame, header: int) -> RawTable:
    line = pl.int_range(header + 1, header + 1 + frame.height, dtype=pl.Int64, eager=False)
    return RawTable(frame.with_columns(line.alias(LINE_COLUMN)), _rejects([]))


def _read_exact(path: Path, data: bytes, spec: ReadSpec) -> RawTable:
    """Record by record, with the exact line each starts on; irregular records become rejects."""
    csv.field_size_limit(sys.maxsize)
    text = data.decode("utf-8", "surrogateescape")
    stream = io.StringIO(text, newline="")
    for _ in range(spec.skip_rows):
        stream.readline()
    if spec.format == "whitespace":
        reader = _whitespace_records(stream, spec.skip_rows)
    else:
        reader = _csv_records(stream, spec, spec.skip_rows)
    names = spec.names
    if spec.header:
        first = next(reader, None)
        if first is None:
            raise MapwiseError(f"{path}: no header line")
        names = first[1]
    assert names is not None
    width = len(names)
    rows: list[list[str | None]] = []
    line_numbers: list[int] = []
    rejects: list[tuple[int, str | None, str, str | None]] = []
    nulls = set(spec.null_values)
    for line, fields in reader:
        if fields is None:
            rejects.append((line, None, "unterminated quoted field (the file may be truncated)", None))
            continue
        if not fields:
            continue  # a blank line is not a record
        if len(fields) != width:
            reason = f"expected {width} fields, found {len(fields)}"
            rejects.append((line, None, reason, preview(spec.separator.join(fields))))
            continue
        bad = next((i for i, f in enumerate(fields) if not f.isascii() and _has_bad_bytes(f)), None)
        if bad is not None:
            reason = "invalid bytes for the encoding"
            rejects.append((line, names[bad], reason, preview(fields[bad])))
            continue
        rows.append([None if f in nulls else f for f in fields])
        line_numbers.append(line)
    frame = pl.DataFrame(
        {name: [r[i] for r in rows] for i, name in enumerate(names)},
        schema={name: pl.String for name in names},
    ).with_columns(pl.Series(LINE_COLUMN, line_numbers, dtype=pl.Int64))
    return RawTable(frame, _rejects(rejects))


def _has_bad_bytes(field: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in field)


def _csv_records(stream: io.StringIO, spec: ReadSpec, offset: int):
    """(first line number, fields) per record; fields None for an unterminated quote at the end."""
    reader = csv.reader(stream, delimiter=spec.separator, quotechar=spec.quote or None, strict=True,
                        quoting=csv.QUOTE_MINIMAL if spec.quote else csv.QUOTE_NONE)
    start = offset + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield start, None
            return
        yield start, fields
        start = offset + reader.line_num + 1


def _whitespace_records(stream: io.StringIO, offset: int):
    for number, line in enumerate(stream, start=offset + 1):
        yield number, line.split()


def _read_jsonl(data: bytes) -> RawTable:
    records: list[dict[str, str | None]] = []
    line_numbers: list[int] = []
    rejects: list[tuple[int, str | None, str, str | None]] = []
    for number, line in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            rejects.append((number, None, f"invalid JSON: {err.msg}", preview(line)))
            continue
        if not isinstance(record, dict):
            rejects.append((number, None, "a JSON lines record must be an object", preview(line)))
            continue
        records.append({k: _json_text(v) for k, v in record.items()})
        line_numbers.append(number)
    names = list(dict.fromkeys(k for r in records for k in r))
    frame = pl.DataFrame(
        {n: [r.get(n) for r in records] for n in names}, schema={n: pl.String for n in names}
    ).with_columns(pl.Series(LINE_COLUMN, line_numbers, dtype=pl.Int64))
    return RawTable(frame, _rejects(rejects))


def _json_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _read_parquet(path: Path, data: bytes) -> RawTable:
    try:
        frame = pl.read_parquet(data)
    except Exception as err:  # polars raises several kinds for a corrupt file
        raise MapwiseError(f"{path}: cannot read as parquet ({str(err).splitlines()[0]})") from None
    line = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE_COLUMN)
    return RawTable(frame.with_columns(line), _rejects([]))
