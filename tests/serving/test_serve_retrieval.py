"""Retrieval for large catalogues: the ANN path (faiss index over the item vectors, exact re-rank) against exact scoring."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from conftest import KEY, REPO, tiny_events
from mapwise import columns as c
from mapwise.params import ExportParams, ModelParams, RetrievalParams, ServeParams, load_params
from mapwise.privacy.pseudonym import pseudonym
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.split import item_index, purchases
from mapwise.serving.app import create_app
from mapwise.serving.keepers import FolderSource, Keeper
from mapwise.bundles.format import load_bundle, write_bundle
from mapwise.serving.recommendations import Filters, Recommender
from mapwise.bundles.format import QUERY_FILE, VECTORS_FILE
from mapwise.serving.retrieval import ANN, EXACT, choose, recall_at
from mapwise.recommend.export.tables import customer_table, item_table
from pipelines.export import bundle_metadata, export_graphs

ITEMS = 300
EXACT_ALL = RetrievalParams(method="exact")


def _bundle(folder, name: str, seed: int = 0):
    """A real export (graphs, parity, retrieval files, tables) of an untrained network over a 300-item shop."""
    events = tiny_events(customers=120, items=ITEMS, steps=12, seed=seed)
    split_items = item_index(purchases(events))
    shop_items = split_items.select(c.ITEM_ID).with_columns(
        pl.format("blue mug {}", c.ITEM_ID).alias(c.TITLE), pl.lit(None, pl.String).alias(c.CATEGORY),
        (pl.int_range(pl.len()) % 7 + 1).cast(pl.Float64).alias(c.PRICE))
    torch.manual_seed(seed)
    net = build_network(name, split_items.height, ModelParams(max_len=6, embedding_dim=16, sasrec_layers=1)).eval()
    histories = [np.asarray(r) for r in customer_table(events, split_items, net.max_len)["recent"].to_list()]
    folder.mkdir(parents=True)
    parity, query_diff = export_graphs(net, folder, histories, ExportParams(), top_k=10)
    items = item_table(split_items, shop_items, events, category_tokens=5, window_days=30)
    write_bundle(folder, bundle_metadata(name, net, 10, parity, query_diff), items,
                 customer_table(events, split_items, net.max_len))
    return folder


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory):
    return _bundle(tmp_path_factory.mktemp("retrieval") / "sasrec", "sasrec")


def _ann(folder, **kw) -> Recommender:
    return Recommender(load_bundle(folder), RetrievalParams(method="ann", **kw))


def test_dot_product_models_carry_retrieval_files_and_repeatnet_stays_exact(sasrec, tmp_path):
    assert (sasrec / QUERY_FILE).is_file() and (sasrec / VECTORS_FILE).is_file()
    assert load_bundle(sasrec).metadata["retrieval"]["dot_product"]
    repeat = _bundle(tmp_path / "repeatnet", "repeatnet")
    assert not (repeat / QUERY_FILE).exists() and not (repeat / VECTORS_FILE).exists()
    rec = Recommender(load_bundle(repeat), RetrievalParams(method="ann"))  # asked for ann: not a dot product, exact
    assert rec.retrieval == EXACT and rec.ann is None
    assert len(rec.recommend(next(iter(rec.customers)), 5).items) == 5


def test_ann_gives_the_exact_top_k_when_the_candidates_cover_the_catalogue(sasrec):
    exact = Recommender(load_bundle(sasrec), EXACT_ALL)
    ann = _ann(sasrec, candidates=ITEMS, nprobe=1000)  # every cell searched, every item a candidate
    assert ann.retrieval == ANN
    customers = sorted(exact.customers)[:40]
    for cu in customers:
        want = exact.recommend(cu, 10, exclude_purchased=True)
        got = ann.recommend(cu, 10, exclude_purchased=True)
        assert [i["item_id"] for i in got.items] == [i["item_id"] for i in want.items]
        assert np.allclose([i["score"] for i in got.items], [i["score"] for i in want.items], atol=1e-4)
        assert [i["reason"] for i in got.items] == [i["reason"] for i in want.items]
    frames = [pl.concat(list(r.recommend_all(customers, 10))) for r in (exact, ann)]  # batch scoring: the same
    assert frames[0][c.ITEM_ID].to_list() == frames[1][c.ITEM_ID].to_list()


def test_recall_is_reported_for_a_narrow_search(sasrec):
    exact = Recommender(load_bundle(sasrec), EXACT_ALL)
    ann = _ann(sasrec, candidates=20, nprobe=1, nlist=16)
    histories = [exact.customers[cu][0] for cu in sorted(exact.customers)]
    scores = exact.score(histories)
    want = np.stack([exact.top(row, exact.everything, 10)[0] for row in scores])
    got = np.stack([ann.top(q, ann.everything, 10)[0] for q in ann.infer(histories)])
    recall = recall_at(want, got)
    assert 0.0 < recall <= 1.0
    assert recall_at(want, want) == 1.0


def test_filters_exclusions_and_k_hold_on_the_ann_path(sasrec):
    ann = _ann(sasrec, candidates=20, nprobe=1, nlist=16)
    exact = Recommender(load_bundle(sasrec), EXACT_ALL)
    cu = next(iter(ann.customers))
    bought = set(ann.item_ids[ann.customers[cu][1]].tolist())
    answer = ann.recommend(cu, 30, exclude_purchased=True, filters=Filters(max_price=2.0))
    assert len(answer.items) == 30 and all(i["price"] <= 2.0 for i in answer.items)
    assert not {i["item_id"] for i in answer.items} & bought
    allow = ann.item_ids[1:6].tolist()  # fewer allowed than candidates: scored exactly, same as exact
    for rec in (ann, exact):
        assert [i["item_id"] for i in rec.recommend(cu, 10, filters=Filters(allow_items=allow)).items] == \
            [i["item_id"] for i in exact.recommend(cu, 10, filters=Filters(allow_items=allow)).items]
    answer = ann.recommend(cu, 10, filters=Filters(allow_items=allow))
    assert len(answer.items) == 5 and answer.notes == ["only 5 items pass the filters"]
    cold = ann.recommend(None, 5)
    assert cold.strategy == "popular" and len(cold.items) == 5


def test_retrieval_params_are_validated():
    assert RetrievalParams().method == "auto"
    for bad in ({"method": "hnsw"}, {"candidates": 0}, {"nprobe": 0}, {"nlist": 0}, {"ann_min_items": 0},
                {"candidats": 200}):
        with pytest.raises(ValidationError):
            RetrievalParams(**bad)
    with pytest.raises(ValidationError):
        ServeParams(retrieval={"method": "exact", "extra": 1})
    assert load_params(REPO / "params.yaml").serve.retrieval.method == "auto"
    assert choose("auto", 3_502, 50_000, True) == EXACT and choose("auto", 100_000, 50_000, True) == ANN
    assert choose("ann", 10, 50_000, False) == EXACT and choose("exact", 10**6, 50_000, True) == EXACT


def test_a_bundle_with_one_retrieval_file_is_refused(sasrec, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sasrec, broken)
    (broken / VECTORS_FILE).unlink()
    keeper = Keeper(FolderSource(broken))
    assert not keeper.refresh() and "come together" in keeper.refused["local"]
    shutil.copytree(sasrec, tmp_path / "mismatched")
    np.save(tmp_path / "mismatched" / VECTORS_FILE, np.zeros((ITEMS + 1, 17), dtype=np.float32))  # wrong vectors
    keeper = Keeper(FolderSource(tmp_path / "mismatched"), retrieval=RetrievalParams(method="ann"))
    assert not keeper.refresh() and "smoke check" in keeper.refused["local"]


def test_the_service_on_the_ann_path_still_refuses_bad_inputs(sasrec):
    keeper = Keeper(FolderSource(sasrec), retrieval=RetrievalParams(method="ann", candidates=20, nlist=16))
    assert keeper.refresh() and keeper.current.info["retrieval"] == ANN
    client = TestClient(create_app(keeper, KEY, ServeParams(max_k=20, max_recent_items=5, max_body_bytes=2048)))
    rec = keeper.current.recommender
    raw = next(f"c{n}" for n in range(500) if pseudonym(f"c{n}", KEY) in rec.customers)
    ok = client.post("/recommendations", json={"customer_id": raw, "k": 7, "exclude_purchased": True})
    assert ok.status_code == 200 and ok.json()["customer_known"] and len(ok.json()["items"]) == 7
    session = client.post("/recommendations", json={"customer_id": "new-1", "k": 5,
                                                    "recent_items": [rec.item_ids[3], "nope"]}).json()
    assert session["strategy"] == "model" and not session["customer_known"] and len(session["notes"]) == 1
    for body in ({"customer_id": raw, "k": 0}, {"customer_id": raw, "k": 21}, {"customer_id": raw, "k": "5"},
                 {"customer_id": " ", "k": 5}, {"customer_id": raw, "k": 5, "surprise": 1},
                 {"customer_id": raw, "recent_items": ["a"] * 6}):
        done = client.post("/recommendations", json=body)
        assert done.status_code == 422 and list(done.json()) == ["error"], (body, done.text)
