"""Params: `params check` validates params.yaml against the typed model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mapwise.cli.common import console, friendly
from mapwise.params import load_params

app = typer.Typer()
params_app = typer.Typer(help="Check params.yaml.", no_args_is_help=True)
app.add_typer(params_app, name="params")


@params_app.command("check")
@friendly
def params_check(path: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml")) -> None:
    """Validate params.yaml against the typed model."""
    params = load_params(path)
    console.print(f"{path}: ok (sections: {', '.join(type(params).model_fields)})", highlight=False, soft_wrap=True)
