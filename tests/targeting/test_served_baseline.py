"""Never serve less than a baseline: a neural propensity model that loses to its baseline, or an uplift policy that
loses to a fixed one, is replaced in the bundle by the baseline, which serving, the gate and the report then show."""

from __future__ import annotations

import html

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest

from mapwise.params import PropensityParams, UpliftParams
from mapwise.serving.targeting import TargetModel
from mapwise.targeting import uplift as up
from mapwise.targeting.datasets import LABEL, ROW_ID, SPLIT, TEST, TRAIN, VALIDATION
from mapwise.targeting.export import constant_graph, sklearn_graph, write_graph_bundle
from mapwise.targeting.gate import bundle_outputs
from mapwise.targeting.propensity import NEURAL, export_served, served, train_task
from mapwise.targeting.report import write_propensity_report

TINY_FIT = {"hidden": [4], "batch_size": 64, "lr": 1e-4, "max_epochs": 1, "patience": 1, "accelerator": "cpu", "devices": 1}


def _split(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice([TRAIN, VALIDATION, TEST], n, p=[0.6, 0.2, 0.2])


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """Labels a linear function of one feature plus noise; the network gets one epoch at a tiny learning rate."""
    rng = np.random.default_rng(0)
    n = 1500
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pl.DataFrame({ROW_ID: [f"r{i}" for i in range(n)], SPLIT: _split(n, rng), "x1": x1, "x2": x2,
                          "plan": rng.choice(["a", "b"], n), LABEL: (2 * x1 + rng.normal(size=n)) > 0})
    p = PropensityParams(tasks={"t": {"kind": "session_purchase"}}, bootstrap=50, fit=TINY_FIT)
    result = train_task(frame, exclude=[], p=p, sequence_length=0, use_sequence=False)
    folder = tmp_path_factory.mktemp("served") / "t"
    metadata = {"kind": "propensity", "model": "propensity-t", "task": "t", "encoder": result.encoder.to_dict(),
                "feature_baseline": result.test_inputs.x.mean(axis=0).tolist(), "sequence_length": 0}
    customers = frame.select(pl.col(ROW_ID).alias("customer_id"), "x1", "x2", "plan")
    parity = export_served(result, folder, metadata, customers, atol=1e-4)
    return result, folder, parity


def test_a_neural_model_that_loses_to_its_baseline_is_not_served(linear):
    result, folder, parity = linear
    chosen = result.report["served"]
    assert chosen["model"] == result.report["best_baseline"] != NEURAL and chosen["baseline"]
    assert result.report["neural_vs_best_baseline"]["ci"][0] <= 0
    assert chosen["reason"].startswith(f"{chosen['model']} serves, not the neural model")
    assert parity["passed"]
    meta, out = bundle_outputs(folder, result.test_frame)  # what the gate scores
    assert meta["served"] == chosen and meta["calibration"] == {"x": [], "y": []}
    sklearn = result.baselines[chosen["model"]].predict_proba(result.test_inputs.x)[:, 1]
    np.testing.assert_allclose(out, sklearn, atol=1e-5)
    model = TargetModel(folder)  # and serving, unchanged
    scored = model.propensity(model.from_ids(["r0", "r1"]))
    assert all(0 <= s["probability"] <= 1 and s["found"] for s in scored)


def test_the_report_page_says_what_serves(linear, tmp_path):
    result, _, _ = linear
    write_propensity_report({"tasks": {"t": {**result.report, "kind": "session_purchase"}}}, tmp_path, tmp_path / "p.html")
    page = (tmp_path / "p.html").read_text()
    assert html.escape(result.report["served"]["reason"]) in page


def test_the_neural_model_serves_only_above_the_interval():
    gap = {"baseline": "logistic", "roc_auc_gain": 0.02}
    assert served({**gap, "ci": [0.01, 0.03]}, private=False)["model"] == NEURAL
    assert served({**gap, "ci": [0.0, 0.03]}, private=False)["model"] == "logistic"
    assert served({**gap, "ci": [-0.01, 0.03]}, private=True)["model"] == NEURAL  # a baseline is not private
    assert served(None, private=False) == {"model": NEURAL, "baseline": False,
                                           "reason": "The neural model serves: no baseline was fitted to compare it with."}


@pytest.mark.parametrize("name", ["logistic", "gradient_boosting"])
def test_a_baseline_graph_reads_what_the_network_graph_reads(name):
    from mapwise.targeting.propensity import baseline

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    model = baseline(name, 0).fit(x, (x[:, 0] + rng.normal(size=300) > 0).astype(int))
    sess = ort.InferenceSession(sklearn_graph(model, 5, sequence_length=3).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("features", ["batch", 5]), ("sequence", ["batch", 3])]
    out = sess.run(None, {"features": x, "sequence": np.zeros((300, 3), dtype=np.int64)})[0]
    assert out.shape == (300,)
    np.testing.assert_allclose(out, model.predict_proba(x)[:, 1], atol=1e-5)


@pytest.fixture(scope="module")
def no_effect():
    """A randomised trial where no arm changes the outcome; a T-learner trained one epoch proposes a policy anyway."""
    rng = np.random.default_rng(2)
    n, arms = 1800, ["control", "mail_a", "mail_b"]
    arm = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (rng.random(n) < 0.2 + 0.1 * (x[:, 0] > 0)).astype(float)
    split = _split(n, rng)
    parts = {s: split == s for s in (TRAIN, VALIDATION, TEST)}
    p = UpliftParams(campaign_id="c", models=["t_learner"], baselines=[], bootstrap=200,
                     fit={**TINY_FIT, "lr": 0.01, "head": [4]})
    fitted = up.fit_outcome("visit", {s: x[r] for s, r in parts.items()}, {s: arm[r] for s, r in parts.items()},
                            {s: y[r] for s, r in parts.items()}, 3, p)
    shares = {a: float(np.mean(arm == i)) for i, a in enumerate(arms)}
    t = parts[TEST]
    u = up.uplifts(fitted.test["t_learner"])
    values = up.policy_values(u, y[t], arm[t], arms, shares, 0.02, 0, 0)
    versus = up.versus_fixed(u, y[t], arm[t], arms, shares, 0.02, values, p.bootstrap, 0)
    return {"x": x[t], "arms": arms, "values": values, "versus": versus, "served": up.served("t_learner", versus)}


def test_without_a_treatment_effect_the_best_fixed_policy_acts(no_effect, tmp_path):
    from mapwise.targeting.features import Encoder

    chosen, versus, values, arms = no_effect["served"], no_effect["versus"], no_effect["values"], no_effect["arms"]
    assert versus["ci"][0] <= 0 and chosen["baseline"] and chosen["model"] == versus["fixed"]
    assert chosen["reason"].startswith(f"The fixed policy {versus['fixed']} serves, not the t_learner policy")
    assert values[versus["fixed"]]["value"] == max(values[k]["value"] for k in up.fixed_policies(arms, 1))
    x = no_effect["x"]
    frame = pl.DataFrame({f"f{i}": x[:, i].astype(np.float64) for i in range(x.shape[1])})
    encoder = Encoder.fit(frame)
    constant = up.fixed_outcomes(values, arms, 0.02)
    encoded = encoder.transform(frame)
    metadata = {"kind": "uplift", "model": f"uplift-visit-{chosen['model']}", "outcome": "visit", "arms": arms,
                "contact_cost": 0.02, "encoder": encoder.to_dict(), "feature_baseline": encoded.mean(axis=0).tolist(),
                "served": chosen}
    checked = write_graph_bundle(tmp_path / "u", constant_graph(constant, encoded.shape[1]), [encoded],
                                 np.tile(constant, (len(encoded), 1)), metadata,
                                 frame.with_columns(pl.Series("customer_id", [f"c{i}" for i in range(len(x))])), None,
                                 against="the fixed policy's outcomes", atol=1e-4)
    assert checked["passed"]
    model = TargetModel(tmp_path / "u")
    actions = {r["action"] for r in model.next_best_action(model.from_ids([f"c{i}" for i in range(20)]))}
    expected = "no_contact" if versus["fixed"] == "send_none" else versus["fixed"].removeprefix("send_all_")
    assert actions == {expected}
