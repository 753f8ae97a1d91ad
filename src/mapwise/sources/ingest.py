"""Ingest: every source's files, through its mapping, into validated canonical tables.

For every source and table, rows read = rows accepted + rows quarantined + rows forgotten (rows of
customers who asked to be forgotten: left out, counted, never written). A file whose content was
already read (same sha256) is skipped and reported, not counted twice.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandera.errors as pa_errors
import polars as pl

from mapwise import columns as c
from mapwise.sources.cluster import in_flight
from mapwise.sources.contracts import CONTRACTS, NOT_AFTER, NOT_BEFORE, QUARANTINE_SCHEMA, Contract, TraitSpec, traits_contract
from mapwise.errors import MapwiseError
from mapwise.sources.mapping.apply import QUARANTINE_COLUMNS, REDACTED, map_file
from mapwise.sources.mapping.expressions import FILE_COLUMN, LINE_COLUMN
from mapwise.sources.mapping.readers import RawTable, chunks, digest_of, preview_expr, read_raw, shifted
from mapwise.sources.mapping.spec import Mapping
from mapwise.params import IngestParams
from mapwise.privacy.pseudonym import Pseudonymiser
from mapwise.progress import steps


DUPLICATE_ROW = "duplicate row"
# How canonical and quarantine tables are written: zstd at its fastest level (most of the time goes to
# encoding, not compressing), row groups of 1M rows (fewer dictionaries: ~1/3 smaller files than 256k rows).
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "row_group_size": 1 << 20}
FUTURE = "later than the time of ingestion + ingest.future_tolerance_days"
PAST = "earlier than ingest.min_timestamp"


@dataclass(frozen=True)
class Limits:
    """What ingest refuses: files over `max_bytes` once decompressed, links out of the folders read
    (except into `trusted` ones), and timestamps outside [earliest, latest]; and how much of a file it
    reads at once (`chunk_bytes` of decompressed text: a bound on memory that changes no result)."""

    max_bytes: int
    earliest: datetime
    latest: datetime
    trusted: tuple[Path, ...] = ()
    chunk_bytes: int = 64 * 2**20

    @classmethod
    def of(cls, p: IngestParams | None = None, now: datetime | None = None) -> Limits:
        """The limits params set (their defaults without params), as of `now` (default: the present)."""
        p = p or IngestParams.model_construct()  # the defaults; no raw_dir or sources needed for these
        latest = (now or datetime.now(UTC)) + timedelta(days=p.future_tolerance_days)
        return cls(int(p.max_file_mb * 2**20), p.min_timestamp, latest, tuple(p.trusted_dirs),
                   max(1, int(p.chunk_mb * 2**20)))


@dataclass
class IngestResult:
    """Canonical tables, quarantined rows per table, and the report of what was read."""

    tables: dict[str, pl.DataFrame]
    quarantine: dict[str, pl.DataFrame]
    report: dict = field(default_factory=dict)


def batch_files(batches_dir: Path, source: str) -> list[Path]:
    """A source's accepted batches: the data files in <batches_dir>/<source>/ that DVC finished tracking.

    `dvc add` writes `<file>.dvc` last: a batch without one (a killed add) was never accepted.
    """
    folder = batches_dir / source
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix != ".dvc"
                  and (dvc := p.with_name(f"{p.name}.dvc")).is_file() and dvc.stat().st_size > 0)


def inside(path: Path, folders: tuple[Path, ...] | list[Path]) -> bool:
    """Whether `path`, links followed, is in one of `folders`."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder.resolve()) for folder in folders)


def find_files(
    raw_dir: Path, mapping: Mapping, batches_dir: Path | None = None, trusted: tuple[Path, ...] = ()
) -> list[tuple[Path, str]]:
    """The files a mapping reads with their report labels: raw_dir's matches, then accepted batches.

    A match that resolves outside its folder (a link, or `..` in a pattern) is refused, unless into a `trusted` folder.
    """
    found = sorted({p for pattern in mapping.read.patterns for p in raw_dir.glob(pattern) if p.is_file()})
    files = [(p, p.relative_to(raw_dir).as_posix()) for p in found]
    if batches_dir is not None:
        files += [(p, f"{batches_dir.name}/{mapping.name}/{p.name}") for p in batch_files(batches_dir, mapping.name)]
    for path, _ in files:
        folder = batches_dir if batches_dir is not None and path.is_relative_to(batches_dir) else raw_dir
        if not inside(path, (folder, *trusted)):
            raise MapwiseError(f"{path}: refused: it resolves to a file outside {folder} (a link, or '..' in a "
                               f"pattern); copy the file into {folder} instead")
    if not files:
        patterns = ", ".join(mapping.read.patterns)
        raise MapwiseError(f"source '{mapping.name}': no file under {raw_dir} matches {patterns}")
    return files


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema={name: col.dtype.type for name, col in QUARANTINE_SCHEMA.columns.items()})


def _row_hashes(frame: pl.DataFrame, cols: list[str]) -> pl.Series:
    """A 64-bit hash per row over `cols` (xor of seeded column hashes: ~5x faster than a struct hash)."""
    return frame.select(pl.reduce(lambda a, b: a ^ b, [pl.col(c).hash(seed=i) for i, c in enumerate(cols)])).to_series()


def _without_rows(frames: list[pl.DataFrame], rows: pl.Series) -> list[pl.DataFrame]:
    """`frames` (read as one) without the rows at positions `rows`: only the frames that lose a row are copied."""
    out, start = [], 0
    for frame in frames:
        end = start + frame.height
        local = rows.filter((rows >= start) & (rows < end)) - start
        out.append(frame.filter(~pl.int_range(pl.len(), dtype=pl.Int64).is_in(local.implode())) if local.len() else frame)
        start = end
    return out


def _deduplicate(
    frames: list[pl.DataFrame], contract: Contract, source: str, *, ids_mapped: bool, keep_identical: bool = False
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """Fact rows (the partitions' frames, in order): a repeated record, or a repeated id, is quarantined after
    its first occurrence.

    Ids ingest generates (source, file, line) cannot repeat; only mapped ids are checked. `keep_identical`
    (the table's `duplicates: keep`) keeps repeated records: they are distinct events.
    """
    rejected = []
    content = [col for col in contract.dtypes if col not in (contract.key, c.SOURCE)]
    checks = [] if keep_identical else [(content, DUPLICATE_ROW)]
    checks += [([contract.key], "duplicate id")] if ids_mapped else []
    for cols, reason in checks:
        frame = pl.concat(frames)  # no copy: the partitions' columns, read as one
        if frame.height == 0:
            continue
        suspects = _row_hashes(frame, cols).is_duplicated()  # a unique hash is a unique row: only the rest compared
        if not suspects.any():
            continue
        first = pl.concat_str([pl.lit("first at "), pl.col(FILE_COLUMN), pl.lit(":"), pl.col(LINE_COLUMN)])
        marked = frame.filter(suspects).with_columns(
            pl.Series("__row", suspects.arg_true(), dtype=pl.Int64),
            pl.struct(cols).is_first_distinct().alias("__first"), first.first().over(cols).alias("__of"),
        )
        repeats = marked.filter(~pl.col("__first"))
        if repeats.height:
            rejected.append(
                repeats.select(
                    pl.lit(source).alias(c.SOURCE),
                    pl.col(FILE_COLUMN).alias(c.Q_FILE),
                    pl.col(LINE_COLUMN).alias(c.Q_LINE),
                    pl.lit(None if len(cols) > 1 else contract.key, pl.String).alias(c.Q_COLUMN),
                    pl.lit(reason).alias(c.Q_REASON),
                    pl.col("__of").alias(c.Q_VALUE),
                )
            )
            frames = _without_rows(frames, repeats["__row"])
    return frames, pl.concat(rejected) if rejected else _empty_quarantine()


def validate_rows(
    frame: pl.DataFrame, contract: Contract, source: str, limits: Limits
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split candidate rows into those the contract's row checks accept (times within the limits) and quarantine rows."""
    schema = contract.rows_schema_within(limits.earliest, limits.latest)
    cases = _failures(frame.select(list(contract.dtypes)), schema)
    if cases.height == 0:
        return frame, _empty_quarantine()
    cases = cases.sort("index").unique("index", keep="first", maintain_order=True)
    index = cases["index"].cast(pl.Int64)
    check = cases["check"]
    reason = (
        pl.when(check == "not_nullable").then(pl.lit("missing value"))
        .when(check == NOT_AFTER).then(pl.lit(FUTURE))
        .when(check == NOT_BEFORE).then(pl.lit(PAST))
        .otherwise(pl.concat_str([pl.lit("failed check "), check]))
    )
    value = pl.when(pl.col("column") == c.CUSTOMER_ID).then(pl.lit(REDACTED)).otherwise(
        preview_expr(pl.col("failure_case"))
    )
    bad = frame.select(FILE_COLUMN, LINE_COLUMN)[index].with_columns(
        cases.select(pl.col("column").alias(c.Q_COLUMN), reason.alias(c.Q_REASON), value.alias(c.Q_VALUE))
    )
    bad = bad.with_columns(pl.lit(source).alias(c.SOURCE)).rename(
        {FILE_COLUMN: c.Q_FILE, LINE_COLUMN: c.Q_LINE}
    )
    keep = ~pl.int_range(pl.len(), dtype=pl.Int64).is_in(index.implode())
    return frame.filter(keep), bad.select(QUARANTINE_COLUMNS)


def _failures(frame: pl.DataFrame, schema, offset: int = 0) -> pl.DataFrame:
    """The row checks' failures, one per (row, column, check): `index`, `column`, `check`, `failure_case` (text).

    A check can fail without naming rows (pandera reports a value Python cannot hold, such as a timestamp after
    the year 9999, as a failure of the whole column): the rows are then found by halving the frame until the
    failure has one row, so one bad value is that row's problem, never the file's.
    """
    try:
        schema.validate(frame, lazy=True)
        return _NO_FAILURES
    except pa_errors.SchemaErrors as err:
        cases = err.failure_cases
    if not cases["index"].null_count():
        return cases.select(
            (pl.col("index").cast(pl.Int64) + offset).alias("index"), "column", "check",
            pl.col("failure_case").cast(pl.String),
        )
    if frame.height == 1:  # this row fails as a whole: its value is the failure case
        whole = cases.filter(pl.col("index").is_null())
        return pl.DataFrame({
            "index": [offset] * whole.height, "column": whole["column"], "check": whole["check"],
            "failure_case": [frame[col].cast(pl.String)[0] if col in frame.columns else None for col in whole["column"]],
        }, schema=_NO_FAILURES.schema)
    half = frame.height // 2
    return pl.concat([_failures(frame[:half], schema, offset), _failures(frame[half:], schema, offset + half)])


_NO_FAILURES = pl.DataFrame(schema={"index": pl.Int64, "column": pl.String, "check": pl.String,
                                    "failure_case": pl.String})


def _unique_ids(frame: pl.DataFrame, contract: Contract, sources: list[str]) -> pl.DataFrame:
    """The fact table, after checking that no id comes from two sources (each source is deduplicated)."""
    if len(sources) < 2:
        return frame
    ids = frame[contract.key]
    if _row_hashes(frame, [contract.key]).n_unique() != frame.height and ids.is_duplicated().any():
        example = ids.filter(ids.is_duplicated())[0]
        raise MapwiseError(
            f"{contract.name}: id '{example}' comes from more than one of {', '.join(sources)}; "
            f"make the {contract.key} each mapping gives distinct (e.g. prefix it with the source)"
        )
    return frame


def _merge_dimension(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """One row per key: each attribute's latest non-null value."""
    attrs = [col for col in contract.dtypes if col != contract.key]
    merged = frame.group_by(contract.key, maintain_order=True).agg(
        [pl.col(a).drop_nulls().last() for a in attrs]
    )
    return merged.select(list(contract.dtypes)).sort(contract.key)


def _reason_counts(bad_rows: pl.DataFrame) -> dict[str, int]:
    """Quarantined rows per 'column: reason', most frequent first."""
    column, reason = pl.col(c.Q_COLUMN), pl.col(c.Q_REASON)
    label = pl.when(column.is_not_null()).then(pl.concat_str([column, pl.lit(": "), reason])).otherwise(reason)
    counts = bad_rows.group_by(label.alias("reason")).len().sort(["len", "reason"], descending=[True, False])
    return dict(counts.iter_rows())


@dataclass
class Partition:
    """One partition of a source (a file, or a chunk of one) mapped and row-checked, independently of every
    other: per table the rows the contract accepts (still to be deduplicated against the other partitions)
    and the rows quarantined, the rows it read and the records that could not be parsed. Partitions can be
    made anywhere (a worker per chunk); `merge_partitions` takes them in file and line order, which is what
    makes a repeated row's first occurrence the one kept. `seconds` times each step."""

    candidates: dict[str, pl.DataFrame]
    quarantined: dict[str, pl.DataFrame]
    rows_read: int
    broken: pl.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    carried: frozenset[str] = frozenset()  # pseudonyms forgotten under their spelling before ids were normalised


def ingest_partition(
    raw: RawTable, mapping: Mapping, *, path: Path, label: str, file_id: str, key: bytes | Pseudonymiser,
    limits: Limits,
) -> Partition:
    """Map one parsed partition and check its rows against the contracts (see Partition)."""
    clock = _Clock()
    mapped = map_file(raw, mapping, path=path, label=label, file_id=file_id, key=key)
    clock.tick("map")
    candidates, quarantined = {}, {}
    for table in mapping.tables:
        frame, invalid = validate_rows(mapped.candidates[table], mapping.contract(table), mapping.name, limits)
        candidates[table], quarantined[table] = frame, pl.concat([mapped.rejected[table], invalid])
    clock.tick("validate")
    carried = frozenset(key.carried) if isinstance(key, Pseudonymiser) else frozenset()
    return Partition(candidates, quarantined, raw.rows_read, raw.rejects, clock.seconds, carried)


def merge_partitions(
    parts: list[Partition], mapping: Mapping, forgotten: frozenset[str] = frozenset()
) -> tuple[dict, dict, dict]:
    """One source's partitions (in file and line order) as accepted and quarantined rows per table, with the
    per-table report: repeated rows are quarantined after their first occurrence across all partitions,
    rows of `forgotten` customers left out; every row read is accounted for."""
    rows_read = sum(part.rows_read for part in parts)
    forgotten = forgotten.union(*(part.carried for part in parts))
    accepted, quarantined, tables_report = {}, {}, {}
    for table in mapping.tables:
        contract = mapping.contract(table)
        frames = [part.candidates[table] for part in parts]  # filtered frame by frame: a copy costs one chunk
        bad = [part.quarantined[table] for part in parts]
        if contract.kind == "fact" and parts:
            ids_mapped = contract.key in mapping.tables[table].columns
            keep = mapping.tables[table].duplicates == "keep"
            frames, dups = _deduplicate(frames, contract, mapping.name, ids_mapped=ids_mapped, keep_identical=keep)
            bad.append(dups)
        bad_rows = pl.concat(bad) if bad else _empty_quarantine()
        before = sum(f.height for f in frames)
        if forgotten and c.CUSTOMER_ID in contract.dtypes:
            gone = pl.Series(list(forgotten), dtype=pl.String).implode()
            drops = [f[c.CUSTOMER_ID].is_in(gone).fill_null(True).any() for f in frames]  # as the filter does
            frames = [f.filter(~pl.col(c.CUSTOMER_ID).is_in(gone)) if drop else f for f, drop in zip(frames, drops, strict=True)]
        frame = pl.concat(frames) if frames else contract.empty()
        left_out = before - frame.height
        if frame.height + bad_rows.height + left_out != rows_read:
            raise MapwiseError(
                f"internal error: {mapping.name} -> {table}: {frame.height} accepted + "
                f"{bad_rows.height} quarantined + {left_out} forgotten != {rows_read} read"
            )
        accepted[table], quarantined[table] = frame, bad_rows
        tables_report[table] = {
            "read": rows_read,
            "accepted": frame.height,
            "quarantined": bad_rows.height,
            "forgotten": left_out,
            "reasons": _reason_counts(bad_rows),
        }
    return accepted, quarantined, tables_report


class _Clock:
    """Seconds spent per step, accumulated."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def tick(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._last
        self._last = now

    def restart(self) -> None:
        self._last = time.perf_counter()

    def add(self, seconds: dict[str, float]) -> None:
        for step, spent in seconds.items():
            self.seconds[step] = self.seconds.get(step, 0.0) + spent


def map_chunk(
    data: bytes, offset: int, *, path: Path, mapping: Mapping, label: str, file_id: str,
    hmac_key: bytes | Pseudonymiser, limits: Limits,
) -> Partition:
    """One chunk of a file's content (`chunks`) parsed, mapped and checked: what a worker does. (Not `key`:
    Dask's submit takes that name for itself.)"""
    start = time.perf_counter()
    raw = shifted(read_raw(path, data, mapping.read, limits.max_bytes), offset)
    del data
    parsed = time.perf_counter() - start
    part = ingest_partition(raw, mapping, path=path, label=label, file_id=file_id, key=hmac_key, limits=limits)
    part.seconds["parse"] = part.seconds.get("parse", 0.0) + parsed
    return part


def ingest_source(
    files: list[tuple[Path, str]], mapping: Mapping, key: bytes, seen: dict[str, str], limits: Limits,
    forgotten: frozenset[str] = frozenset(), timings: dict[str, float] | None = None,
    executor: Executor | None = None,
) -> tuple[dict, dict, dict]:
    """One source's files (path, label) mapped and checked: accepted and quarantined rows per table, and a report.

    Each file is read as a stream, in chunks of `limits.chunk_bytes` (each an independent Partition), mapped
    here or, given an `executor` (see `cluster`), on its workers, a few chunks in flight at a time; either way
    the partitions are merged in file and line order. The report counts, per file and in all, the records whose
    structure could not be parsed (`broken`), and why (`broken_reasons`). `timings`, when given, gets the
    seconds spent per step added (on a cluster, the workers' seconds).
    """
    files_report, parts = [], []
    clock = _Clock()
    pseudonymise = Pseudonymiser(key, forgotten)  # each distinct id hashed once across the source's chunks (in process)
    remote = Pseudonymiser(key, forgotten) if forgotten else key  # each worker's copy reports what it carried
    pending: deque[tuple[dict, Future]] = deque()
    window = in_flight(executor)

    def collect(entry: dict, part: Partition) -> None:
        clock.add(part.seconds)
        parts.append(part)
        entry["rows"] += part.rows_read
        entry["broken"] += part.broken.height

    for path, label in steps(files, f"ingest {mapping.name}"):
        digest = digest_of(path, limits.max_bytes)
        clock.tick("hash_file")
        if digest in seen:
            files_report.append({"path": label, "sha256": digest, "status": f"skipped: same content as {seen[digest]}"})
            continue
        seen[digest] = label
        entry = {"path": label, "sha256": digest, "status": "ingested", "rows": 0, "broken": 0}
        files_report.append(entry)
        where = {"path": path, "mapping": mapping, "label": label, "file_id": digest[:12], "limits": limits}
        for chunk in chunks(path, mapping.read, limits.max_bytes, limits.chunk_bytes):
            clock.tick("read_decompress")
            if executor is None:
                collect(entry, map_chunk(chunk.data, chunk.offset, hmac_key=pseudonymise, **where))
            else:
                pending.append((entry, executor.submit(map_chunk, chunk.data, chunk.offset, hmac_key=remote, **where)))
                while len(pending) >= window:
                    collect(*_result(pending.popleft()))
            del chunk
            clock.restart()
    while pending:
        collect(*_result(pending.popleft()))
    clock.restart()
    accepted, quarantined, tables_report = merge_partitions(parts, mapping, forgotten)
    clock.tick("deduplicate")
    unparsed = pl.concat([part.broken for part in parts]) if parts else _empty_quarantine()
    report = {"files": files_report, "rows_read": sum(part.rows_read for part in parts), "broken": unparsed.height,
              "broken_reasons": _reason_counts(unparsed), "tables": tables_report}
    if timings is not None:  # never in the report: reports of identical inputs are identical
        clock.seconds["map"] = clock.seconds.get("map", 0.0) - pseudonymise.seconds
        clock.add({"pseudonymise": pseudonymise.seconds, "chunks": len(parts)})
        for step, spent in clock.seconds.items():
            timings[step] = timings.get(step, 0) + spent
    return accepted, quarantined, report


def _result(entry: tuple[dict, Future]) -> tuple[dict, Partition]:
    return entry[0], entry[1].result()


def declared_traits(mappings: list[Mapping]) -> dict[str, TraitSpec]:
    """Every trait the mappings declare; a trait two sources declare must be declared alike."""
    traits: dict[str, TraitSpec] = {}
    where: dict[str, str] = {}
    for mapping in mappings:
        for name, spec in mapping.traits.items():
            if name in traits and traits[name] != spec:
                raise MapwiseError(f"trait '{name}' is declared differently by mappings '{where[name]}' and "
                                   f"'{mapping.name}': declare it alike (type, values, bounds) or rename one")
            traits.setdefault(name, spec)
            where.setdefault(name, mapping.name)
    return traits


def canonical_contracts(mappings: list[Mapping]) -> dict[str, Contract]:
    """The contracts of the canonical tables, customer_traits with every declared trait."""
    return {**CONTRACTS, c.CUSTOMER_TRAITS: traits_contract(declared_traits(mappings))}


def _conform(frames: list[pl.DataFrame], contract: Contract) -> pl.DataFrame:
    """Rows of several sources as one table with the contract's columns (columns a source lacks are null)."""
    if not frames:
        return contract.empty()
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.select(pl.col(n) if n in frame.columns else pl.lit(None, t).alias(n) for n, t in contract.dtypes.items())


def ingest(
    raw_dir: Path, mappings: list[Mapping], key: bytes, limits: Limits, batches_dir: Path | None = None,
    forgotten: frozenset[str] = frozenset(), timings: dict[str, float] | None = None,
    executor: Executor | None = None,
) -> IngestResult:
    """Map every source (raw files, then accepted batches) into the canonical tables; quarantine what the contracts
    reject; leave out the rows of `forgotten` customers (pseudonyms). `timings`, when given, gets the seconds
    spent per step; `executor` maps the chunks on a cluster (see `ingest_source`)."""
    seen: dict[str, str] = {}
    contracts = canonical_contracts(mappings)
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in contracts}
    bad_parts: dict[str, list[pl.DataFrame]] = {name: [] for name in contracts}
    sources_report = {}
    for mapping in mappings:
        files = find_files(raw_dir, mapping, batches_dir, limits.trusted)
        accepted, quarantined, report = ingest_source(files, mapping, key, seen, limits, forgotten, timings, executor)
        sources_report[mapping.name] = report
        for table in accepted:
            parts[table].append(accepted[table].drop(LINE_COLUMN, FILE_COLUMN, strict=False))
            bad_parts[table].append(quarantined[table])
        del accepted  # the partitions' line and file columns go with it
    start = time.perf_counter()
    tables, quarantine, tables_report = {}, {}, {}
    for name, contract in contracts.items():
        frame = _conform(parts[name], contract)
        sources = [m.name for m in mappings if name in m.tables]
        if contract.kind == "dimension":
            tables[name] = contract.schema.validate(_merge_dimension(frame, contract))
        else:  # rows were validated per source; ids must not repeat across sources either
            tables[name] = _unique_ids(frame, contract, sources)
        bad = pl.concat(bad_parts[name]) if bad_parts[name] else _empty_quarantine()
        quarantine[name] = QUARANTINE_SCHEMA.validate(bad.sort(c.SOURCE, c.Q_FILE, c.Q_LINE, maintain_order=True))
        read = sum(sources_report[source]["rows_read"] for source in sources)
        tables_report[name] = {
            "rows": tables[name].height,
            "read": read,
            "accepted": sum(p.height for p in parts[name]),
            "quarantined": bad.height,
            "forgotten": sum(sources_report[source]["tables"][name]["forgotten"] for source in sources),
        }
    if timings is not None:
        timings["combine"] = timings.get("combine", 0) + time.perf_counter() - start
    report = {"timestamps": [limits.earliest.isoformat(timespec="seconds"), limits.latest.isoformat(timespec="seconds")],
              "sources": sources_report,
              "tables": tables_report}
    return IngestResult(tables, quarantine, report)
