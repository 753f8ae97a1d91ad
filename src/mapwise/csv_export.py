"""CSV for people's tools: every CSV mapwise writes (audiences, synthetic profiles) goes through `write_csv`, which
keeps a spreadsheet from reading a cell as a formula (OWASP, CSV injection): a text cell that starts with
`= + - @`, a tab or a carriage return gets a leading `'`, which spreadsheets show as text and do not run."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import polars as pl

_FORMULA_START = "=+-@\t\r"  # a cell starting with one of these is read as a formula
_STARTS_A_FORMULA = "^[" + "".join(f"\\x{ord(ch):02x}" for ch in _FORMULA_START) + "]"  # the same, for polars


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with each text cell a spreadsheet would run as a formula prefixed by `'` (other cells unchanged)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_STARTS_A_FORMULA)).then(pl.lit("'") + pl.col(name)).otherwise(pl.col(name))
        .alias(name) for name in text
    )


def write_csv(frame: pl.DataFrame, target: Path | BinaryIO, *, include_header: bool = True) -> None:
    """Write `frame` as CSV, neutralised; header names are neutralised alike."""
    safe = neutralised(frame)
    safe = safe.rename({name: f"'{name}" for name in safe.columns if name[:1] and name[0] in _FORMULA_START})
    safe.write_csv(target, include_header=include_header)
