"""Sources: check and try mappings (`mapping check`, `mapping preview`) and show the canonical tables (`contracts`)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from mapwise.cli.common import console, friendly
from mapwise.params import load_params
from mapwise.sources.contracts import CONTRACTS
from mapwise.sources.ingest import DUPLICATE_ROW, Limits, ingest_source
from mapwise.sources.mapping.expressions import FILE_COLUMN, LINE_COLUMN
from mapwise.sources.mapping.load import load_mapping
from mapwise.terminal import visible

app = typer.Typer()
mapping_app = typer.Typer(help="Check and try source mappings.", no_args_is_help=True)
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("check")
@friendly
def mapping_check(paths: Annotated[list[Path], typer.Argument(help="mapping YAML files")]) -> None:
    """Validate mapping files: keys, tables, columns and expressions."""
    for path in paths:
        mapping = load_mapping(path)
        tables = ", ".join(mapping.tables)
        console.print(f"{path}: ok ({mapping.name} -> {tables})", highlight=False, soft_wrap=True)


@mapping_app.command("preview")
@friendly
def mapping_preview(
    mapping_file: Annotated[Path, typer.Argument(help="mapping YAML file")],
    data_file: Annotated[Path, typer.Argument(help="one raw file of that source")],
    rows: Annotated[int, typer.Option(help="rows to show per table")] = 5,
    params_file: Annotated[Path, typer.Option("--params", help="params file (ingest limits; defaults without it)")] = Path(
        "params.yaml"),
) -> None:
    """Apply a mapping to one file and show what each table would get and what it would reject.

    The file goes through ingest's own code (parsing, casts, filters, duplicates, contract checks), so the
    counts are the ones ingest would report for it alone. Pseudonyms use a throwaway key, so they differ
    from the pipeline's.
    """
    mapping = load_mapping(mapping_file)
    limits = Limits.of(load_params(params_file).ingest if params_file.exists() else None)
    key = secrets.token_bytes(32)
    accepted, _, report = ingest_source([(data_file, data_file.name)], mapping, key, {}, limits)
    with pl.Config(tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40):
        for table, counts in report["tables"].items():
            console.rule(f"{table}: {counts['accepted']:,} accepted, {counts['quarantined']:,} rejected of "
                         f"{counts['read']:,}")
            shown = accepted[table].drop(LINE_COLUMN, FILE_COLUMN, strict=False).head(rows)
            print(shown.with_columns(pl.col(pl.String).map_elements(visible, return_dtype=pl.String)))
            for reason, n in counts["reasons"].items():
                print(f"  {n:>9,}  {visible(reason)}")
            if counts["reasons"].get(DUPLICATE_ROW) and mapping.tables[table].duplicates == "quarantine":
                print(f"  ('{DUPLICATE_ROW}': identical to an earlier row; if such rows are distinct events, e.g. "
                      f"repeat purchases, set tables.{table}.duplicates: keep)")


@app.command("contracts")
def contracts(table: Annotated[str | None, typer.Argument(help="one table; all when omitted")] = None) -> None:
    """Show the canonical tables: columns, types, nullability and checks."""
    if table is not None and table not in CONTRACTS:
        print(f"mapwise: unknown table '{table}' (known: {', '.join(CONTRACTS)})", file=sys.stderr)
        raise typer.Exit(1)
    for contract in CONTRACTS.values() if table is None else [CONTRACTS[table]]:
        out = Table(title=f"{contract.name} ({contract.kind}, key {contract.key})", title_justify="left")
        for name in ("column", "type", "required", "checks"):
            out.add_column(name, overflow="fold")  # at 80 columns (logs) a long name folds, never ends in "…"
        for name, col in contract.schema.columns.items():
            checks = ", ".join(str(ch.error or ch.name) for ch in col.checks)
            unique = ["unique"] if col.unique else []
            out.add_row(name, str(col.dtype), "yes" if not col.nullable else "", ", ".join([*unique, checks]).strip(", "))
        console.print(out)
