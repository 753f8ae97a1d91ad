"""Readable terminal summaries of stage reports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

_TOP_REASONS = 3


def print_ingest_report(report: dict, console: Console | None = None) -> None:
    """One row per source and table (read, accepted, quarantined), then the main reasons."""
    console = console or Console()
    table = Table(title="ingest: rows per source and table", title_justify="left")
    table.add_column("source")
    table.add_column("table")
    for name in ("read", "accepted", "quarantined"):
        table.add_column(name, justify="right")
    notes = []
    for source, detail in report["sources"].items():
        for name, counts in detail["tables"].items():
            table.add_row(source, name, *(f"{counts[k]:,}" for k in ("read", "accepted", "quarantined")))
            for reason, n in list(counts["reasons"].items())[:_TOP_REASONS]:
                notes.append(f"  {source} -> {name}: {reason} ({n:,})")
        notes += [f"  {source}: {f['path']} {f['status']}" for f in detail["files"] if f["status"] != "ingested"]
    console.print(table)
    if notes:
        console.print("quarantined, main reasons (all rows and reasons in the quarantine tables):")
        console.print("\n".join(notes), markup=False, highlight=False)
    rows = ", ".join(f"{name} {t['rows']:,}" for name, t in report["tables"].items())
    console.print(f"canonical rows: {rows}", highlight=False, soft_wrap=True)
