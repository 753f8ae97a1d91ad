"""CSV for people's tools: every CSV mapwise writes (audiences, synthetic profiles) goes through `write_csv`, which
keeps a spreadsheet from reading a cell as a formula (OWASP, CSV injection): a text cell that starts with
`= + - @`, a tab or a carriage return gets a leading `'`, which spreadsheets show as text and do not run."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import polars as pl

_FORMULA_START = r"^[=+\-@\t\r]"


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with each text cell a spreadsheet would run as a formula prefixed by `'` (other cells unchanged)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_START)).then(pl.lit("'") + pl.col(name)).otherwise(pl.col(name))
        .alias(name) for name in text
    )


def write_csv(frame: pl.DataFrame, target: Path | BinaryIO, *, include_header: bool = True) -> None:
    """Write `frame` as CSV, neutralised; header names are neutralised alike."""
    safe = neutralised(frame)
    safe = safe.rename({name: f"'{name}" for name in safe.columns if _starts_a_formula(name)})
    safe.write_csv(target, include_header=include_header)


def _starts_a_formula(text: str) -> bool:
    return bool(text) and text[0] in "=+-@\t\r"
