"""Stage reports: `report ingest` and `report evaluate` summarise the JSON reports the stages write."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mapwise.cli.common import console, friendly, read_json
from mapwise.report import print_evaluate_report, print_ingest_report

app = typer.Typer()
report_app = typer.Typer(help="Show stage reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("ingest")
@friendly
def report_ingest(path: Annotated[Path, typer.Argument(help="report file")] = Path("reports/ingest.json")) -> None:
    """Summarise an ingest report: rows read, accepted and quarantined per source and table."""
    print_ingest_report(read_json(path), console)


@report_app.command("evaluate")
@friendly
def report_evaluate(path: Annotated[Path, typer.Argument(help="report file")] = Path("reports/evaluate.json")) -> None:
    """The quality table: every model and baseline, NDCG@10 with its bootstrap interval."""
    print_evaluate_report(read_json(path), console=console)
