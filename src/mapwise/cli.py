"""The `mapwise` command line: check and try mappings, inspect contracts, params and reports.

Pipeline stages run through `dvc repro` (or `python pipelines/<verb>.py`); this tool helps write
and inspect what they use.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from mapwise.contracts import CONTRACTS
from mapwise.errors import MapwiseError
from mapwise.ingest import validate_rows
from mapwise.mapping.apply import map_file
from mapwise.mapping.expressions import FILE_COLUMN, LINE_COLUMN
from mapwise.mapping.readers import decompress, read_raw
from mapwise.mapping.spec import load_mapping
from mapwise.params import load_params
from mapwise.report import print_ingest_report

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
mapping_app = typer.Typer(help="Check and try source mappings.", no_args_is_help=True)
report_app = typer.Typer(help="Show stage reports.", no_args_is_help=True)
params_app = typer.Typer(help="Check params.yaml.", no_args_is_help=True)
app.add_typer(mapping_app, name="mapping")
app.add_typer(report_app, name="report")
app.add_typer(params_app, name="params")
console = Console()


def _friendly(fn: Callable) -> Callable:
    """Turn MapwiseError into one line on stderr and exit status 1."""

    @wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MapwiseError as err:
            print(f"mapwise: {err}", file=sys.stderr)
            raise typer.Exit(1) from None

    return run


@mapping_app.command("check")
@_friendly
def mapping_check(paths: Annotated[list[Path], typer.Argument(help="mapping YAML files")]) -> None:
    """Validate mapping files: keys, tables, columns and expressions."""
    for path in paths:
        mapping = load_mapping(path)
        tables = ", ".join(mapping.tables)
        console.print(f"{path}: ok ({mapping.name} -> {tables})", highlight=False, soft_wrap=True)


@mapping_app.command("preview")
@_friendly
def mapping_preview(
    mapping_file: Annotated[Path, typer.Argument(help="mapping YAML file")],
    data_file: Annotated[Path, typer.Argument(help="one raw file of that source")],
    rows: Annotated[int, typer.Option(help="rows to show per table")] = 5,
) -> None:
    """Apply a mapping to one file and show what each table would get and what it would reject.

    Pseudonyms use a throwaway key, so they differ from the pipeline's.
    """
    mapping = load_mapping(mapping_file)
    try:
        data = data_file.read_bytes()
    except OSError as err:
        raise MapwiseError(f"{data_file}: cannot read ({err.strerror})") from None
    raw = read_raw(data_file, decompress(data_file, data, mapping.read.compression), mapping.read)
    key = secrets.token_bytes(32)
    mapped = map_file(raw, mapping, path=data_file, label=data_file.name, file_id="preview", key=key)
    with pl.Config(tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40):
        for table, candidates in mapped.candidates.items():
            good, invalid = validate_rows(candidates, CONTRACTS[table], mapping.name)
            bad = pl.concat([mapped.rejected[table], invalid])
            console.rule(f"{table}: {good.height:,} accepted, {bad.height:,} rejected of {raw.rows_read:,}")
            print(good.drop(LINE_COLUMN, FILE_COLUMN).head(rows))
            if bad.height:
                print(bad.group_by("column", "reason").len().sort("len", descending=True))


@app.command("contracts")
def contracts(table: Annotated[str | None, typer.Argument(help="one table; all when omitted")] = None) -> None:
    """Show the canonical tables: columns, types, nullability and checks."""
    if table is not None and table not in CONTRACTS:
        print(f"mapwise: unknown table '{table}' (known: {', '.join(CONTRACTS)})", file=sys.stderr)
        raise typer.Exit(1)
    for contract in CONTRACTS.values() if table is None else [CONTRACTS[table]]:
        out = Table(title=f"{contract.name} ({contract.kind}, key {contract.key})", title_justify="left")
        for name in ("column", "type", "required", "checks"):
            out.add_column(name)
        for name, col in contract.schema.columns.items():
            checks = ", ".join(str(ch.error or ch.name) for ch in col.checks)
            unique = ["unique"] if col.unique else []
            out.add_row(name, str(col.dtype), "yes" if not col.nullable else "", ", ".join([*unique, checks]).strip(", "))
        console.print(out)


@report_app.command("ingest")
@_friendly
def report_ingest(path: Annotated[Path, typer.Argument(help="report file")] = Path("reports/ingest.json")) -> None:
    """Summarise an ingest report: rows read, accepted and quarantined per source and table."""
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MapwiseError(f"{path}: cannot read the report ({err})") from None
    print_ingest_report(report, console)


@params_app.command("check")
@_friendly
def params_check(path: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml")) -> None:
    """Validate params.yaml against the typed model."""
    params = load_params(path)
    console.print(f"{path}: ok (sections: {', '.join(type(params).model_fields)})", highlight=False, soft_wrap=True)
