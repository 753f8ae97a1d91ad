"""Apply a mapping to one parsed file: canonical candidate rows per table, and the rows rejected.

Every parse failure is tracked per source column, so a row is rejected only by the tables that
read the failing column (a bad quantity does not cost the customers table its country).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.errors import MapwiseError, engine_problem, one_line, preview
from mapwise.sources.mapping.expressions import FILE_COLUMN, LINE_COLUMN, compile_expression
from mapwise.sources.mapping.readers import DUPLICATE, RawTable, preview_expr
from mapwise.sources.mapping.spec import Mapping, TimestampSpec
from mapwise.privacy.pseudonym import Pseudonymiser

REDACTED = "<redacted>"
_ERR = "__err__"  # prefix of the per-column parse-error columns
_VAL = "__val__"  # prefix of the canonical values before the contract's cast
IDENTITY_COLUMN = "__identity__"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_SPACE = " \t"
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


class ColumnTypeError(ValueError):
    """A column whose values can never become what the mapping or the contract asks: the mapping must change."""


_EXAMPLE_FORMAT = '{format: "%Y-%m-%d %H:%M:%S", timezone: UTC}'


def conversion_problem(dtype: pl.DataType, target: pl.DataType, text: str, mapping: Mapping) -> str | None:
    """Why values of `dtype`, from expression `text`, can never become the contract's `target`, and the fix;
    None when they can (a value that does not convert is then quarantined, with its column)."""
    if target == pl.String or dtype == target or dtype == pl.Null:
        return None
    temporal = dtype == pl.Date or isinstance(dtype, pl.Datetime)
    if (isinstance(target, pl.Datetime) or target == pl.Date) and temporal:
        return None
    if target.is_numeric() and (dtype.is_numeric() or dtype in (pl.String, pl.Boolean)):
        return None
    if target == pl.Boolean and dtype.is_numeric():
        return None
    read = sorted(compile_expression(text).columns)
    column = read[0] if len(read) == 1 and read[0] not in mapping.derive else None  # the source column to parse
    name = column or "<column>"
    bare = column is not None and text.strip() in (column, f"col('{column}')", f'col("{column}")')
    what = f"column '{one_line(name, 60)}'" if bare else f"'{one_line(text, 60)}'"
    kind = "text" if dtype == pl.String else "true/false" if dtype == pl.Boolean else \
        "numbers" if dtype.is_numeric() else "dates and times" if temporal else str(dtype)
    if isinstance(target, pl.Datetime) and dtype == pl.String:
        fix = (f"declare how to parse it under timestamps:, e.g. timestamps: {{{name}: {_EXAMPLE_FORMAT}}} "
               f"(strftime codes; or {{epoch: s}} for epoch seconds)")
        if column is None:
            fix = "parse the source column(s) under timestamps: (e.g. " + _EXAMPLE_FORMAT + ") and map the parsed column"
        return f"{what} is text, but the contract needs a date and time (UTC): {fix}"
    if isinstance(target, pl.Datetime) and dtype.is_numeric():
        return (f"{what} gives numbers, but the contract needs a date and time (UTC): for epoch values declare "
                f"timestamps: {{{name}: {{epoch: s}}}} (s, ms, us or ns)")
    if target == pl.Date and dtype == pl.String:
        return (f"{what} is text, but the contract needs a date: add casts: {{{name}: date}} (YYYY-MM-DD), or "
                f"timestamps: {{{name}: {_EXAMPLE_FORMAT}}} for another layout")
    if target == pl.Boolean and dtype == pl.String:
        return (f"{what} is text, but the contract needs true/false: add casts: {{{name}: bool}} "
                f"(true/false, yes/no, y/n, 1/0), or map its values under value_maps: {{{name}: {{...: true}}}}")
    needs = "a date and time (UTC)" if isinstance(target, pl.Datetime) else "a date" if target == pl.Date else \
        "true/false" if target == pl.Boolean else "a number" if target.is_numeric() else str(target)
    return f"{what} gives {kind} ({dtype}), but the contract needs {needs}: change the expression or its casts"


def _timestamp(expr: pl.Expr, spec: TimestampSpec, dtype: pl.DataType) -> pl.Expr:
    if spec.epoch:
        parsed = pl.from_epoch(expr.cast(pl.Int64, strict=False), time_unit=spec.epoch).dt.replace_time_zone("UTC")
        return parsed.dt.cast_time_unit("us")
    if isinstance(dtype, pl.Datetime):
        parsed = expr
    elif dtype == pl.Date:
        parsed = expr.cast(pl.Datetime("us"))
    elif dtype in (pl.String, pl.Null):
        parsed = expr.str.strptime(pl.Datetime("us"), spec.format, strict=False)
    else:
        raise ColumnTypeError(f"the column holds {dtype} values, not text, so format '{spec.format}' cannot apply; "
                              f"for epoch numbers use {{epoch: s}} (s, ms, us or ns)")
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
    """Every column the mapping reads is in the file, once; the error shows the header only when it is one."""
    names = set(frame.columns) - set(mapping.rename) | set(mapping.rename.values())
    used = _needed_columns(mapping)
    needed = [*mapping.rename, *(col for col in used if col not in mapping.rename.values())]
    repeated = [col for col in needed if f"{col}{DUPLICATE}0" in frame.columns]
    if repeated:
        shown = ", ".join(repr(preview(col, 40)) for col in repeated)
        raise MapwiseError(f"{path}: column(s) {shown} appear more than once in the header: which one is meant is ambiguous")
    missing = [col for col in mapping.rename if col not in frame.columns]
    missing = missing or [col for col in used if col not in names]
    if not missing:
        return
    found = [col for col in frame.columns if col != LINE_COLUMN]
    wanted = ", ".join(repr(preview(m, 40)) for m in missing)
    if any("\x00" in col for col in found):
        hint = "the header holds NUL bytes: is the file UTF-16 (read.encoding: utf-16)?"
    elif len(found) == 1 and any(sep in found[0] for sep in ";\t|,"):
        hint = f"found a single column: is the delimiter {mapping.read.separator!r} right?"
    elif not set(found) & set(needed):  # no name in common: this first line is data, not a header; never echo it
        hint = f"found {len(found)} columns, none of them one the mapping reads; is the header line missing (read.header)?"
    else:
        hint = "found " + ", ".join(repr(preview(col, 40)) for col in found[:12]) + (" ..." if len(found) > 12 else "")
    raise MapwiseError(f"{path}: column(s) {wanted} needed by mapping '{mapping.name}' not in the file ({hint})")


def _trimmed(frame: pl.DataFrame, mapping: Mapping, needed: list[str]) -> pl.DataFrame:
    """Header names and the text values the mapping reads without surrounding spaces; null_values apply after.

    Only columns holding a value to trim are rewritten: the delimited readers have applied null_values
    already, so an untouched column needs nothing more (parquet and JSON lines values still need them).
    """
    names = set(frame.columns)
    frame = frame.rename({n: n.strip(_SPACE) for n in frame.columns if n != n.strip(_SPACE) and n.strip(_SPACE) not in names})
    text = [col for col in dict.fromkeys(needed) if frame.schema.get(col) == pl.String]
    if not text:
        return frame
    if mapping.read.format not in ("parquet", "jsonl"):
        padded = frame.select(
            pl.any_horizontal([pl.col(col).str.starts_with(ch) | pl.col(col).str.ends_with(ch) for ch in _SPACE])
            .any().alias(col) for col in text
        )
        text = [col for col in text if padded[col][0]]
    nulls = mapping.read.null_values
    stripped = {col: pl.col(col).str.strip_chars(_SPACE) for col in text}
    return frame.with_columns(pl.when(v.is_in(nulls)).then(None).otherwise(v).alias(col) for col, v in stripped.items())


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
        try:
            parsed = _timestamp(pl.col(col), spec, frame.schema[col])
        except ColumnTypeError as err:
            raise ColumnTypeError(f"timestamps.{col}: {err}") from None
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


def check_types(mapping: Mapping, origin: str) -> None:
    """Evaluate every expression, in ingest's order, on an empty frame typed as ingest types it.

    Every format but parquet reads text, so a type error found here (`abs(x)` of an uncast column)
    would fail every file; a parquet file's own types are known only once it is read.
    """
    if mapping.read.format == "parquet":
        return
    read = dict.fromkeys(_needed_columns(mapping), pl.String)
    frame = pl.DataFrame(schema={**read, LINE_COLUMN: pl.Int64, FILE_COLUMN: pl.String})
    try:
        frame, _ = _parse(frame, mapping)
    except (pl.exceptions.PolarsError, TypeError):
        return  # value maps, casts or timestamps that cannot be applied: ingest names them

    def evaluate(where: str, text: str) -> pl.Series:
        try:
            values = frame.select(compile_expression(text).expr).to_series()
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as err:
            problem = engine_problem(err)
            text_read = sorted(col for col in compile_expression(text).columns
                               if frame.schema.get(col) == pl.String and col not in mapping.derive)
            if text_read:  # the usual cause: a column used as a number, flag or time without its cast
                shown = ", ".join(one_line(col, 40) for col in text_read[:5])
                problem += (f" ({shown} {'is' if len(text_read) == 1 else 'are'} read as text: cast first, e.g. "
                            f"casts: {{{one_line(text_read[0], 40)}: float}} (int, bool, date), or parse under timestamps:)")
            raise MapwiseError(f"{origin}: {where}: '{one_line(text)}' cannot be evaluated: {problem}") from None
        if where.endswith(".filter") and values.dtype not in (pl.Boolean, pl.Null):
            raise MapwiseError(f"{origin}: {where}: '{one_line(text)}' gives {values.dtype}, not true or false")
        return values

    if mapping.identity:  # the columns it reads become pseudonyms, which are text
        evaluate("identity", mapping.identity)
        private = compile_expression(mapping.identity).columns
        frame = frame.with_columns(pl.lit(None, pl.String).alias(col) for col in private)
    for name, text in mapping.derive.items():
        frame = frame.with_columns(evaluate(f"derive.{name}", text).alias(name))
    for where, text in mapping.expressions():
        if where.startswith("tables."):
            values = evaluate(where, text)
            _, table, part, *column = where.split(".", 3)
            if part == "columns":
                target = mapping.contract(table).dtypes.get(column[0])
                problem = target is not None and conversion_problem(values.dtype, target, text, mapping)
                if problem:
                    raise MapwiseError(f"{origin}: {where}: {problem}")


def _pseudonymise_identity(frame: pl.DataFrame, identity: str, pseudonymise: Pseudonymiser) -> pl.DataFrame:
    """IDENTITY_COLUMN gets the pseudonym; the columns the identity reads are overwritten with it."""
    compiled = compile_expression(identity)
    ids = pseudonymise(frame.select(compiled.expr.alias(IDENTITY_COLUMN)).to_series())
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


def map_file(
    raw: RawTable, mapping: Mapping, *, path: Path, label: str, file_id: str, key: bytes | Pseudonymiser
) -> MappedFile:
    """Map one parsed file (or one chunk of it) into candidate rows and rejected rows for each of the mapping's tables.

    `path` names the file in errors; `label` names it in the quarantine and in generated ids. `key` is the
    pseudonymisation key, or a Pseudonymiser holding it that the chunks of a file share.
    """
    needed = _needed_columns(mapping)
    frame = raw.frame
    if frame.width == 1 and frame.height == 0:  # no record parsed at all (e.g. every JSON line broken)
        frame = pl.DataFrame(schema={**{col: pl.String for col in needed}, LINE_COLUMN: pl.Int64})
    else:
        if mapping.read.trim:
            frame = _trimmed(frame, mapping, [*mapping.rename, *needed])
        _check_header(frame, mapping, path)
        frame = frame.rename(mapping.rename)
    private = _private(mapping)
    as_read = [*private, *(src for src, dst in mapping.rename.items() if dst in private)]  # names in the file
    rejected_base = raw.rejects.with_columns(
        pl.lit(mapping.name).alias(c.SOURCE),
        pl.lit(label).alias(c.Q_FILE),
        pl.when(pl.col(c.Q_COLUMN).is_in(as_read)).then(pl.lit(REDACTED)).otherwise(pl.col(c.Q_VALUE)).alias(c.Q_VALUE),
    ).select(QUARANTINE_COLUMNS)
    try:
        frame = frame.with_columns(
            pl.lit(label, pl.String).alias(FILE_COLUMN),
            *[pl.col(col).alias(f"__raw__{col}") for col in needed if col not in private],
        )
        frame, failing = _parse(frame, mapping)
        if mapping.identity:
            frame = _pseudonymise_identity(
                frame, mapping.identity, key if isinstance(key, Pseudonymiser) else Pseudonymiser(key))
        for name, text in mapping.derive.items():
            frame = frame.with_columns(compile_expression(text).expr.alias(name))
        deps = _dependencies(mapping, failing)
        candidates, rejected = {}, {}
        for table in mapping.tables:
            good, bad = _table_rows(frame, mapping, table, deps, failing, file_id)
            candidates[table] = good
            rejected[table] = pl.concat([rejected_base, bad])
    except ColumnTypeError as err:
        raise MapwiseError(f"{path}: mapping '{mapping.name}': {err}") from None
    except pl.exceptions.PolarsError as err:
        raise MapwiseError(f"{path}: mapping '{mapping.name}' cannot be applied: {engine_problem(err)}") from None
    return MappedFile(candidates, rejected)


def _table_rows(
    frame: pl.DataFrame,
    mapping: Mapping,
    table: str,
    deps: dict[str, list[str]],
    failing: set[str],
    file_id: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    contract = mapping.contract(table)
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
    for col in exprs:  # values that can never become the contract's type: the mapping is wrong, not the row
        problem = conversion_problem(staged.schema[_VAL + col], contract.dtypes[col], spec.columns[col], mapping)
        if problem:
            raise ColumnTypeError(f"tables.{table}.columns.{col}: {problem}")
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
    try:
        staged = staged.select(
            *casts,
            pl.col(LINE_COLUMN),
            pl.col(FILE_COLUMN),
            q_column.alias("__q_column"),
            q_reason.alias("__q_reason"),
            q_value.alias("__q_value"),
        )
    except pl.exceptions.PolarsError as err:  # a conversion the rules above did not foresee: name its column
        for col, dtype in contract.dtypes.items():
            try:
                staged.select(pl.col(_VAL + col).cast(dtype, strict=False))
            except pl.exceptions.PolarsError:
                given = staged.schema[_VAL + col]
                raise ColumnTypeError(f"tables.{table}.columns.{col}: gives {given}, which cannot become {dtype} "
                                      f"({engine_problem(err, 120)})") from None
        raise
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
