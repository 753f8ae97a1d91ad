"""Recommend: `tune` searches the train stage's hyper-parameters with Optuna."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mapwise.cli.common import console, friendly
from mapwise.params import load_params

app = typer.Typer()


@app.command("tune")
@friendly
def tune_command(
    params_file: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml"),
    trials: Annotated[int | None, typer.Option(help="trials to run (default: tune.trials)")] = None,
) -> None:
    """Search train hyper-parameters with Optuna (space in params `tune`), each trial an MLflow child run.

    Needs the split stage's output. Writes the best values to tune.out and as a params fragment beside it.
    """
    import tempfile

    import yaml

    from mapwise.recommend.split import load_split
    from mapwise.recommend.tune import params_fragment, tune

    params = load_params(params_file)
    split = load_split(params.split.out_dir)
    with tempfile.TemporaryDirectory(prefix="mapwise-tune-") as work:
        result = tune(split, params, work_dir=Path(work), trials=trials)
    out = params.tune.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": params.tune.model, "best_val_ndcg@10": round(result.best_value, 5),
                               "best_params": result.best_params, "trials": result.trials, "pruned": result.pruned,
                               "mlflow_parent_run": result.parent_run_id}, indent=2) + "\n")
    fragment = out.with_suffix(".params.yaml")
    fragment.write_text(yaml.safe_dump(params_fragment(result.best_params), sort_keys=False))
    console.print(
        f"best validation NDCG@10 {result.best_value:.4f} after {result.trials} trials ({result.pruned} pruned).\n"
        f"Adopt it by merging {fragment} into params.yaml, then `dvc repro`.", highlight=False, soft_wrap=True,
    )
