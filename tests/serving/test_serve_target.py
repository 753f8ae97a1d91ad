"""The targeting endpoints: propensity scores and next best actions from tiny bundles built here (no pipeline)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import KEY, REPO
from mapwise.params import ServeParams, parse_params, read_params
from mapwise.privacy.pseudonym import pseudonym
from mapwise.serving.app import build, create_app
from mapwise.serving.keepers import FolderSource, Keeper
from mapwise.serving.target_keeper import TargetKeeper
from mapwise.targeting.export import OUTCOMES, PROBABILITY, write_target_bundle
from mapwise.targeting.features import Encoder
from mapwise.targeting.networks import ArmsNet, PropensityNet

N = 40
ITEMS = ["i1", "i2", "i3", "i4"]
CALIBRATION = {"x": [0.0, 0.3, 0.6, 1.0], "y": [0.05, 0.2, 0.7, 0.95]}
ARMS = ["control", "email", "sms"]


def _features() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    spend = rng.gamma(2.0, 20.0, N)
    spend[::7] = np.nan
    return pl.DataFrame({
        "age": rng.normal(40, 10, N), "spend": spend, "visits": rng.integers(0, 10, N),
        "segment": rng.choice(["a", "b", "c"], N).tolist(),
    }).with_columns(pl.col("spend").fill_nan(None))


def _customers(frame: pl.DataFrame, sequences: list[list[str]] | None = None) -> pl.DataFrame:
    ids = pl.Series("customer_id", [pseudonym(f"c{i}", KEY) for i in range(N)])
    out = frame.with_columns(ids).select("customer_id", *frame.columns)
    return out.with_columns(pl.Series("sequence", sequences, dtype=pl.List(pl.String))) if sequences else out


def _sequences() -> list[list[str]]:
    rng = np.random.default_rng(1)
    return [rng.choice(ITEMS + ["unknown"], rng.integers(0, 5)).tolist() for _ in range(N)]


def _sequence_matrix(sequences: list[list[str]], length: int) -> np.ndarray:
    index = {item: i + 1 for i, item in enumerate(ITEMS)}
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, items in enumerate(sequences):
        known = [index[i] for i in items if i in index][-length:]
        if known:
            out[row, length - len(known):] = known
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A propensity bundle (calibrated), one reading a sequence too, an uplift bundle and a costly copy of it."""
    root = tmp_path_factory.mktemp("targets")
    frame = _features()
    encoder = Encoder.fit(frame)
    x = encoder.transform(frame)
    baseline = x.mean(axis=0)
    common = {"encoder": encoder.to_dict(), "feature_baseline": baseline.tolist(), "metrics": {"test": {"roc_auc": 0.7}}}
    torch.manual_seed(0)
    buy = PropensityNet(x.shape[1], [8], 0.0).eval()
    write_target_bundle(root / "buy", buy, [x], {**common, "kind": "propensity", "model": "propensity-buy", "task": "buy",
                                                 "calibration": CALIBRATION, "sequence_length": 0},
                        _customers(frame), None, binary=True, output=PROBABILITY, sequence_length=0, atol=1e-4)
    sequences = _sequences()
    seq = _sequence_matrix(sequences, 3)
    nxt = PropensityNet(x.shape[1], [8], 0.0, n_items=len(ITEMS), embedding_dim=4).eval()
    write_target_bundle(root / "next", nxt, [x, seq], {**common, "kind": "propensity", "model": "propensity-next",
                                                       "task": "next", "calibration": {"x": [], "y": []},
                                                       "sequence_length": 3},
                        _customers(frame, sequences), ITEMS, binary=True, output=PROBABILITY, sequence_length=3, atol=1e-4)
    arms = ArmsNet("t_learner", x.shape[1], len(ARMS), [], [], 0.0).eval()  # a linear model per arm
    with torch.no_grad():  # older customers answer email, younger ones sms, the middle neither: every action occurs
        assert encoder.columns[0] == "age"
        for head, age in zip(arms.heads, (0.0, 1.5, -1.5)):
            head[0].weight.mul_(0.3)
            head[0].weight[0, 0] = age
            head[0].bias.zero_()
    write_target_bundle(root / "uplift", arms, [x], {**common, "kind": "uplift", "model": "uplift-conversion",
                                                     "outcome": "conversion", "arms": ARMS, "contact_cost": 0.01},
                        _customers(frame), None, binary=True, output=OUTCOMES, sequence_length=0, atol=1e-4)
    shutil.copytree(root / "uplift", root / "costly")
    meta = json.loads((root / "costly/metadata.json").read_text())
    (root / "costly/metadata.json").write_text(json.dumps({**meta, "contact_cost": 2.0}))
    return {"root": root, "frame": frame, "x": x, "baseline": baseline, "buy": buy, "next": nxt, "seq": seq, "arms": arms,
            "sequences": sequences}


def _app(root, **targets) -> TestClient:
    keeper = Keeper(FolderSource(root / "no-recommender"))  # none: the targeting endpoints do without
    keeper.refresh()
    kept = TargetKeeper({name: FolderSource(root / folder) for name, folder in targets.items()})
    assert kept.refresh() and not kept.refused
    return TestClient(create_app(keeper, KEY, ServeParams(max_list_items=50, max_explain_rows=10), kept))


@pytest.fixture(scope="module")
def client(bundles):
    return _app(bundles["root"], **{"propensity/buy": "buy", "propensity/next": "next", "uplift": "uplift"})


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _torch(net, *arrays) -> np.ndarray:
    with torch.no_grad():
        return net(*(torch.as_tensor(a) for a in arrays)).double().numpy()


def _rows(frame: pl.DataFrame, rows: range) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None} for r in frame[list(rows)].iter_rows(named=True)]


def assert_error(done, status: int) -> str:
    assert done.status_code == status, (done.status_code, done.text)
    body = done.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    return body["error"]


def test_propensity_by_customer_id_matches_the_torch_model_calibrated(client, bundles):
    ids = [f"c{i}" for i in range(0, N, 3)] + ["nobody"]
    done = client.post("/scores/propensity", json={"task": "buy", "customer_ids": ids})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["task"] == "buy" and body["model"] == {"name": "buy", "version": "local"}
    results = body["results"]
    assert [r["customer_id"] for r in results] == ids
    assert results[-1] == {"customer_id": "nobody", "found": False}
    expected = np.interp(_sigmoid(_torch(bundles["buy"], bundles["x"])), CALIBRATION["x"], CALIBRATION["y"])
    got = np.array([r["probability"] for r in results[:-1]])
    assert all(r["found"] for r in results[:-1])
    np.testing.assert_allclose(got, expected[::3], atol=1e-5)
    nobody = client.post("/scores/propensity", json={"task": "buy", "customer_ids": ["nobody"], "explain": True})
    assert nobody.status_code == 200 and nobody.json()["results"] == [{"customer_id": "nobody", "found": False}]
    nobody = client.post("/next-best-action", json={"customer_ids": ["nobody"]})
    assert nobody.status_code == 200 and nobody.json()["results"] == [{"customer_id": "nobody", "found": False}]


def test_propensity_from_rows_matches_and_missing_features_are_allowed(client, bundles):
    rows = _rows(bundles["frame"], range(10))
    assert any("spend" not in r for r in rows)  # a null left out: missing
    body = client.post("/scores/propensity", json={"task": "buy", "rows": rows}).json()
    assert [r["index"] for r in body["results"]] == list(range(10))
    expected = np.interp(_sigmoid(_torch(bundles["buy"], bundles["x"][:10])), CALIBRATION["x"], CALIBRATION["y"])
    np.testing.assert_allclose([r["probability"] for r in body["results"]], expected, atol=1e-5)


def test_a_sequence_model_reads_the_customers_items_or_the_posted_ones(client, bundles):
    x, seq = bundles["x"], bundles["seq"]
    expected = _sigmoid(_torch(bundles["next"], x, seq))
    by_id = client.post("/scores/propensity", json={"task": "next", "customer_ids": [f"c{i}" for i in range(N)]}).json()
    np.testing.assert_allclose([r["probability"] for r in by_id["results"]], expected, atol=1e-5)
    rows = [{**r, "sequence": s} for r, s in zip(_rows(bundles["frame"], range(5)), bundles["sequences"][:5])]
    posted = client.post("/scores/propensity", json={"task": "next", "rows": rows}).json()
    np.testing.assert_allclose([r["probability"] for r in posted["results"]], expected[:5], atol=1e-5)
    bad = client.post("/scores/propensity", json={"task": "next", "rows": [{"sequence": [1, 2]}]})
    assert "rows[0].sequence: expected a list of item ids" in assert_error(bad, 422)


def test_explanations_add_up_to_the_change_from_the_baseline(client, bundles):
    ids = [f"c{i}" for i in range(6)]
    body = client.post("/scores/propensity", json={"task": "buy", "customer_ids": ids, "explain": True}).json()
    net, x, baseline = bundles["buy"], bundles["x"][:6], bundles["baseline"][None, :].astype(np.float32)
    change = _sigmoid(_torch(net, x)) - _sigmoid(_torch(net, baseline))
    frame = bundles["frame"]
    for i, result in enumerate(body["results"]):
        reasons = result["reasons"]
        assert {r["feature"] for r in reasons} == {"age", "spend", "visits", "segment"}  # 4 features: all shown
        sizes = [abs(r["attribution"]) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        assert sum(r["attribution"] for r in reasons) == pytest.approx(change[i], abs=2e-3)
        assert {r["feature"]: r["value"] for r in reasons}["segment"] == frame["segment"][i]
    with_seq = client.post("/scores/propensity", json={"task": "next", "customer_ids": ids, "explain": True}).json()
    seq = bundles["seq"][:6]
    change = _sigmoid(_torch(bundles["next"], x, seq)) - _sigmoid(_torch(bundles["next"], np.repeat(baseline, 6, 0), seq))
    sums = [sum(r["attribution"] for r in res["reasons"]) for res in with_seq["results"]]
    np.testing.assert_allclose(sums, change, atol=2e-3)


def _expected_actions(bundles, cost: float):
    outcomes = _sigmoid(_torch(bundles["arms"], bundles["x"]))
    uplift = outcomes[:, 1:] - outcomes[:, :1]
    net = uplift - cost
    best = net.argmax(axis=1)
    gain = net[np.arange(N), best]
    return uplift, [ARMS[b + 1] if g > 0 else "no_contact" for b, g in zip(best, gain)], np.maximum(gain, 0)


def test_next_best_action_picks_the_largest_net_uplift(client, bundles):
    done = client.post("/next-best-action", json={"customer_ids": [f"c{i}" for i in range(N)] + ["nobody"]})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["arms"] == ARMS and body["outcome"] == "conversion" and body["contact_cost"] == 0.01
    uplift, actions, gains = _expected_actions(bundles, 0.01)
    results = body["results"]
    assert results[-1] == {"customer_id": "nobody", "found": False}
    assert [r["action"] for r in results[:-1]] == actions
    np.testing.assert_allclose([r["expected_uplift"] for r in results[:-1]], gains, atol=1e-5)
    np.testing.assert_allclose([[r["uplift"][a] for a in ARMS[1:]] for r in results[:-1]], uplift, atol=1e-5)
    assert set(actions) == {"email", "sms", "no_contact"}, actions  # the tiny model exercises every choice
    rows = client.post("/next-best-action", json={"rows": _rows(bundles["frame"], range(8)), "explain": True}).json()
    assert [r["action"] for r in rows["results"]] == actions[:8]
    outcomes = _sigmoid(_torch(bundles["arms"], bundles["x"][:8]))
    base = _sigmoid(_torch(bundles["arms"], bundles["baseline"][None, :].astype(np.float32)))[0]
    for i, result in enumerate(rows["results"]):
        a = ARMS.index(result["explained_arm"])
        change = (outcomes[i, a] - outcomes[i, 0]) - (base[a] - base[0])
        assert sum(r["attribution"] for r in result["reasons"]) == pytest.approx(change, abs=2e-3)


def test_no_contact_when_the_cost_exceeds_every_uplift(bundles):
    app = _app(bundles["root"], uplift="costly")
    body = app.post("/next-best-action", json={"customer_ids": ["c0", "c1", "c2"], "explain": True}).json()
    assert [r["action"] for r in body["results"]] == ["no_contact"] * 3
    assert [r["expected_uplift"] for r in body["results"]] == [0.0] * 3
    assert all(r["explained_arm"] in ARMS[1:] and r["reasons"] for r in body["results"])


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/scores/propensity", {"task": "buy", "rows": [{"age": "old"}]}, 422,
     "body.rows[0].age: expected a number or true/false, got str"),
    ("/scores/propensity", {"task": "buy", "rows": [{"age": 3, "segment": 5}]}, 422,
     "body.rows[0].segment: expected text, got int"),
    ("/scores/propensity", {"task": "buy", "rows": [{"colour": "red"}]}, 422, "body.rows[0]: unknown feature(s) colour"),
    ("/scores/propensity", {"task": "buy", "rows": [{"age": 10**400}]}, 422, "body.rows[0].age: number out of range"),
    ("/next-best-action", {"rows": [{}, {"visits": [1]}]}, 422, "body.rows[1].visits: expected a number"),
    ("/next-best-action", {"rows": [{}, {"age": 1e300}]}, 422, "body.rows[1].age: out of the model's range"),
    ("/scores/propensity", {"task": "buy", "customer_ids": ["c1"] * 51}, 422,
     "body.customer_ids: List should have at most 50 items"),
    ("/next-best-action", {"rows": [{}] * 51}, 422, "body.rows: List should have at most 50 items"),
    ("/next-best-action", {"customer_ids": ["c1"] * 11, "explain": True}, 422,
     "body: Value error, explain is allowed for at most 10 rows"),
    ("/scores/propensity", {"task": "buy"}, 422, "body: Value error, give exactly one of customer_ids and rows"),
    ("/next-best-action", {"customer_ids": ["c1"], "rows": [{}]}, 422, "body: Value error, give exactly one of"),
    ("/next-best-action", {"customer_ids": []}, 422, "body.customer_ids: List should have at least 1 item"),
    ("/next-best-action", {"customer_ids": [" "]}, 422, "body.customer_ids.0: String should match pattern"),
    ("/next-best-action", {"customer_ids": ["c1"], "explain": "yes"}, 422, "body.explain: Input should be a valid boolean"),
    ("/next-best-action", {"customer_ids": ["c1"], "k": 3}, 422, "body.k: unknown field"),
    ("/scores/propensity", {"customer_ids": ["c1"]}, 422, "body.task: Field required"),
    ("/scores/propensity", {"task": "churn", "customer_ids": ["c1"]}, 404, "unknown task 'churn'; tasks served: buy, next"),
])
def test_bad_requests_get_a_clear_error(client, path, body, status, error):
    assert assert_error(client.post(path, json=body), status).startswith(error)


def test_hostile_json_is_refused_and_the_recommender_is_unaffected(client):
    for raw in (b'{"task": "buy", "rows": [{"age": NaN}]}', b'{"task": "buy", "task": "x", "rows": [{}]}', b"[1]"):
        assert_error(client.post("/scores/propensity", content=raw, headers={"content-type": "application/json"}), 422)
    assert "no model loaded yet" in assert_error(client.post("/recommendations", json={"customer_id": "x"}), 503)
    assert client.get("/health").json() == {"status": "ok"}


def test_targets_are_listed_and_missing_models_answer_503(client, bundles):
    listed = client.get("/targets").json()
    assert set(listed["targets"]) == {"propensity/buy", "propensity/next", "uplift"} and listed["refused"] == {}
    buy = listed["targets"]["propensity/buy"]
    assert buy["kind"] == "propensity" and buy["version"] == "local" and buy["metrics"]["test"]["roc_auc"] == 0.7
    assert buy["features"] == {"age": "number", "spend": "number", "visits": "number", "segment": "category"}
    assert buy["calibrated"] and listed["targets"]["uplift"]["arms"] == ARMS
    assert str(bundles["root"]) not in client.get("/targets").text
    none = _app(bundles["root"], uplift="uplift")
    assert "no propensity model loaded" in assert_error(
        none.post("/scores/propensity", json={"task": "buy", "customer_ids": ["c1"]}), 503)
    broken = Keeper(FolderSource(bundles["root"] / "none"))
    kept = TargetKeeper({"uplift": FolderSource(bundles["root"] / "buy"), "propensity/x": FolderSource(bundles["root"])})
    assert not kept.refresh()
    app = TestClient(create_app(broken, KEY, ServeParams(), kept))
    error = assert_error(app.post("/next-best-action", json={"customer_ids": ["c1"]}), 503)
    assert error.startswith("next best action: no model loaded yet; version local refused: a propensity bundle where")
    error = assert_error(app.post("/scores/propensity", json={"task": "x", "customer_ids": ["c1"]}), 503)
    assert "not a model bundle" in error and str(bundles["root"]) not in error


def test_build_loads_the_targets_params_name_or_finds_none(bundles, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MAPWISE_HMAC_KEY", KEY.decode())
    data = read_params(REPO / "params.yaml")
    data["tracking"]["uri"] = f"sqlite:///{tmp_path}/mlflow.db"  # does not exist: no registry, no targets
    data["serve"]["cache_dir"] = str(tmp_path / "cache")
    empty = str(tmp_path / "no-recommender")
    (tmp_path / "no-recommender").mkdir()
    found = TestClient(build(parse_params(data), empty, follow=False))
    assert "no propensity model loaded" in assert_error(
        found.post("/scores/propensity", json={"task": "buy", "rows": [{}]}), 503)
    assert not (tmp_path / "mlflow.db").exists()
    data["serve"]["targets"] = {"buy": str(bundles["root"] / "buy"), "uplift": str(bundles["root"] / "uplift")}
    named = TestClient(build(parse_params(data), empty, follow=False))
    assert named.post("/scores/propensity", json={"task": "buy", "customer_ids": ["c1"]}).json()["results"][0]["found"]
    assert named.post("/next-best-action", json={"rows": [{"age": 30}]}).json()["results"][0]["action"]
    data["serve"]["targets"] = {"propensity": "x"}
    with pytest.raises(Exception, match="expected 'uplift', 'propensity/<task>' or '<task>'"):
        parse_params(data)


def test_serving_modules_import_no_torch():
    code = "import sys, mapwise.serving.app, mapwise.serving.targeting; assert 'torch' not in sys.modules, 'torch'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_targets_are_found_in_the_registry_by_name_and_champion_alias(bundles, tmp_path, monkeypatch):
    from mapwise.params import TrackingParams
    from mapwise.bundles.registry import client, register_bundle
    from mapwise.serving.target_keeper import discover_targets

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # artifacts land here
    tracking = TrackingParams(uri=f"sqlite:///{tmp_path}/mlflow.db")
    for name, folder in (("mapwise-propensity-buy", "buy"), ("mapwise-uplift", "uplift"), ("mapwise-propensity-next", "next")):
        version, _ = register_bundle(tracking, name, bundles["root"] / folder)
        if folder != "next":  # a challenger only: not served
            client(tracking).set_registered_model_alias(name, "champion", version)
    found = discover_targets(tracking.uri, tmp_path / "cache")
    assert set(found) == {"propensity/buy", "uplift"}
    kept = TargetKeeper(discover=lambda: discover_targets(tracking.uri, tmp_path / "cache"))
    assert kept.refresh() and set(kept.current) == {"propensity/buy", "uplift"}
    assert kept.current["uplift"].info["name"] == "mapwise-uplift" and kept.current["uplift"].version == "1"
    app = TestClient(create_app(Keeper(FolderSource(tmp_path)), KEY, ServeParams(), kept))
    assert app.post("/scores/propensity", json={"task": "buy", "customer_ids": ["c1"]}).json()["results"][0]["found"]


def test_no_targeting_request_crashes_the_service(client):
    import random

    rng = random.Random(0)
    cells = [None, 0, -1, 10**30, 1.5, 1e308, "", "x" * 200, "a", True, [], {}, ["i1"], {"$gt": 1}]
    values = [None, 0, "", "buy", "next", "c1", ["c1", "nobody"], ["c1"] * 3, [1], [None], [], {}, True, "yes",
              [{"age": 3}], [{"segment": 1}], [[1]], ["a b"]]
    for _ in range(300):
        body = {key: rng.choice(values) for key in rng.sample(["task", "customer_ids", "rows", "explain", "x"],
                                                              rng.randint(0, 5))}
        if rng.random() < 0.5:
            body["rows"] = [{rng.choice(["age", "spend", "visits", "segment", "sequence", "?"]): rng.choice(cells)
                             for _ in range(rng.randint(0, 3))} for _ in range(rng.randint(1, 3))]
            body.pop("customer_ids", None)
        path = rng.choice(["/scores/propensity", "/next-best-action"])
        done = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert done.status_code in (200, 404, 422), (path, body, done.status_code, done.text)
        assert "results" in done.json() if done.status_code == 200 else list(done.json()) == ["error"]
