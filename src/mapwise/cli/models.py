"""Models: the `model` group (list, promote, rollback) over the registry and the promotion gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.params import load_params
from mapwise.terminal import visible

app = typer.Typer()
model_app = typer.Typer(help="The model registry: versions, promotion through the gate, rollback.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("list")
@friendly
def model_list(params_file: ParamsOption = Path("params.yaml")) -> None:
    """Every registered version: aliases, architecture, gate decision and lineage."""
    from datetime import UTC, datetime

    from mapwise.bundles.registry import SERVED_REASON, versions

    params = load_params(params_file)
    name = params.register.model_name
    out = Table(title=f"{name} (ndcg: validation NDCG@10)", title_justify="left")
    # 80 columns (logs): names and hashes stay whole (one alias a line), only the time wraps, never a "…"
    for column in ("ver", "aliases", "model", "when", "ndcg", "gate", "data", "commit"):
        out.add_column(column, overflow="fold", no_wrap=column != "when")
    for v in versions(params.tracking, name):
        t = v["tags"]
        when = datetime.fromtimestamp(v["created"] / 1000, UTC).strftime("%m-%d %H:%M")
        out.add_row(v["version"], "\n".join(v["aliases"]) or "–", t.get("model", "?"), when, t.get("val_ndcg_at_10", "?")[:6],
                    t.get("gate.decision", "–"),
                    t.get("data_version", "?")[:8], t.get("git_commit", "?")[:7])
    console.print(out)
    champion = next((v for v in versions(params.tracking, name) if "champion" in v["aliases"]), None)
    if champion and champion["tags"].get(SERVED_REASON):
        console.print(f"Champion, version {champion['version']}: {champion['tags'][SERVED_REASON]}", soft_wrap=True)
    console.print("Gate reasons and figures: reports/promote.json, and the MLflow runs tagged mapwise.stage=promote.")


def _decide_and_apply(params, decision) -> None:
    from mapwise.bundles.registry import apply

    apply(params.tracking, decision)
    style = "green" if decision.promoted else "yellow"
    console.print(Text.assemble((decision.action, style), f": {visible(decision.reason)}. Champion: version "
                                f"{decision.champion_after}."), soft_wrap=True)


@model_app.command("promote")
@friendly
def model_promote(
    params_file: ParamsOption = Path("params.yaml"),
    version: Annotated[str | None, typer.Option(help="version to judge (default: the challenger)")] = None,
    force: Annotated[bool, typer.Option("--force", help="skip the quality gate (parity is still required)")] = False,
) -> None:
    """Run the promotion gate: the challenger becomes champion only if it beats it on the same test data."""
    from mapwise.recommend.gate import gate
    from mapwise.recommend.slices import customer_slices
    from mapwise.recommend.split import load_split

    params = load_params(params_file)
    split = load_split(params.split.out_dir)
    decision = gate(params.tracking, params.register.model_name, split, {} if force else customer_slices(params),
                    params.promote, params.evaluate, params.serve.cache_dir, version=version, force=force)
    _decide_and_apply(params, decision)


@model_app.command("rollback")
@friendly
def model_rollback(params_file: ParamsOption = Path("params.yaml")) -> None:
    """Give `champion` back to the previous champion (recorded like any promotion)."""
    from mapwise.bundles.registry import rollback_decision

    params = load_params(params_file)
    _decide_and_apply(params, rollback_decision(params.tracking, params.register.model_name))
