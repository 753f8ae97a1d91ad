"""Never serve less than a baseline: where no learned recommender beats the best baseline, the baseline serves."""

from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from conftest import run_stage, tiny_project
from mapwise.cli import app
from mapwise.params import load_params
from mapwise.bundles.registry import register_bundle


def test_where_no_learned_model_wins_the_best_baseline_is_registered_promoted_and_said(tmp_path, monkeypatch):
    # every customer re-buys two favourite items over and over: their own history says everything, and a GRU
    # trained for one step knows nothing
    root = tiny_project(tmp_path / "shop", {"customers": 120, "items": 30, "steps": 30}, models=["gru"], max_epochs=1,
                        max_steps=1, refit=False)
    events = root / "data" / "canonical" / "events.parquet"
    favourite = (pl.col("customer_id").rank("dense") * 2 + pl.int_range(pl.len()).over("customer_id") % 2) % 30
    pl.read_parquet(events).with_columns(pl.format("i{}", favourite).alias("item_id")).write_parquet(events)
    for verb in ("split", "train", "evaluate", "export", "register", "promote"):
        done = run_stage(root, verb)
        assert done.returncode == 0, f"{verb}: {done.stderr[-3000:]}"
    register = json.loads((root / "reports" / "register.json").read_text())
    served = register["served"]
    assert register["best_learned"] == "gru" and served["baseline"] is True
    assert register["model"] == served["model"] in ("personal_popularity", "recency_frequency")
    assert served["reason"].startswith(f"No learned model beats the best baseline, so {served['model']} serves: gru")
    promote = json.loads((root / "reports" / "promote.json").read_text())
    assert promote["action"] == "promote" and promote["champion_after"] == register["version"]
    assert served["reason"] in promote["reason"]
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    listed = CliRunner().invoke(app, ["model", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and f"so {served['model']} serves" in " ".join(listed.output.split())

    # the learned model registered by hand, tagged as losing to the baseline: the gate refuses it
    params = load_params(root / "params.yaml")
    loser = {"model": "gru", "baseline": False, "beats_baseline": False, "reason": "gru loses to personal_popularity"}
    version, _ = register_bundle(params.tracking, params.register.model_name, params.export.out_dir / "gru", loser)
    refused = CliRunner().invoke(app, ["model", "promote"])
    assert refused.exit_code == 0, refused.output
    text = " ".join(refused.output.split())
    assert "refuse" in text and "does not beat the best baseline" in text and f"Champion: version {register['version']}" in text
