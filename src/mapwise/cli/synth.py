"""Synth: `synth` samples synthetic customer profiles from the trained generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.errors import MapwiseError
from mapwise.params import load_params

app = typer.Typer()


@app.command("synth")
@friendly
def synth_command(
    rows: Annotated[int, typer.Option("--rows", min=1, help="synthetic profiles to write")],
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: synth.out)")] = None,
    seed: Annotated[int, typer.Option(help="sampling seed: the same seed gives the same rows")] = 0,
    suppress: Annotated[bool, typer.Option("--suppress-small-groups", help="drop rows in groups smaller than k instead "
                                                                          "of refusing (privacy.k_anonymity)")] = False,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Write synthetic customer profiles from the GAN the synth stage trained: they pass the profile contract, none is
    a near-copy of a real customer, and the table must be k-anonymous over privacy.k_anonymity's quasi-identifiers."""
    from mapwise.atomic import replacing
    from mapwise.csv_export import write_csv
    from mapwise.privacy.kanon import enforce_k_anonymity
    from mapwise.synth.gan import CTGAN
    from mapwise.synth.profiles import sample_profiles

    params = load_params(params_file)
    s = params.synth
    if s is None:
        raise MapwiseError(f"{params_file}: no `synth` section")
    out = out or s.out
    if out.suffix not in (".parquet", ".csv"):
        raise MapwiseError(f"{out}: the file must end in .parquet or .csv")
    try:
        meta = json.loads((s.out_dir / "synth.json").read_text())
        model = CTGAN.load(s.out_dir)
        real = pl.read_parquet(params.profile.out)
    except (OSError, ValueError, pl.exceptions.PolarsError) as err:
        raise MapwiseError(f"no trained generator in {s.out_dir} or no profiles in {params.profile.out} "
                           f"({type(err).__name__}); run `dvc repro synth` first") from None
    profiles, drawn = sample_profiles(model, rows, real, meta["threshold"], seed=seed)  # near no real customer at all
    k = params.privacy.k_anonymity
    profiles, checked = enforce_k_anonymity(profiles, k.quasi_identifiers, k.k, "suppress" if suppress else k.on_fail,
                                            f"the synthetic table {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as partial:
        write_csv(profiles, partial) if out.suffix == ".csv" else profiles.write_parquet(partial)
    suppressed = checked.get("suppressed_rows", 0)
    console.print(f"{profiles.height:,} synthetic profiles -> {out} ({drawn['dropped']:,} near-copies redrawn"
                  + (f", {suppressed:,} rows in groups smaller than k={k.k} dropped" if suppressed else "")
                  + ")", highlight=False, soft_wrap=True)
