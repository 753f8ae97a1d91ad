"""The HTTP service: answers, cold start, filters, bad requests, and following the champion alias."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

import polars as pl
import pytest
from fastapi.testclient import TestClient

from conftest import KEY, REPO, worse_bundle
from mapwise.bundles.format import MODEL_FILE, load_bundle
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.export.onnx import export_onnx
from mapwise.params import ModelParams, ServeParams
from mapwise.privacy.pseudonym import pseudonym
from mapwise.serving.recommendations import Recommender
from mapwise.bundles.registry import Decision, apply, register_bundle
from mapwise.serving.app import build, create_app
from mapwise.serving.keepers import FolderSource, Keeper, RegistrySource
from mapwise.tracking import tracking_uri


@pytest.fixture(scope="module")
def client(exported_root):
    keeper = Keeper(FolderSource(exported_root / "models/export/sasrec"))
    assert keeper.refresh()
    return TestClient(create_app(keeper, KEY, ServeParams(max_k=20, max_recent_items=5, max_body_bytes=2048)))


def assert_error(done, status: int | None = None) -> None:
    """A 4xx (or this status) with the one error shape: {"error": "<one line>"}, naming no server path."""
    assert 400 <= done.status_code < 500 if status is None else done.status_code == status, (done.status_code, done.text)
    assert done.headers["content-type"] == "application/json", done.headers
    body = done.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    assert "\n" not in body["error"] and str(REPO) not in body["error"] and tempfile.gettempdir() not in body["error"]


def _known_raw_id(folder) -> tuple[str, list[str]]:
    """A raw customer id of the tiny data that the bundle knows, and the item ids it bought."""
    bundle = load_bundle(folder)
    rec = Recommender(bundle)
    raw = next(f"c{n}" for n in range(500) if pseudonym(f"c{n}", KEY) in rec.customers)
    bought = rec.item_ids[rec.customers[pseudonym(raw, KEY)][1]].tolist()
    return raw, bought


def test_known_customer_gets_model_recommendations_with_reasons(client, exported_root):
    raw, bought = _known_raw_id(exported_root / "models/export/sasrec")
    answer = client.post("/recommendations", json={"customer_id": raw, "k": 5}).json()
    assert answer["customer_known"] and answer["strategy"] == "model" and len(answer["items"]) == 5
    scores = [i["score"] for i in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reason"] == ("repeat" if i["item_id"] in bought else "model") for i in answer["items"])
    fresh = client.post("/recommendations", json={"customer_id": raw, "k": 5, "exclude_purchased": True}).json()
    assert not {i["item_id"] for i in fresh["items"]} & set(bought)


def test_unknown_customer_gets_a_cold_start_answer_never_an_error(client):
    popular = client.post("/recommendations", json={"customer_id": "never-seen", "k": 3}).json()
    assert not popular["customer_known"] and popular["strategy"] == "popular"
    assert [i["reason"] for i in popular["items"]] == ["popular"] * 3
    session = client.post("/recommendations", json={"customer_id": "never-seen", "k": 3,
                                                    "recent_items": ["i1", "i2", "nope"]}).json()
    assert session["strategy"] == "model" and session["notes"] == ["1 of recent_items unknown to the model, ignored"]


def test_filters(client):
    allow = ["i3", "i4", "i5"]
    answer = client.post("/recommendations", json={"customer_id": "x", "k": 10, "filters": {"allow_items": allow,
                                                                                             "deny_items": ["i4"]}})
    assert {i["item_id"] for i in answer.json()["items"]} == {"i3", "i5"}
    assert answer.json()["notes"] == ["only 2 items pass the filters"]
    priced = client.post("/recommendations", json={"customer_id": "x", "filters": {"min_price": 1}}).json()
    assert priced["items"] == []  # the tiny catalogue has no prices: nothing passes a price bound


@pytest.mark.parametrize(("body", "error"), [
    ({"customer_id": " \t "}, "body.customer_id: String should match pattern"),  # blank; any script is fine
    ({"customer_id": ""}, "body.customer_id: String should have at least 1 character"),
    ({"customer_id": "x", "k": 0}, "body.k: Input should be greater than or equal to 1"),
    ({"customer_id": "x", "k": 21}, "body.k: Input should be less than or equal to 20"),
    ({"customer_id": "x", "k": "many"}, "body.k: Input should be a valid integer"),
    ({"customer_id": "x", "recent_items": ["a"] * 6}, "body.recent_items: List should have at most 5 items"),
    ({"customer_id": "x", "filters": {"min_price": 3, "max_price": 1}}, "body.filters: Value error, min_price is above"),
    ({"customer_id": "x", "filters": {"colour": "red"}}, "body.filters.colour: unknown field"),
    ({"k": 3}, "body.customer_id: Field required"),
    ([1, 2], "body: Input should be a valid dictionary"),
])
def test_bad_requests_get_a_clear_4xx(client, body, error):
    done = client.post("/recommendations", json=body)
    assert_error(done, 422)
    assert done.json()["error"].startswith(error), done.json()


def test_malformed_and_oversized_bodies(client):
    bad = client.post("/recommendations", content=b'{"customer_id": ', headers={"content-type": "application/json"})
    assert_error(bad, 422)
    assert "JSON decode error" in bad.json()["error"]
    big = client.post("/recommendations", content=b"{" + b" " * 4096 + b"}", headers={"content-type": "application/json"})
    assert_error(big, 413)
    chunked = client.post("/recommendations", content=(b" " * 1024 for _ in range(4)),
                          headers={"content-type": "application/json"})  # no Content-Length: counted as it arrives
    assert_error(chunked, 413)
    assert client.get("/health").json() == {"status": "ok"}  # and the worker is still there


VALID = {"customer_id": "c1", "k": 3, "recent_items": ["i1"], "exclude_purchased": False, "filters": {"min_price": 0}}


def _hostile_bodies() -> list[tuple[bytes, str | None]]:
    """Bodies to refuse: each field of VALID given values of the wrong type, and JSON that is not quite JSON."""
    wrong = {
        "customer_id": [True, 1, 1.5, None, [], {}, ["c1"], " ", "x" * 2049],
        "k": [True, False, "5", "5.0", 5.0, 5.5, None, [], {}, [5], 0, 10**30, -(10**30)],
        "recent_items": ["i1", True, 1, None, {}, [1], [True], [None], [["i1"]], {"i1": 1}],
        "exclude_purchased": ["yes", "true", "false", "", 1, 0, 1.0, None, [], {}],
        "filters": [[], "x", 1, True, {"min_price": True}, {"min_price": "1"}, {"min_price": -1}, {"max_price": [1]},
                    {"max_price": {}}, {"categories": "x"}, {"categories": [1]}, {"categories": [True]},
                    {"allow_items": [True]}, {"allow_items": "i1"}, {"deny_items": None}, {"deny_items": [1]},
                    {"colour": "red"}, {"min_price": {"$gt": 1}}],
        "extra": [1, None],
        "a\nb": [1],
    }
    json_type = "application/json"
    bodies = [(json.dumps({**VALID, key: value}).encode(), json_type) for key, values in wrong.items() for value in values]
    raw = [
        b"", b" ", b"{", b'{"customer_id": "c1",}', b"{'customer_id': 'c1'}", b'{"customer_id": c1}', b"[1, 2]",
        b'"c1"', b"1", b"null", b"true", b"[]", b"{}",
        b'{"customer_id": "c1", "k": NaN}', b'{"customer_id": "c1", "filters": {"min_price": Infinity}}',
        b'{"customer_id": "c1", "filters": {"max_price": -Infinity}}', b'{"customer_id": "c1", "filters": {"max_price": 1e999}}',
        b'{"customer_id": "c1", "customer_id": "c2"}', b'{"customer_id": "c1", "k": 3, "k": 4}',
        b'{"customer_id": "c1", "filters": {"min_price": 1, "min_price": 2}}',
        b'{"customer_id": "c1", "k": 1' + b"0" * 5000 + b"}",  # past Python's digits limit
        b'{"customer_id": "c1", "filters": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"customer_id": "\xff\xfe"}', b'{"customer_id": "caf\xe9"}', b"\xef\xbb\xbf" + json.dumps(VALID).encode(),
        b'{"customer_id": "\\ud800"}',
    ]
    bodies += [(body, json_type) for body in raw]
    bodies += [(json.dumps(VALID).encode(), kind) for kind in ("text/plain", "application/x-www-form-urlencoded", None)]
    return bodies + [(b"customer_id=c1", "application/x-www-form-urlencoded")]


def test_hostile_bodies_get_a_4xx_in_the_one_error_shape(exported_root):
    keeper = Keeper(FolderSource(exported_root / "models/export/sasrec"))
    assert keeper.refresh()
    app = TestClient(create_app(keeper, KEY, ServeParams()))  # the default body limit: the bodies are parsed
    assert app.post("/recommendations", json=VALID).status_code == 200  # the bodies below each break this one
    for body, kind in _hostile_bodies():
        assert_error(app.post("/recommendations", content=body, headers={"content-type": kind} if kind else {}))


def test_every_error_has_the_one_shape(client):
    assert_error(client.get("/nowhere"), 404)
    wrong_method = client.get("/recommendations")
    assert_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"
    assert_error(client.delete("/health"), 405)


def test_info_endpoints_and_docs(client, exported_root):
    assert client.get("/ready").json() == {"ready": True, "version": "local"}
    info = client.get("/model").json()
    assert info["model"] == "sasrec" and info["data_version"] and info["metrics"]["test"]["all_items"]["ndcg@10"] > 0
    assert info["name"] == "sasrec" and info["lineage"]["train_run_id"] and info["loaded_at"] and info["refused"] == {}
    assert str(exported_root) not in client.get("/model").text  # nothing of the server's filesystem
    assert client.get("/docs").status_code == 200
    assert "/recommendations" in client.get("/openapi.json").json()["paths"]


def test_not_ready_without_a_model(tmp_path):
    keeper = Keeper(FolderSource(tmp_path))  # an empty folder: the load is refused
    assert not keeper.refresh() and "not a model bundle" in keeper.refused["local"]
    assert str(tmp_path) not in keeper.refused["local"]
    app = TestClient(create_app(keeper, KEY, ServeParams()))
    assert app.get("/health").status_code == 200
    assert_error(app.get("/ready"), 503)
    assert_error(app.get("/model"), 503)
    assert "version local refused: " in app.get("/model").json()["error"]  # why, even when nothing serves
    assert_error(app.post("/recommendations", json={"customer_id": "x"}), 503)


def test_not_ready_says_what_is_missing(tmp_path):
    """Before a champion exists, /ready names what is missing: the key, a version with the alias, a refused one."""
    registry = RegistrySource(f"sqlite:///{tmp_path / 'mlflow.db'}", "mapwise-recommender", "champion", tmp_path / "cache")
    keeper = Keeper(registry)
    assert not keeper.refresh()
    keyless = TestClient(create_app(keeper, b"", ServeParams())).get("/ready")
    assert_error(keyless, 503)
    error = keyless.json()["error"]
    assert "no registered version has the alias: models:/mapwise-recommender@champion names none yet" in error
    assert TestClient(create_app(Keeper(FolderSource(tmp_path)), KEY, ServeParams())).get("/ready").json()["error"] == (
        "no model loaded yet: no model checked yet")
    refused = Keeper(FolderSource(tmp_path))
    refused.refresh()
    error = TestClient(create_app(refused, KEY, ServeParams())).get("/ready").json()["error"]
    assert error.startswith("no model loaded yet: every version found was refused; version local refused: ")


def test_starts_without_the_key_and_picks_it_up_once_written(project, monkeypatch):
    monkeypatch.delenv("MAPWISE_HMAC_KEY", raising=False)  # a fresh clone: the first pipeline run writes the key
    bundle = project.export.out_dir / "sasrec"
    app = TestClient(build(project, str(bundle), follow=False))
    assert app.get("/health").json() == {"status": "ok"}
    for done in (app.get("/ready"), app.get("/model"), app.post("/recommendations", json={"customer_id": "x"})):
        assert_error(done, 503)
        assert done.json()["error"].startswith("no pseudonymisation key yet: run the pipeline once"), done.json()
    key_file = project.ingest.key_file
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("half")  # caught mid-write: told, not kept
    assert "must be at least 16 bytes" in app.get("/ready").json()["error"]
    key_file.write_text(KEY.decode() + "\n")
    assert app.get("/ready").json() == {"ready": True, "version": "local"}
    raw, _ = _known_raw_id(bundle)
    assert app.post("/recommendations", json={"customer_id": raw}).json()["customer_known"]


def test_a_failed_download_is_retried_not_refused(project, tmp_path):
    name = project.register.model_name
    register_bundle(project.tracking, name, project.export.out_dir / "gru")
    apply(project.tracking, Decision("force", name, "1", None, "1", "test"))
    cache = tmp_path / "cache"
    cache.write_text("")  # the cache cannot be written for now: a transient failure
    keeper = Keeper(RegistrySource(tracking_uri(project.tracking), name, "champion", cache))
    with pytest.raises(OSError):
        keeper.refresh()
    assert keeper.current is None and keeper.refused == {}
    cache.unlink()
    assert keeper.refresh() and keeper.current.version == "1"


def test_follows_the_champion_and_refuses_a_broken_version(project, tmp_path):
    name = project.register.model_name
    uri = tracking_uri(project.tracking)
    gru, sasrec = project.export.out_dir / "gru", project.export.out_dir / "sasrec"
    register_bundle(project.tracking, name, gru)
    apply(project.tracking, Decision("force", name, "1", None, "1", "test"))
    keeper = Keeper(RegistrySource(uri, name, "champion", tmp_path / "cache"))
    assert keeper.refresh()
    app = TestClient(create_app(keeper, KEY, ServeParams()))
    keeper.follow(0.1)
    assert app.get("/model").json()["version"] == "1"

    register_bundle(project.tracking, name, sasrec)
    apply(project.tracking, Decision("force", name, "2", "1", "2", "test"))
    _wait_for(lambda: app.get("/model").json()["version"] == "2")
    assert app.get("/model").json()["model"] == "sasrec" and app.get("/model").json()["name"] == name

    broken = worse_bundle(gru, tmp_path / "broken")  # loads no more: its catalogue lost an item
    pl.read_parquet(broken / "items.parquet").head(-1).write_parquet(broken / "items.parquet")
    shrunk = worse_bundle(gru, tmp_path / "shrunk")  # loads, but its graph scores another catalogue: smoke check
    meta = json.loads((shrunk / "metadata.json").read_text())
    net = build_network("gru", meta["n_items"] - 1, ModelParams(**meta["trained_with"]["model"]))
    export_onnx(net.eval(), shrunk / MODEL_FILE)
    for version, folder in (("3", broken), ("4", shrunk)):
        register_bundle(project.tracking, name, folder)
        apply(project.tracking, Decision("force", name, version, "2", version, "test"))
        _wait_for(lambda v=version: v in app.get("/model").json()["refused"])
        assert app.get("/model").json()["version"] == "2"
    refused = app.get("/model").json()["refused"]
    assert "does not match" in refused["3"] and "smoke check: scores of shape" in refused["4"]
    shown = app.get("/model").text  # the reasons name no path of the server
    assert str(tmp_path) not in shown and tempfile.gettempdir() not in shown
    assert app.post("/recommendations", json={"customer_id": "x"}).status_code == 200


def _wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_serving_path_needs_neither_torch_nor_pickle():
    code = "import sys, mapwise.serving.app, mapwise.serving.audience; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_batch_scoring_writes_an_audience(exported_root, tmp_path):
    from mapwise.serving.audience import write_audience

    rec = Recommender(load_bundle(exported_root / "models/export/gru"))
    done = write_audience(rec, None, 4, tmp_path / "a.parquet", exclude_purchased=True)
    table = pl.read_parquet(tmp_path / "a.parquet")
    assert done["rows"] == table.height == 4 * len(rec.customers)
    assert table.columns == ["customer_id", "rank", "item_id", "score", "reason"]
    bought = {(cu, item) for cu, (_, p) in rec.customers.items() for item in rec.item_ids[p]}
    assert not any((cu, item) in bought for cu, item in table.select("customer_id", "item_id").iter_rows())
    some = sorted(rec.customers)[:3] + ["unknown"]
    csv = write_audience(rec, some, 2, tmp_path / "a.csv", exclude_purchased=False)
    assert csv["customers"] == 3 and csv["not_known_to_model"] == 1
    assert pl.read_csv(tmp_path / "a.csv")["rank"].to_list() == [1, 2] * 3


def test_score_command(project, tmp_path):
    from typer.testing import CliRunner

    from mapwise.cli import app

    bundle = str(project.export.out_dir / "sasrec")
    out = tmp_path / "aud.csv"
    done = CliRunner().invoke(app, ["score", "--model", bundle, "--k", "3", "--out", str(out)],
                              env={"MAPWISE_HMAC_KEY": KEY.decode()})
    assert done.exit_code == 0, done.output
    assert "recommendations for" in done.output and pl.read_csv(out).height > 0
    wrong = CliRunner().invoke(app, ["score", "--model", bundle, "--out", str(tmp_path / "a.xlsx")])
    assert wrong.exit_code == 1 and "must end in .parquet or .csv" in wrong.output


def test_no_request_crashes_the_service(client):
    import random

    rng = random.Random(0)
    values = [None, 0, -1, 10**30, 1.5, float("nan"), "", "x" * 200, "é", "a b", [], {}, ["i1"] * 3, {"k": 1}, True,
              ["i1", 5, None], {"categories": ["x"]}, "\x00", 3]
    for _ in range(300):
        body = {key: rng.choice(values) for key in rng.sample(
            ["customer_id", "k", "recent_items", "exclude_purchased", "filters", "extra"], rng.randint(0, 6))}
        if rng.random() < 0.5:
            body["customer_id"] = rng.choice(["c1", "never-seen", "17850"])
        done = client.post("/recommendations", content=json.dumps(body, allow_nan=True),
                           headers={"content-type": "application/json"})
        assert done.status_code in (200, 413, 422), (body, done.status_code, done.text)
        assert "error" in done.json() if done.status_code != 200 else "items" in done.json()


def test_serve_command_refuses_a_bad_model_reference_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from mapwise.cli import app

    done = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "nowhere")])
    assert done.exit_code == 1 and "is neither models:/<name>@<alias> nor a bundle folder" in done.output
    done = CliRunner().invoke(app, ["serve", "--model", "models:/no-alias"])
    assert done.exit_code == 1 and "must look like models:/<name>@<alias>" in done.output


def test_a_baseline_bundle_serves_like_a_model(exported_root):
    # personal popularity, bundled by the export stage: the customer's most bought items first, with filters
    folder = exported_root / "models/export/personal_popularity"
    keeper = Keeper(FolderSource(folder))
    assert keeper.refresh()
    served = TestClient(create_app(keeper, KEY, ServeParams(max_k=20)))
    raw, bought = _known_raw_id(folder)
    answer = served.post("/recommendations", json={"customer_id": raw, "k": 3}).json()
    assert answer["customer_known"] and answer["strategy"] == "model"
    assert {i["item_id"] for i in answer["items"]} <= set(bought) and all(i["reason"] == "repeat" for i in answer["items"])
    fresh = served.post("/recommendations", json={"customer_id": raw, "k": 3, "exclude_purchased": True}).json()
    assert len(fresh["items"]) == 3 and not {i["item_id"] for i in fresh["items"]} & set(bought)
    assert served.get("/model").json()["model"] == "personal_popularity"


def test_the_api_docs_need_no_internet(client):
    """/docs loads Swagger UI from the service itself: every script and stylesheet it names is served here."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert assets and not [a for a in assets if a.startswith(("http://", "https://", "//"))], assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # no second docs page pulling from a CDN
