"""What every command module shares: the console, the one-line error wrapper, the --params option, report reading."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer

from mapwise.errors import MapwiseError
from mapwise.terminal import DataConsole, visible

console = DataConsole()
ParamsOption = Annotated[Path, typer.Option("--params", help="params file")]


def friendly(fn: Callable) -> Callable:
    """Turn MapwiseError into one line on stderr and exit status 1."""

    @wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MapwiseError as err:
            print(visible(f"mapwise: {err}"), file=sys.stderr)
            raise typer.Exit(1) from None

    return run


def read_json(path: Path) -> dict:
    """A stage's JSON report, or a MapwiseError saying why it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MapwiseError(f"{path}: cannot read the report ({err})") from None
