"""Audiences for campaign tools, written in batch: `target` (next best action by uplift) and `score` (top-K
recommendations), both released through the privacy checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from mapwise import columns as c
from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.errors import MapwiseError
from mapwise.params import load_params
from mapwise.privacy.release import context_tables, held_back, release

app = typer.Typer()


@app.command("target")
@friendly
def target_command(
    params_file: ParamsOption = Path("params.yaml"),
    model: Annotated[str | None, typer.Option(help="models:/<name>@<alias> or an uplift bundle folder "
                                                    "(default: the champion of <register.target_prefix>-uplift)")] = None,
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: target.out)")] = None,
) -> None:
    """Write the next best action for every customer (an arm, or no contact) with its expected uplift: an audience
    for a campaign tool."""
    from mapwise.serving.keepers import source_from
    from mapwise.serving.audience import next_best_actions, write_actions
    from mapwise.serving.targeting import TargetModel, uplift_model_name

    params = load_params(params_file)
    source = source_from(params, model or f"models:/{uplift_model_name(params.register.target_prefix)}@champion")
    version = source.latest()
    if version is None:
        raise MapwiseError(f"{source.description}: no such model version; run `dvc repro` first")
    out = out or params.target.out
    customers, context = context_tables(params.ingest.canonical_dir, params.profile.out)
    actions, held = release(next_best_actions(TargetModel(source.fetch(version))), params.privacy, customers=customers,
                         context=context, what=f"the audience {out}")
    done = write_actions(actions, out)
    actions = ", ".join(f"{k} {v:,}" for k, v in done["actions"].items())
    console.print(f"{done['customers']:,} customers -> {done['out']} ({actions}; model {source.description}, "
                  f"version {version}){held_back(held)}", highlight=False, soft_wrap=True)


@app.command("score")
@friendly
def score_command(
    params_file: ParamsOption = Path("params.yaml"),
    model: Annotated[str | None, typer.Option(help="models:/<name>@<alias> or a bundle folder (default: champion)")] = None,
    k: Annotated[int | None, typer.Option(help="items per customer (default: score.k)")] = None,
    segment: Annotated[str | None, typer.Option(help="only this RFM segment (from the profiles)")] = None,
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: score.out)")] = None,
    include_purchased: Annotated[bool, typer.Option("--include-purchased", help="allow items already bought")] = False,
) -> None:
    """Write top-K recommendations for every customer (or a segment): an audience for a campaign tool."""
    from mapwise.serving.audience import segment_customers, write_audience
    from mapwise.bundles.format import load_bundle
    from mapwise.serving.recommendations import Recommender
    from mapwise.serving.keepers import source_from

    params = load_params(params_file)
    source = source_from(params, model or params.serve.model)
    version = source.latest()
    if version is None:
        raise MapwiseError(f"{source.description}: no such model version; run `dvc repro` first")
    rec = Recommender(load_bundle(source.fetch(version)), params.serve.retrieval)
    chosen = segment_customers(params.profile.out, segment) if segment else sorted(rec.customers)
    p = params.score
    out = out or p.out
    tables = context_tables(params.ingest.canonical_dir, params.profile.out)
    allowed, held = release(pl.DataFrame({c.CUSTOMER_ID: chosen}, schema={c.CUSTOMER_ID: pl.String}), params.privacy,
                            customers=tables[0], context=tables[1], what=f"the audience {out}")
    done = write_audience(rec, allowed[c.CUSTOMER_ID].to_list(), k or p.k, out,
                          exclude_purchased=p.exclude_purchased and not include_purchased)
    console.print(f"{done['rows']:,} recommendations for {done['customers']:,} customers -> {done['out']} "
                  f"(model {source.description}, version {version}){held_back(held)}", highlight=False, soft_wrap=True)
