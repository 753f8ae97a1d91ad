"""Read one raw file into columns (text, or parquet's own types) with the line each row came from, never losing a row.

Every data record of the file ends up either in `frame` or in `rejects` (with the reason it could
not be parsed: wrong number of fields, a quote never closed, invalid bytes for the encoding,
malformed JSON). A damaged record costs only itself: reading resumes at the next line. Blank
lines are not records. A file that cannot be read at all (empty, corrupt compression, larger
than allowed once decompressed, no header) raises MapwiseError.

Clean delimited files take a fast path (polars' parser, checked for row structure afterwards);
anything irregular takes an exact, slower path through Python's csv module.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gc
import gzip
import hashlib
import io
import json
import lzma
import re
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from mapwise import columns as c
from mapwise.errors import MapwiseError, engine_problem, preview
from mapwise.sources.mapping.expressions import LINE_COLUMN
from mapwise.sources.mapping.spec import ReadSpec
from mapwise.strict_json import strict_json

_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_SUFFIX = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz"}
_CHUNK = 1 << 20
_REJECT_SCHEMA = {c.Q_LINE: pl.Int64, c.Q_COLUMN: pl.String, c.Q_REASON: pl.String, c.Q_VALUE: pl.String}
_PREVIEW = 80  # characters of an offending value kept in the quarantine
_BOM = b"\xef\xbb\xbf"
_FIRST_BLANK = re.compile(rb"[ \t]*\r?(?:\n|\Z)")
_BLANK = re.compile(rb"\n[ \t]*\r?(?:\n|\Z)")
_TEXT = re.compile(rb"[^ \t\r\n\x0b\x0c]")  # a byte that bytes.strip() keeps
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\n|\r|\Z)")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes invalid in the encoding, kept by surrogateescape
MAX_RECORD_LINES = 1000  # a quoted field may span lines; one still open after this many was never closed
DUPLICATE = "_duplicated_"  # polars' suffix for a repeated header name: `qty`, `qty_duplicated_0`

# Reasons of records whose structure cannot be parsed at all: the file is damaged there.
UNTERMINATED = "unterminated quoted field: a stray quote, or a file cut short"
INVALID_BYTES = "invalid bytes for the encoding"
NOT_AN_OBJECT = "a JSON lines record must be an object"
INVALID_JSON = "invalid JSON"


def field_count(expected: int, found: int) -> str:
    return f"expected {expected} fields, found {found}"


@dataclass(frozen=True)
class RawTable:
    """The parsed rows of one file (text columns plus LINE_COLUMN) and the records that failed parsing."""

    frame: pl.DataFrame
    rejects: pl.DataFrame

    @property
    def rows_read(self) -> int:
        return self.frame.height + self.rejects.height


def _printable(text: str) -> str:
    """Text with bytes that were invalid in the encoding shown escaped (`\\xe9`)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def preview_value(value: str) -> str:
    """A short, printable excerpt of an offending value (undecodable bytes shown escaped)."""
    return preview(_printable(value), _PREVIEW)


def preview_expr(value: pl.Expr) -> pl.Expr:
    """`preview_value` for a column of text."""
    length = value.str.len_chars()
    short = pl.concat_str([value.str.slice(0, _PREVIEW), pl.lit("... ("), length.cast(pl.String), pl.lit(" chars)")])
    return pl.when(length > _PREVIEW).then(short).otherwise(value)


def _rejects(rows: list[tuple[int, str | None, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_REJECT_SCHEMA, orient="row")


def over_limit(max_bytes: int) -> str:
    """How refusals of content past `ingest.max_file_mb` name the limit."""
    return f"over the limit of {max_bytes / 2**20:,.0f} MiB (ingest.max_file_mb)"


def compression_of(path: Path, compression: str) -> str:
    """The compression a mapping declares, or the file name implies for 'auto'."""
    return _SUFFIX.get(path.suffix.lower(), "none") if compression == "auto" else compression


def digest_of(path: Path, max_bytes: int) -> str:
    """sha256 of the file as stored, read as a stream; a file over `max_bytes` is refused unread."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise MapwiseError(f"{path}: {size / 2**20:,.0f} MiB, {over_limit(max_bytes)}")
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while block := stream.read(_CHUNK * 8):
                digest.update(block)
    except OSError as err:
        raise MapwiseError(f"{path}: cannot read ({err.strerror})") from None
    return digest.hexdigest()


def _blocks(path: Path, compression: str, max_bytes: int, size: int) -> Iterator[bytes]:
    """The file's content, decompressed as a stream, in blocks of at most `size` bytes; refused past `max_bytes`
    (a decompression bomb costs at most one block more than the bound)."""
    kind = compression_of(path, compression)
    total = 0
    try:
        with (path.open("rb") if kind == "none" else _OPENERS[kind](path)) as stream:
            while block := stream.read(size):
                total += len(block)
                if total > max_bytes:
                    raise MapwiseError(f"{path}: {over_limit(max_bytes)} once decompressed ({kind}); "
                                       f"raise the limit or split the file")
                yield block
    except (EOFError, lzma.LZMAError, zlib.error, ValueError) as err:
        raise MapwiseError(f"{path}: cannot decompress as {kind} (truncated or corrupt: {preview(str(err))})") from None
    except OSError as err:
        if kind == "none":
            raise MapwiseError(f"{path}: cannot read ({err.strerror})") from None
        raise MapwiseError(f"{path}: cannot decompress as {kind} (truncated or corrupt: {preview(str(err))})") from None


def _line_count(data: bytes, start: int, end: int) -> int:
    """Lines in data[start:end] as the exact reader counts them (\r\n, \n and a lone \r each end one), for whole lines."""
    lines = data.count(b"\n", start, end)
    if data.find(b"\r", start, end) < 0:
        return lines
    return lines + data.count(b"\r", start, end) - data.count(b"\r\n", start, end)


def _splittable(spec: ReadSpec) -> bool:
    """Formats read line by line in an encoding where b"\n" is always a line break (chunks split there)."""
    name = codecs.lookup(spec.encoding).name
    ascii_based = name in ("utf-8", "ascii", "latin-1") or name.startswith(("iso8859", "cp125"))
    return spec.format in ("csv", "tsv", "whitespace") and ascii_based


@dataclass(frozen=True)
class Chunk:
    """Part of a file's content: `data` reads as a file of its own (the file's header lines, then whole
    records); its line n is line n + `offset` of the file."""

    data: bytes
    offset: int


def _clean_cut(data: bytes, begin: int, end: int, spec: ReadSpec) -> int:
    """Where (a byte offset just after a line break, in (begin, end]) a chunk that starts at `begin` can end
    with no record running on past it, or 0 where it cannot yet. A quoted record spans at most
    MAX_RECORD_LINES lines, so it is enough that each of the last MAX_RECORD_LINES lines before the cut
    holds no quote or is a whole record on its own."""
    cut = data.rfind(b"\n", begin, end) + 1
    if cut <= begin:
        return 0
    if spec.format == "whitespace" or not spec.quote:
        return cut
    quote = spec.quote.encode()
    while cut > begin:
        start = cut
        for _ in range(MAX_RECORD_LINES):
            start = max(data.rfind(b"\n", begin, max(start - 1, begin)) + 1, begin)
            if start == begin:
                break  # the chunk's first line: records start afresh there
        if data.find(quote, start, cut) < 0:
            return cut
        lines = _LINES.findall(data[start:cut].decode("utf-8", "surrogateescape"))
        whole = [spec.quote not in line or _parse(line, spec) is not None for line in lines if line]
        if all(whole):
            return cut
        broken = len(whole) - 1 - whole[::-1].index(False)  # the last line that is not a whole record
        cut = start + len("".join(lines[:broken]).encode("utf-8", "surrogateescape"))
    return 0


def chunks(path: Path, spec: ReadSpec, max_bytes: int, chunk_bytes: int) -> Iterator[Chunk]:
    """A file's content decompressed as a stream, as chunks of about `chunk_bytes` that read, one by one,
    exactly as the whole file reads (same rows, rejects and line numbers). Formats and files that cannot be
    split safely (JSON lines, parquet, other encodings, header lines holding a quote) come as one chunk."""
    blocks = _blocks(path, spec.compression, max_bytes, max(1, min(chunk_bytes, _CHUNK * 4)))
    if not _splittable(spec):
        yield Chunk(b"".join(blocks), 0)
        return
    buffer, header, offset, first = b"", None, 0, True
    pending: list[bytes] = []  # blocks read since `buffer` was last joined
    waiting, retry = 0, 0
    for block in blocks:
        pending.append(block)
        waiting += len(block)
        if header is not None and len(buffer) + waiting < max(chunk_bytes, retry) + (len(header) if first else 0):
            continue
        buffer, pending, waiting = b"".join([buffer, *pending]), [], 0
        if header is None:
            header = _header(buffer, spec)
            if header is None:
                if buffer.count(b"\n") <= _header_lines(spec):
                    continue  # the header lines are not all in yet
                yield Chunk(buffer + b"".join(blocks), 0)  # header lines the chunks could not repeat as they are
                return
        while len(buffer) - (head := len(header) if first else 0) >= max(chunk_bytes, retry):
            cut = (_clean_cut(buffer, head, head + chunk_bytes, spec)
                   or _clean_cut(buffer, head, len(buffer), spec))
            if cut == 0:
                retry = 2 * (len(buffer) - head)  # no safe place yet: the chunk grows (try again at twice the size)
                break
            retry = 0
            if first or _TEXT.search(buffer, head, cut):  # a chunk of blank lines holds no record
                yield Chunk(b"".join([b"" if first else header, memoryview(buffer)[:cut]]), offset)
            offset, first = offset + _line_count(buffer, head, cut), False
            buffer = buffer[cut:]
    buffer += b"".join(pending)
    if first:
        yield Chunk(buffer, 0)
    elif buffer.strip():
        yield Chunk((header or b"") + buffer, offset)


def _header(data: bytes, spec: ReadSpec) -> bytes | None:
    """The file's header lines (skipped lines, then the names), when every chunk can repeat them as they are:
    all in `data`, not blank, without quotes or lone carriage returns."""
    lines = _header_lines(spec)
    end = 0
    for _ in range(lines):
        end = data.find(b"\n", end) + 1
        if end == 0:
            return None
    head = data[:end]
    if b"\r" in head.replace(b"\r\n", b"") or (spec.quote and spec.quote.encode() in head):
        return None
    if any(not line.strip(b" \t\r") for line in head.split(b"\n")[:-1]):
        return None
    return head


def shifted(raw: RawTable, offset: int) -> RawTable:
    """A chunk's rows with the file's line numbers."""
    if not offset:
        return raw
    return RawTable(raw.frame.with_columns(pl.col(LINE_COLUMN) + offset),
                    raw.rejects.with_columns(pl.col(c.Q_LINE) + offset))


def read_raw(path: Path, data: bytes, spec: ReadSpec, max_bytes: int) -> RawTable:
    """Parse decompressed bytes as the mapping's read section says (parquet: at most `max_bytes` once unpacked)."""
    if not data.strip():
        what = "empty (0 bytes)" if not data else "blank (only whitespace)"
        raise MapwiseError(f"{path}: the file is {what}: nothing to read, not even a header; "
                           f"a source's file must hold at least its header line")
    if spec.format == "parquet":
        return _read_parquet(path, data, max_bytes)
    if spec.encoding != "utf-8":
        data = data.decode(spec.encoding, "surrogateescape").encode("utf-8", "surrogateescape")
    data = data.removeprefix(_BOM)
    if spec.format == "jsonl":
        return _read_jsonl(data)
    if spec.format != "whitespace":
        fast = _read_fast(data, spec)
        if fast is not None:
            return fast
    return _read_exact(path, data, spec)


def _header_lines(spec: ReadSpec) -> int:
    return spec.skip_rows + (1 if spec.header else 0)


def _has_blank_line(data: bytes) -> bool:
    """A line that is empty or only spaces (a final line break does not make one)."""
    body = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    return bool(_FIRST_BLANK.match(body) or _BLANK.search(body))


def _read_fast(data: bytes, spec: ReadSpec) -> RawTable | None:
    """polars' parser, or None when the file needs the exact path (ragged, blank lines, bad bytes, multi-line)."""
    sep = spec.separator.encode()
    quote = spec.quote.encode() if spec.quote else None
    header = _header_lines(spec)
    counts: dict[str, int] = {}

    def count() -> None:  # runs on a thread while polars parses (polars releases the GIL); one scan each
        head_end = 0
        for _ in range(header):
            head_end = data.find(b"\n", head_end) + 1
        counts["lone_cr"] = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")
        counts["quoted"] = quote is not None and quote in data
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
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError):
        return None
    finally:
        counter.join()
    if counts["lone_cr"]:
        return None  # lone carriage returns end lines for Python's csv, not for polars
    if frame.height + header != counts["lines"]:  # multi-line records or skipped blank lines: line numbers would drift
        return None
    expected = frame.width - 1
    if expected == 0 and _has_blank_line(data):
        return None  # a blank line is not a record; with one column nothing else would tell it from an empty value
    if not counts["quoted"]:
        # polars pads a short row (a blank line too) silently: every row must have exactly `expected` separators
        return _fast_table(frame, header) if counts["separators"] == frame.height * expected else None
    regular = _quoted_rows_regular(data, spec, header, expected, counts["separators"], counts["lines"] - header)
    return _fast_table(frame, header) if regular else None


_FEW_QUOTED = 50_000  # quote characters up to which quoted lines are found one by one


def _quoted_rows_regular(data: bytes, spec: ReadSpec, header: int, expected: int, separators: int, lines: int) -> bool:
    """Every data line has `expected` separators outside quotes (checked exactly where quoted).

    `separators` and `lines` count the data lines' separators and lines. polars refuses a line with too
    many fields, so beside the lines holding a quote (found one by one while few) a total suffices.
    """
    quote, sep = spec.quote.encode(), spec.separator.encode()
    head_end = 0
    for _ in range(header):
        head_end = data.find(b"\n", head_end) + 1
    if data.count(quote, head_end) > _FEW_QUOTED:
        return _lines_regular(data, spec, header, expected)
    quoted: list[bytes] = []
    at = data.find(quote, head_end)
    while at >= 0:
        start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
        end = len(data) if end < 0 else end + 1
        quoted.append(data[start:end])
        at = data.find(quote, end)
    inside = sum(line.count(sep) for line in quoted)
    if separators - inside != expected * (lines - len(quoted)):
        return False
    odd = [line.decode("utf-8", "surrogateescape").rstrip("\r\n") for line in quoted if line.count(sep) != expected]
    return all(_quoted_line_regular(text, spec, expected) for text in odd)


def _quoted_line_regular(text: str | None, spec: ReadSpec, expected: int) -> bool:
    if text is None or spec.quote not in text:
        return False
    fields = next(csv.reader([text], delimiter=spec.separator, quotechar=spec.quote), [])
    return len(fields) == expected + 1 and not text.count(spec.quote) % 2


def _lines_regular(data: bytes, spec: ReadSpec, header: int, expected: int) -> bool:
    """`_quoted_rows_regular` for files quoted throughout: every line read by polars and counted."""
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
    odd = lines.filter((counts != expected).fill_null(True))
    return all(_quoted_line_regular(text, spec, expected) for text in odd.to_list())


def _fast_table(frame: pl.DataFrame, header: int) -> RawTable:
    line = pl.int_range(header + 1, header + 1 + frame.height, dtype=pl.Int64, eager=False)
    return RawTable(frame.with_columns(line.alias(LINE_COLUMN)), _rejects([]))


def _unique_names(names: list[str]) -> list[str]:
    """Header names with repeats renamed as polars does (`qty`, `qty_duplicated_0`)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            out.append(f"{name}{DUPLICATE}{seen[name]}")
            seen[name] += 1
        else:
            out.append(name)
            seen[name] = 0
    return out


def _read_exact(path: Path, data: bytes, spec: ReadSpec) -> RawTable:
    """Record by record, with the exact line each starts on; irregular records become rejects."""
    csv.field_size_limit(sys.maxsize)
    text = data.decode("utf-8", "surrogateescape")
    lines = _LINES.findall(text)
    if lines and lines[-1] == "":
        lines.pop()  # the empty match at the very end
    names, start = spec.names, spec.skip_rows
    if spec.header:
        first = next(_records(lines, spec, start, None), None)
        if first is None or first[1] is None:
            raise MapwiseError(f"{path}: no header line" if first is None else f"{path}: the header line is malformed")
        names, start = _unique_names([_printable(name) for name in first[1]]), first[2]
    assert names is not None
    width = len(names)
    undecodable = _UNDECODABLE.search(text) is not None
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    rejects: list[tuple[int, str | None, str, str | None]] = []
    gc.disable()  # hundreds of thousands of small lists: the cyclic collector would rescan them all, again and again
    try:
        for line, fields, _ in _records(lines, spec, start, width):
            if fields is None:
                rejects.append((line, None, UNTERMINATED, None))
            elif len(fields) != width:
                rejects.append((line, None, field_count(width, len(fields)), None))  # never the line: it may hold ids
            elif undecodable and (bad := next((i for i, f in enumerate(fields) if _UNDECODABLE.search(f)), None)) is not None:
                rejects.append((line, preview(names[bad]), INVALID_BYTES, preview_value(fields[bad])))
            else:
                rows.append(fields)
                line_numbers.append(line)
        columns = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    finally:
        gc.enable()
    del rows
    nulls = spec.null_values
    frame = pl.DataFrame(columns, schema={name: pl.String for name in names}).with_columns(
        *(pl.when(pl.col(name).is_in(nulls)).then(None).otherwise(pl.col(name)).alias(name) for name in names),
        pl.Series(LINE_COLUMN, line_numbers, dtype=pl.Int64),
    )
    return RawTable(frame, _rejects(rejects))


def _blank(line: str) -> bool:
    return not line.strip(" \t\r\n")


def _records(lines: list[str], spec: ReadSpec, i: int, width: int | None) -> Iterator[tuple[int, list[str] | None, int]]:
    """(line number, fields, index of the next line) per record from line index `i` on; blank lines are skipped.

    Fields are None for a quoted field never closed: that costs its first line only, and reading
    resumes on the next one. A record that runs over several lines but then has the wrong number
    of fields is taken for a stray quote in the same way.
    """
    sep, quote, n = spec.separator, spec.quote, len(lines)
    while i < n:
        line = lines[i]
        if _blank(line):
            i += 1
        elif spec.format == "whitespace":
            i += 1
            yield i, line.split(), i
        elif not quote or quote not in line:
            i += 1
            yield i, line.rstrip("\r\n").split(sep), i
        elif (fields := _parse(line, spec)) is not None:
            i += 1
            yield i, fields, i
        else:
            closed = _closing(lines, i, spec, width)
            if closed is None:
                i += 1
                yield i, None, i
            else:
                end, fields = closed
                yield i + 1, fields, end
                i = end


def _closing(lines: list[str], i: int, spec: ReadSpec, width: int | None) -> tuple[int, list[str]] | None:
    """Where the record whose quoted field opens on line `i` ends (exclusive), and its fields, if it
    closes into one record of `width` fields within MAX_RECORD_LINES lines."""
    balance, end = lines[i].count(spec.quote), i + 1
    while end < len(lines) and end - i < MAX_RECORD_LINES:
        balance += lines[end].count(spec.quote)
        end += 1
        if balance % 2 == 0 and (fields := _parse("".join(lines[i:end]), spec, strict=True)) is not None:
            return (end, fields) if width is None or len(fields) == width else None
    return None


def _parse(text: str, spec: ReadSpec, *, strict: bool = False) -> list[str] | None:
    """The fields of `text` when it is one whole record; None while a quoted field is still open at its end.

    Lenient by default (`"a" b` reads as `a b`); `strict` refuses such a record (None), which keeps a
    stray quote from joining lines into one record by accident.
    """
    options = {"delimiter": spec.separator, "quotechar": spec.quote or None,
               "quoting": csv.QUOTE_MINIMAL if spec.quote else csv.QUOTE_NONE}
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True, **options))
    except csv.Error as err:
        if strict or "unexpected end of data" in str(err):
            return None
        records = list(csv.reader(io.StringIO(text, newline=""), **options))
    return records[0] if len(records) == 1 else None


def _read_jsonl(data: bytes) -> RawTable:
    records: list[dict[str, str | None]] = []
    line_numbers: list[int] = []
    rejects: list[tuple[int, str | None, str, str | None]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if _blank(line.decode("utf-8", "surrogateescape")):
            continue
        try:
            record = strict_json(line)  # as the service reads a body: a key twice, NaN or bad UTF-8 is refused
        except json.JSONDecodeError as err:
            rejects.append((number, None, f"{INVALID_JSON}: {err.msg}", None))
            continue
        if not isinstance(record, dict):
            rejects.append((number, None, NOT_AN_OBJECT, None))
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


def _read_parquet(path: Path, data: bytes, max_bytes: int) -> RawTable:
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if unpacked > max_bytes:
            raise MapwiseError(f"{path}: {unpacked / 2**20:,.0f} MiB once unpacked, {over_limit(max_bytes)}")
        frame = pl.read_parquet(data)
    except MapwiseError:
        raise
    except Exception as err:  # pyarrow and polars raise several kinds for a corrupt file
        raise MapwiseError(f"{path}: cannot read as parquet ({engine_problem(err, 80)})") from None
    line = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE_COLUMN)
    return RawTable(frame.with_columns(line), _rejects([]))
