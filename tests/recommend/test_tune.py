import json

import mlflow
import yaml
from typer.testing import CliRunner

from mapwise.cli import app

from conftest import run_stage, tiny_project


def test_tune_runs_trials_as_mlflow_children_and_writes_best(tmp_path, monkeypatch):
    root = tiny_project(tmp_path, models=["gru"])
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tune"].update(model="gru", max_epochs=2, space={"lr": {"low": 0.001, "high": 0.02, "log": True},
                                                            "model.embedding_dim": {"choices": [8, 16]}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_stage(root, "split").returncode == 0
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["tune", "--trials", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads((root / "reports/tune.json").read_text())
    assert report["trials"] == 3 and set(report["best_params"]) == {"lr", "model.embedding_dim"}
    fragment = yaml.safe_load((root / "reports/tune.params.yaml").read_text())
    assert fragment["train"]["model"]["embedding_dim"] in (8, 16) and "lr" in fragment["train"]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mapwise").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == report["mlflow_parent_run"]]
    assert len(children) == 3


def test_tune_space_keys_are_checked():
    from mapwise.errors import MapwiseError
    from mapwise.params import parse_params

    from conftest import REPO

    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["tune"]["space"]["model.colour"] = {"choices": [1]}
    try:
        parse_params(data)
    except MapwiseError as err:
        assert "'model.colour' is not a train parameter" in str(err)
    else:
        raise AssertionError("an unknown search key was accepted")
