"""The targeting stages end to end on tiny generated data: propensity, uplift, the policy, export, the gate."""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
from pathlib import Path

import polars as pl
import pytest

from conftest import tiny_project, tiny_targeting


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny project with a trial, traits and sessions; the propensity and uplift stages run once, in-process
    (what they print in stdout.txt)."""
    from pipelines import propensity, uplift

    root = tiny_project(tmp_path_factory.mktemp("targeting"))
    tiny_targeting(root / "data" / "canonical")
    before = Path.cwd()
    os.chdir(root)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            assert propensity.main([]) == 0
            assert uplift.main([]) == 0
    finally:
        os.chdir(before)
    (root / "stdout.txt").write_text(printed.getvalue())
    return root


def test_propensity_reports_every_model_beside_the_baselines(trained):
    report = json.loads((trained / "reports" / "propensity.json").read_text())
    assert set(report["tasks"]) == {"shop", "trial", "web"}
    for name, task in report["tasks"].items():
        assert set(task["models"]) == {"neural", "logistic", "gradient_boosting"}, name
        for model in task["models"].values():
            test = model["test"]
            assert test["roc_auc_ci"][0] <= test["roc_auc"] <= test["roc_auc_ci"][1]
            assert len(test["lift"]) == 10 and test["lift"][-1]["cumulative_gain"] == pytest.approx(1.0)
        assert task["parity"]["passed"]
        assert (trained / "models" / "propensity" / name / "model.onnx").is_file()
        assert (trained / "reports" / "plots" / "propensity" / f"{name}_reliability.png").stat().st_size > 0
    web = report["tasks"]["web"]
    assert web["models"]["neural"]["test"]["roc_auc"] > 0.75  # purchases follow page value
    assert next(iter(web["explanations"]["global"])) == "page_value"
    assert report["tasks"]["shop"]["sequence_items"] > 0  # the next-purchase model reads the purchase sequence
    page = (trained / "reports" / "propensity.html").read_text()
    assert page.count("<h2>") == 3 and "Why this score" in page and page.count("data:image/png;base64") == 9
    printed = (trained / "stdout.txt").read_text()
    for name, task in report["tasks"].items():  # what serves, and why: in the report, the page, the summary, the bundle
        served = task["served"]
        assert html.escape(served["reason"]) in page and f"propensity {name}: {served['reason']}" in printed
        assert json.loads((trained / "models" / "propensity" / name / "metadata.json").read_text())["served"] == served


def test_uplift_finds_the_effect_and_the_policy_beats_sending_nothing(trained):
    report = json.loads((trained / "reports" / "uplift.json").read_text())
    assert report["arms"] == ["control", "mail_a", "mail_b"]
    visit = report["outcomes"]["visit"]
    assert set(visit["test"]) == {"t_learner", "tarnet", "dragonnet", "two_model", "class_transformation"}
    best = visit["test"][visit["selected"]]
    assert best["mean_qini"] > 0.05
    assert set(best["arms"]["mail_a"]) >= {"qini", "auuc", "uplift@10%", "uplift@20%", "uplift@30%", "qini_ci"}
    values = report["policy"]["values"]
    assert set(values) == {"model", "send_none", "random", "send_all_mail_a", "send_all_mail_b"}
    assert values["model"]["value"] > values["send_none"]["value"]
    assert 0 < values["model"]["contacted_share"] < 1  # it targets, rather than sending all or none
    meta = json.loads((trained / "models" / "uplift" / "metadata.json").read_text())
    assert meta["kind"] == "uplift" and meta["arms"] == ["control", "mail_a", "mail_b"] and meta["parity"]["passed"]
    assert (trained / "reports" / "plots" / "uplift" / "visit_mail_a_qini.png").is_file()
    page = (trained / "reports" / "uplift.html").read_text()
    examples = report["explanations"]["examples"]
    assert examples and all(e["action"] in ("mail_a", "mail_b") and e["reasons"] for e in examples)
    assert "Next best action" in page and "Why this action" in page and page.count("data:image/png;base64") == 3 * 2 + 2  # Qini per outcome and arm
    served, versus = report["served"], report["policy"]["versus_fixed"]
    assert served["model"] == (versus["fixed"] if versus["ci"][0] <= 0 else visit["selected"]) and meta["served"] == served
    assert html.escape(served["reason"]) in page and f"uplift: {served['reason']}" in (trained / "stdout.txt").read_text()


def test_stages_skip_tasks_whose_data_no_source_maps(tmp_path, monkeypatch):
    from pipelines import propensity, uplift

    root = tiny_project(tmp_path)
    monkeypatch.chdir(root)
    assert propensity.main([]) == 0 and uplift.main([]) == 0
    tasks = json.loads((root / "reports" / "propensity.json").read_text())["tasks"]
    assert tasks["trial"]["status"] == tasks["web"]["status"].replace("sessions", "campaign_exposures")
    assert tasks["web"]["status"] == "skipped: no sessions rows (no source maps them)"
    assert "models" in tasks["shop"]
    assert json.loads((root / "reports" / "uplift.json").read_text())["status"].startswith("skipped")


def test_a_named_campaign_that_is_not_there_is_an_error(trained, tmp_path, monkeypatch, capsys):
    import yaml

    from pipelines import uplift

    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["uplift"].update(campaign_id="trail", out_dir=str(tmp_path / "u"), report=str(tmp_path / "u.json"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(trained)
    assert uplift.main(["--params", str(tmp_path / "params.yaml")]) == 2
    assert "campaign 'trail' has no exposures with a customer (campaigns: trial)" in capsys.readouterr().err


def test_the_gate_promotes_a_better_challenger_on_the_same_rows(trained, tmp_path):
    from mapwise.params import TrackingParams
    from mapwise.bundles.registry import apply, client, register_bundle
    from mapwise.targeting.gate import bundle_outputs, target_gate

    tracking = TrackingParams(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="gate")
    bundle = trained / "models" / "propensity" / "web"
    test = pl.read_parquet(bundle / "test.parquet")
    version, _ = register_bundle(tracking, "mapwise-propensity-web", bundle)
    first = apply(tracking, target_gate(tracking, "mapwise-propensity-web", test, 0.0, tmp_path / "cache"))
    served = json.loads((bundle / "metadata.json").read_text())["served"]
    tags = client(tracking).get_model_version("mapwise-propensity-web", version).tags
    assert (tags["served"], tags["served.baseline"], tags["served.reason"]) == (
        served["model"], str(served["baseline"]).lower(), served["reason"])
    why = f"; version {version} serves a baseline: {served['reason']}" if served["baseline"] else ""
    assert (first.action, first.reason) == ("promote", "no champion yet" + why)
    _, probabilities = bundle_outputs(bundle, test)
    assert probabilities.shape == (test.height,) and ((0 <= probabilities) & (probabilities <= 1)).all()
    again = target_gate(tracking, "mapwise-propensity-web", test, 0.0, tmp_path / "cache")
    assert again.action == "keep"


def test_training_is_reproducible_from_the_seed():
    import numpy as np

    from mapwise.params import FitParams
    from mapwise.targeting.fitting import fit, predict
    from mapwise.targeting.networks import ArmsNet

    rng = np.random.default_rng(0)
    x, arm, y = rng.normal(size=(600, 5)).astype(np.float32), rng.integers(0, 3, 600), (rng.random(600) < 0.3).astype(np.float32)
    p = FitParams(hidden=[8], head=[4], batch_size=64, max_epochs=2, accelerator="cpu", devices=1)
    runs = [predict(fit(lambda: ArmsNet("dragonnet", 5, 3, [8], [4], 0.2), [x, arm, y], [x, arm, y], p, binary=True,
                        arms=True, seed=seed)[0], x) for seed in (3, 3, 4)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
