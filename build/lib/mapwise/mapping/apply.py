"""Apply a mapping to one parsed file: canonical candidate rows per table, and the rows rejected.

Every parse failure is tracked per source column, so a row is rejected only by the tables that
read the failing column (a bad quantity does not cost the customers table its country).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.contracts import CONTRACTS
from mapwise.errors import MapwiseError
from mapwise.mapping.expressions import FILE_COLUMN, LINE_COLUMN, compile_expression
from mapwise.mapping.readers import RawTable, preview_expr
from mapwise.mapping.spec import Mapping, TimestampSpec
from mapwise.privacy import pseudonymise

REDACTED = "<redacted>"
_ERR = "__err__"  # prefix of the per-column parse-error columns
_VAL = "__val__"  # prefix of the canonical values before the contract's cast
IDENTITY_COLUMN = "__identity__"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
QUARANTINE_COLUMNS = [c.SOURCE, c.Q_FILE, c.Q_LINE, c.Q_COLUMN, c.Q_REASON, c.Q_VALUE]


@dataclass(frozen=True)
class MappedFile:
    """Per table: rows ready for validation (canonical columns + line and file) and rejected rows."""

    candidates: dict[str, pl.DataFrame]
    rejected: dict[str, pl.DataFrame]


def _cast(expr: pl.Expr, kind: str) -> pl.Expr:
    """Lenient parse of text (or parquet values) into `kind`; unparsable values become null."""
    if kind == "int":
        return expr.cast(pl.Int64, strict=False)
    if kind == "float":
        return expr.cast(pl.Float64, strict=False)
    if kind == "bool":
        text = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
        return pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False)
    if kind == "date":
        return expr.cast(pl.String).str.to_date(strict=False)
    return expr.cast(pl.String)


def _whole_number(values: pl.Series) -> pl.Series:
    """Integers written as floats ("17850.0"), as Int64; anything else null."""
    as_float = values.cast(pl.Float64, strict=False)
    return as_float.cast(pl.Int64, strict=False).set(as_float != as_float.floor(), None)


def _timestamp(expr: pl.Expr, spec: TimestampSpec, dtype: pl.DataType) -> pl.Expr:
    if spec.epoch:
        parsed = pl.from_epoch(expr.cast(pl.Int64, strict=False), time_unit=spec.epoch).dt.replace_time_zone("UTC")
        return parsed.dt.cast_time_unit("us")
    if isinstance(dtype, pl.Datetime):
        parsed = expr
    else:
        parsed = expr.str.strptime(pl.Datetime("us"), spec.format, strict=False)
    aware = isinstance(dtype, pl.Datetime) and dtype.time_zone or (spec.format and "%z" in spec.format)
    if not aware:
        parsed = parsed.dt.replace_time_zone(spec.timezone, ambiguous="earliest", non_existent="null")
    return parsed.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _needed_columns(mapping: Mapping) -> list[str]:
    produced = set(mapping.derive)
    refs: list[str] = [*mapping.value_maps, *mapping.casts, *mapping.timestamps]
    for _, text in mapping.expressions():
        refs.extend(sorted(compile_expression(text).columns))
    return [col for col in dict.fromkeys(refs) if col not in produced]


def _check_header(frame: pl.DataFrame, mapping: Mapping, path: Path) -> None:
    missing_renames = [src for src in mapping.rename if src not in frame.columns]
    names = set(frame.columns) - set(mapping.rename) | set(mapping.rename.values())
    missing = missing_renames or [col for col in _needed_columns(mapping) if col not in names]
    if not missing:
        return
    found = [col for col in frame.columns if col != LINE_COLUMN]
    hint = ""
    if len(found) == 1 and any(sep in found[0] for sep in ";\t|,"):
        hint = "; is the delimiter right?"
    shown = ", ".join(f"'{col}'" for col in found[:12]) + (" ..." if len(found) > 12 else "")
    raise MapwiseError(
        f"{path}: column(s) {', '.join(repr(m) for m in missing)} needed by mapping "
        f"'{mapping.name}' not in the file (found {shown or 'no columns'}){hint}"
    )


def _parse(frame: pl.DataFrame, mapping: Mapping) -> tuple[pl.DataFrame, set[str]]:
    """Value maps, then casts and timestamps; returns the frame and the columns where a value failed.

    Each failing column gets an error column (_ERR + name) holding the first reason per row.
    """
    errors: dict[str, pl.Series] = {}

    def record(col: str, failed: pl.Series, reason: str) -> None:
        if failed.any():
            err = pl.select(pl.when(failed).then(pl.lit(reason))).to_series()
            errors[col] = errors[col].fill_null(err) if col in errors else err

    for col, table in mapping.value_maps.items():
        text = frame[col].cast(pl.String)
        keys = list(table)
        record(col, text.is_not_null() & ~text.is_in(keys), "unmapped value")
        frame = frame.with_columns(text.replace_strict(keys, list(table.values()), default=None).alias(col))
    steps = [(col, _cast(pl.col(col), kind), f"cannot parse as {kind}") for col, kind in mapping.casts.items()]
    for col, spec in mapping.timestamps.items():
        how = f"format '{spec.format}'" if spec.format else f"epoch {spec.epoch}"
        parsed = _timestamp(pl.col(col), spec, frame.schema[col])
        steps.append((col, parsed, f"cannot parse as a {spec.timezone} time ({how})"))
    parsed = frame.select([expr.alias(col) for col, expr, _ in steps])
    for col, _, reason in steps:
        values, raw = parsed[col], frame[col]
        failed = raw.is_not_null() & values.is_null()
        if mapping.casts.get(col) == "int" and failed.any():
            values = values.fill_null(_whole_number(raw))
            failed = raw.is_not_null() & values.is_null()
            parsed = parsed.with_columns(values)
        record(col, failed, reason)
    frame = frame.with_columns(*parsed, *[err.alias(_ERR + col) for col, err in errors.items()])
    return frame, set(errors)


def _pseudonymise_identity(frame: pl.DataFrame, identity: str, key: bytes) -> pl.DataFrame:
    """IDENTITY_COLUMN gets the pseudonym; the columns the identity reads are overwritten with it."""
    compiled = compile_expression(identity)
    ids = pseudonymise(frame.select(compiled.expr.alias(IDENTITY_COLUMN)).to_series(), key)
    return frame.with_columns(ids, *[ids.alias(col) for col in compiled.columns])


def _dependencies(mapping: Mapping, failing: set[str]) -> dict[str, list[str]]:
    """For each column a table may read, the failing source columns it depends on."""
    deps: dict[str, list[str]] = {}
    for name, text in mapping.derive.items():
        cols = compile_expression(text).columns
        deps[name] = sorted({d for col in cols for d in deps.get(col, [col]) if d in failing})
    return deps


def _private(mapping: Mapping) -> frozenset[str]:
    """Source columns holding raw customer ids: never copied, never shown."""
    return compile_expression(mapping.identity).columns if mapping.identity else frozenset()


def _reason(deps: list[str], private: frozenset[str]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(column, reason, value) of the first failing dependency, or nulls."""
    if not deps:
        none = pl.lit(None, pl.String)
        return none, none, none
    column = pl.when(pl.col(_ERR + deps[0]).is_not_null()).then(pl.lit(deps[0]))
    value = pl.when(pl.col(_ERR + deps[0]).is_not_null()).then(_raw_value(deps[0], private))
    for dep in deps[1:]:
        failed = pl.col(_ERR + dep).is_not_null()
        column = column.when(failed).then(pl.lit(dep))
        value = value.when(failed).then(_raw_value(dep, private))
    reason = pl.coalesce([pl.col(_ERR + d) for d in deps])
    return column.otherwise(None), reason, value.otherwise(None)


def _raw_value(col: str, private: frozenset[str]) -> pl.Expr:
    return pl.lit(REDACTED) if col in private else preview_expr(pl.col(f"__raw__{col}").cast(pl.String))


def map_file(raw: RawTable, mapping: Mapping, *, path: Path, label: str, file_id: str, key: bytes) -> MappedFile:
    """Map one parsed file into candidate rows and rejected rows for each of the mapping's tables.

    `path` names the file in errors; `label` names it in the quarantine and in generated ids.
    """
    needed = _needed_columns(mapping)
    if raw.frame.width == 1 and raw.frame.height == 0:  # empty file: no header, no rows
        frame = pl.DataFrame(schema={**{col: pl.String for col in needed}, LINE_COLUMN: pl.Int64})
    else:
        _check_header(raw.frame, mapping, path)
        frame = raw.frame.rename(mapping.rename)
    rejected_base = raw.rejects.with_columns(
        pl.lit(mapping.name).alias(c.SOURCE), pl.lit(label).alias(c.Q_FILE)
    ).select(QUARANTINE_COLUMNS)
    try:
        frame = frame.with_columns(
            pl.lit(label, pl.String).alias(FILE_COLUMN),
            *[pl.col(col).alias(f"__raw__{col}") for col in needed if col not in _private(mapping)],
        )
        frame, failing = _parse(frame, mapping)
        if mapping.identity:
            frame = _pseudonymise_identity(frame, mapping.identity, key)
        for name, text in mapping.derive.items():
            frame = frame.with_columns(compile_expression(text).expr.alias(name))
        deps = _dependencies(mapping, failing)
        candidates, rejected = {}, {}
        for table in mapping.tables:
            good, bad = _table_rows(frame, mapping, table, deps, failing, file_id)
            candidates[table] = good
            rejected[table] = pl.concat([rejected_base, bad])
    except pl.exceptions.PolarsError as err:
        problem = str(err).strip().splitlines()[0]
        raise MapwiseError(f"{path}: mapping '{mapping.name}' cannot be applied: {problem}") from None
    return MappedFile(candidates, rejected)


def _table_rows(
    frame: pl.DataFrame,
    mapping: Mapping,
    table: str,
    deps: dict[str, list[str]],
    failing: set[str],
    file_id: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    contract = CONTRACTS[table]
    spec = mapping.tables[table]
    exprs = {col: compile_expression(text) for col, text in spec.columns.items()}
    reads = set().union(*(e.columns for e in exprs.values())) if exprs else set()
    if spec.filter:
        reads |= compile_expression(spec.filter).columns
    if c.CUSTOMER_ID in contract.dtypes:
        reads |= _private(mapping)
    table_deps = sorted({d for col in reads for d in deps.get(col, [col]) if d in failing})
    q_column, q_reason, q_value = _reason(table_deps, _private(mapping))
    if spec.filter:
        excluded = compile_expression(spec.filter).expr.fill_null(False).not_()
        q_reason = pl.coalesce(q_reason, pl.when(excluded).then(pl.lit(f"excluded by filter: {spec.filter}")))
    values = []
    for col, dtype in contract.dtypes.items():
        if col in exprs:
            expr = exprs[col].expr
        elif col == c.CUSTOMER_ID and mapping.identity:
            expr = pl.col(IDENTITY_COLUMN)
        elif col == c.SOURCE:
            expr = pl.lit(mapping.name)
        elif col == contract.key and contract.kind == "fact":
            expr = pl.concat_str([pl.lit(f"{mapping.name}:{file_id}:"), pl.col(LINE_COLUMN).cast(pl.String)])
        else:
            expr = pl.lit(None, dtype)
        values.append(expr.alias(_VAL + col))
    staged = frame.with_columns(
        *values, q_column.alias("__q_column"), q_reason.alias("__q_reason"), q_value.alias("__q_value")
    )
    casts, broken_column, broken_value, broken_reason = [], [], [], []
    for col, dtype in contract.dtypes.items():
        source = pl.col(_VAL + col)
        cast = source.cast(dtype, strict=False)
        casts.append(cast.alias(col))
        broke = source.is_not_null() & cast.is_null()
        broken_column.append(pl.when(broke).then(pl.lit(col)))
        broken_value.append(pl.when(broke).then(_redact(col, preview_expr(source.cast(pl.String)))))
        broken_reason.append(pl.when(broke).then(pl.lit(f"cannot convert to {dtype}")))
    prior = pl.col("__q_reason").is_not_null()  # parse and filter reasons come first
    q_column = pl.when(prior).then(pl.col("__q_column")).otherwise(pl.coalesce(broken_column))
    q_reason = pl.when(prior).then(pl.col("__q_reason")).otherwise(pl.coalesce(broken_reason))
    q_value = pl.when(prior).then(pl.col("__q_value")).otherwise(pl.coalesce(broken_value))
    staged = staged.select(
        *casts,
        pl.col(LINE_COLUMN),
        pl.col(FILE_COLUMN),
        q_column.alias("__q_column"),
        q_reason.alias("__q_reason"),
        q_value.alias("__q_value"),
    )
    bad_mask = pl.col("__q_reason").is_not_null()
    good = staged.filter(~bad_mask).select(*contract.dtypes, LINE_COLUMN, FILE_COLUMN)
    bad = staged.filter(bad_mask).select(
        pl.lit(mapping.name).alias(c.SOURCE),
        pl.col(FILE_COLUMN).alias(c.Q_FILE),
        pl.col(LINE_COLUMN).alias(c.Q_LINE),
        pl.col("__q_column").alias(c.Q_COLUMN),
        pl.col("__q_reason").alias(c.Q_REASON),
        pl.col("__q_value").alias(c.Q_VALUE),
    )
    return good, bad


def _redact(column: str, value: pl.Expr) -> pl.Expr:
    return pl.lit(REDACTED) if column == c.CUSTOMER_ID else value
