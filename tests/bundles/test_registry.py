"""The registry and the promotion gate on a real MLflow store (SQLite in a temp dir)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from conftest import worse_bundle
from mapwise.errors import MapwiseError
from mapwise.recommend.gate import gate
from mapwise.bundles.registry import CHALLENGER, CHAMPION, alias_version, apply, register_bundle, rollback_decision, versions
from mapwise.recommend.slices import customer_slices
from mapwise.recommend.split import load_split
from mapwise.tracking import tracking_uri


def _gate(params, **kw):
    split = load_split(params.split.out_dir)
    return gate(params.tracking, params.register.model_name, split, customer_slices(params), params.promote,
                params.evaluate, params.serve.cache_dir, **kw)


def _client(params) -> MlflowClient:
    uri = tracking_uri(params.tracking)
    return MlflowClient(uri, uri)


def test_register_sets_challenger_with_lineage_and_reuses_the_same_bundle(project):
    name = project.register.model_name
    folder = project.export.out_dir / "sasrec"
    version, created = register_bundle(project.tracking, name, folder)
    assert (version, created) == ("1", True)
    assert register_bundle(project.tracking, name, folder) == ("1", False)
    (row,) = versions(project.tracking, name)
    assert row["aliases"] == [CHALLENGER]
    meta = json.loads((folder / "metadata.json").read_text())
    tags = row["tags"]
    assert tags["train_run_id"] == meta["lineage"]["train_run_id"] == row["run_id"]  # logged on the training run
    assert tags["parity"] == "passed" and tags["model"] == "sasrec" and tags["git_commit"]
    run = _client(project).get_run(row["run_id"])
    assert run.data.metrics["test.all_items.ndcg_at_10"] == meta["metrics"]["test"]["all_items"]["ndcg@10"]


def test_gate_promotes_better_refuses_worse_and_records_every_decision(project, tmp_path):
    name = project.register.model_name
    trained = project.export.out_dir / "sasrec"
    worse = worse_bundle(trained, tmp_path / "worse")
    c = _client(project)

    register_bundle(project.tracking, name, worse)
    first = apply(project.tracking, _gate(project))
    assert (first.action, first.champion_after, first.reason) == ("promote", "1", "no champion yet")

    register_bundle(project.tracking, name, trained)
    better = apply(project.tracking, _gate(project))
    assert better.action == "promote" and better.champion_after == "2"
    assert better.figures["challenger"] - better.figures["champion"] >= project.promote.margin

    assert register_bundle(project.tracking, name, worse) == ("1", False)  # the worse one comes back as challenger
    refused = apply(project.tracking, _gate(project))
    assert refused.action == "refuse" and not refused.promoted
    assert refused.reason.startswith("not better by the margin: ndcg@10 (all_items)")
    assert alias_version(c, name, CHAMPION) == "2"

    decisions = c.search_runs([c.get_experiment_by_name(project.tracking.experiment).experiment_id],
                              "tags.`mapwise.stage` = 'promote'")
    assert sorted(r.data.tags["decision"] for r in decisions) == ["promote", "promote", "refuse"]
    recorded = next(r for r in decisions if r.data.tags["decision"] == "refuse")
    assert recorded.data.metrics["challenger"] == refused.figures["challenger"]
    assert c.get_model_version(name, "1").tags["gate.decision"] == "refuse"


def test_a_slice_regression_blocks_promotion(project, tmp_path):
    name = project.register.model_name
    register_bundle(project.tracking, name, worse_bundle(project.export.out_dir / "sasrec", tmp_path / "w"))
    apply(project.tracking, _gate(project))
    register_bundle(project.tracking, name, project.export.out_dir / "sasrec")
    strict = project.promote.model_copy(update={"margin": -1.0, "max_slice_drop": -1.0, "min_slice_customers": 1})
    decision = gate(project.tracking, name, load_split(project.split.out_dir), customer_slices(project), strict,
                    project.evaluate, project.serve.cache_dir)
    assert decision.action == "refuse" and decision.reason.startswith("slice regression beyond -1:")


def test_rollback_restores_the_previous_champion(project, tmp_path):
    name = project.register.model_name
    for folder in (project.export.out_dir / "gru", project.export.out_dir / "sasrec"):
        register_bundle(project.tracking, name, folder)
        apply(project.tracking, _gate(project, force=True))
    c = _client(project)
    assert alias_version(c, name, CHAMPION) == "2"
    back = apply(project.tracking, rollback_decision(project.tracking, name))
    assert (back.action, back.champion_before, back.champion_after) == ("rollback", "2", "1")
    assert alias_version(c, name, CHAMPION) == "1"
    with pytest.raises(MapwiseError, match="no previous champion"):
        rollback_decision(project.tracking, name)


def test_a_version_that_failed_parity_is_never_promoted(project, tmp_path):
    import shutil

    name = project.register.model_name
    bad = tmp_path / "bad"
    shutil.copytree(project.export.out_dir / "gru", bad)
    meta = json.loads((bad / "metadata.json").read_text())
    meta["parity"]["passed"] = False
    (bad / "metadata.json").write_text(json.dumps(meta))
    register_bundle(project.tracking, name, bad)
    decision = _gate(project, force=True)
    assert decision.action == "refuse" and "did not pass the ONNX parity check" in decision.reason


def test_model_commands(project, tmp_path):
    from typer.testing import CliRunner

    from mapwise.cli import app

    name = project.register.model_name
    runner = CliRunner()
    empty = runner.invoke(app, ["model", "list"])
    assert empty.exit_code == 1 and f"no registered model '{name}'" in empty.output
    for folder in (project.export.out_dir / "gru", project.export.out_dir / "sasrec"):
        register_bundle(project.tracking, name, folder)
        assert runner.invoke(app, ["model", "promote", "--force"]).exit_code == 0
    listed = runner.invoke(app, ["model", "list"], env={"COLUMNS": "160"})
    assert listed.exit_code == 0 and "champion" in listed.output and "sasrec" in listed.output
    back = runner.invoke(app, ["model", "rollback"], env={"COLUMNS": "160"})
    assert back.exit_code == 0 and "rollback" in back.output and "Champion: version 1" in back.output
    again = runner.invoke(app, ["model", "rollback"])
    assert again.exit_code == 1 and "no previous champion" in again.output
    missing = runner.invoke(app, ["model", "promote", "--version", "99"])
    assert missing.exit_code == 1 and "has no version 99" in missing.output
