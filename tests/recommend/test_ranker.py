"""The two-stage ranker: trees equal to LightGBM, one feature module for training and the exported graph."""

from __future__ import annotations

from datetime import datetime

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pytest
import torch

from mapwise.params import RankerParams, SplitParams
from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.network_file import load_network
from mapwise.recommend.ranker.features import FEATURES
from mapwise.recommend.ranker.fit import examples, fit_features, fit_ranker, label_window, popularity_order
from mapwise.recommend.ranker.onnx import CANDIDATES, FEATURE_ROWS, Front
from mapwise.recommend.ranker.trees import TreeEnsemble, tree_tables
from mapwise.recommend.split import HISTORY, temporal_split
from mapwise.bundles.runtime import INPUT, session
from mapwise.recommend.export.onnx import _export, check_parity, export_onnx, padding_invariant
from conftest import TINY_CUTOFF, tiny_events

SMALL = RankerParams(max_len=12, candidates_per_generator=6, knn_neighbours=5,
                     trees={"max_rounds": 15, "early_stopping_rounds": 5, "min_data_in_leaf": 5, "num_leaves": 7})
SPLIT = SplitParams(cutoff=TINY_CUTOFF, validation_days=10, horizon_days=30, out_dir="unused", report="unused.json")


@pytest.fixture(scope="module")
def split():
    events = tiny_events(customers=120, items=30, steps=30)
    return temporal_split(events, cutoff=datetime.fromisoformat(TINY_CUTOFF), validation_days=10, horizon_days=30,
                          min_history=1)


@pytest.fixture(scope="module")
def fitted(split):
    price = np.concatenate([[np.nan], np.linspace(1, 30, split.n_items)])
    return fit_ranker(split, price, SMALL, SPLIT, refit=True, seed=0)


def test_trees_score_as_lightgbm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(scale=0.3, size=600) > 0.5).astype(float)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 7, "verbosity": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, y, group=[20] * 30), num_boost_round=12)
    trees = TreeEnsemble(tree_tables(booster.dump_model()))
    expected = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(trees(torch.from_numpy(x)).numpy(), expected, rtol=0, atol=1e-5)


def test_popularity_order_is_distinct_and_follows_purchases(split):
    tie = popularity_order(split.train, split.n_items)
    assert len(np.unique(tie)) == split.n_items + 1 and ((tie >= 0) & (tie < 1)).all()
    counts = np.bincount(split.train["item_idx"].to_numpy(), minlength=split.n_items + 1)
    assert np.argmax(tie) == np.argmax(counts)


def test_examples_label_each_distinct_candidate_once(split):
    before, histories, targets = label_window(split.train, SPLIT)
    assert before["timestamp"].max() < split.train["timestamp"].max()  # the label window comes after its history
    features = fit_features(before, split.n_items, np.full(split.n_items + 1, np.nan), SMALL)
    rows = examples(features, histories, targets, SMALL.max_len)
    assert rows.x.shape == (rows.y.size, len(FEATURES)) and rows.groups.sum() == rows.y.size
    with torch.no_grad():
        cand, _ = features(torch.from_numpy(pad_left([h[-SMALL.max_len:] for h in histories], SMALL.max_len)))
    kept = [i for i, t in enumerate(targets) if 0 < np.isin(np.unique(cand[i].numpy()), t).sum() < len(np.unique(cand[i].numpy()))]
    assert rows.groups.tolist() == [len(np.unique(cand[i].numpy())) for i in kept]
    found = sum(np.isin(t, cand[i].numpy()).sum() for i, t in enumerate(targets))
    assert rows.recall == pytest.approx(found / sum(len(t) for t in targets))


def test_candidates_rank_above_every_other_item(split, fitted):
    net = fitted.ranker
    windows = torch.from_numpy(pad_left([np.asarray(h) for h in split.test[HISTORY].to_list()], net.max_len))
    with torch.no_grad():
        scores = net(windows).numpy()
        cand = net.features(windows)[0].numpy()
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()
    for row, items in enumerate(cand):
        others = np.setdiff1d(np.arange(1, net.n_items + 1), items)
        if others.size:
            assert scores[row, items].min() > scores[row, others].max()
    assert 0 <= fitted.report["val_ndcg@10"] <= 1
    assert fitted.selected is not None and fitted.report["refit"]["rounds"] == fitted.report["rounds"]
    assert set(fitted.report["feature_importance_gain"]) == set(FEATURES)


def test_exported_graph_equals_the_ranker_and_serves_the_training_features(split, fitted, tmp_path):
    net = fitted.ranker
    net.save(tmp_path / "ranker.pt")
    loaded = load_network(tmp_path / "ranker.pt")
    histories = [np.asarray(h) for h in split.test[HISTORY].to_list()]
    windows = torch.from_numpy(pad_left(histories, net.max_len))
    with torch.no_grad():
        assert torch.equal(loaded(windows), net(windows))
    export_onnx(loaded, tmp_path / "model.onnx", top_k=5)
    parity = check_parity(loaded, session(tmp_path / "model.onnx"), histories, atol=1e-5, min_agreement=1.0)
    assert parity.passed and parity.max_abs_diff <= 1e-5, parity
    assert padding_invariant(loaded, histories, atol=1e-6)  # the service pads a window only to its own length
    # the features the service computes (the graph's torch part, in onnxruntime) are the training code's: the same
    # candidates, the same values up to float rounding (sums taken in another order)
    _export(loaded, Front(loaded), tmp_path / "front.onnx", [CANDIDATES, FEATURE_ROWS])
    cand, feats = ort.InferenceSession(str(tmp_path / "front.onnx")).run(None, {INPUT: windows.numpy()})
    with torch.no_grad():
        expected = loaded.features(windows)
    np.testing.assert_array_equal(cand, expected[0].numpy())
    np.testing.assert_allclose(feats, expected[1].numpy(), rtol=1e-6, atol=1e-7)


def test_too_little_data_is_one_line(split):
    from mapwise.errors import MapwiseError

    late = SplitParams(cutoff="2024-01-05T00:00:00Z", validation_days=2, horizon_days=30, out_dir="unused",
                       report="unused.json")
    with pytest.raises(MapwiseError, match="no customers to learn from"):
        fit_ranker(split, np.full(split.n_items + 1, np.nan), SMALL, late, refit=False, seed=0)


def test_label_windows_are_sampled_down_to_max_customers(split):
    few = SMALL.model_copy(update={"max_customers": 10})
    report = fit_ranker(split, np.full(split.n_items + 1, np.nan), few, SPLIT, refit=False, seed=0).report
    assert 0 < report["rows"]["training_customers"] <= 10 and 0 < report["rows"]["validation_customers"] <= 10


def test_without_repeat_purchases_the_ranker_learns_to_look_past_the_history():
    # film-ratings shape: nobody buys an item twice (30 purchases walk through 60 items), so the own-history
    # generator's items (the window's) are never targets and the trees learn to rank them low, where the
    # own-history generator alone would fill every top 5 with them
    events = tiny_events(customers=400, items=60, steps=30)
    split = temporal_split(events, cutoff=datetime.fromisoformat(TINY_CUTOFF), validation_days=10, horizon_days=30,
                           min_history=1)
    result = fit_ranker(split, np.full(split.n_items + 1, np.nan), SMALL, SPLIT, refit=True, seed=0)
    assert 0 <= result.report["val_ndcg@10"] <= 1
    windows = [np.asarray(h)[-SMALL.max_len:] for h in split.test[HISTORY].to_list()]
    with torch.no_grad():
        scores = result.ranker(torch.from_numpy(pad_left(windows, SMALL.max_len))).numpy()
    top = np.argsort(-scores, axis=1)[:, :5]
    seen = np.mean([np.isin(t, w).mean() for t, w in zip(top, windows, strict=True)])
    assert seen < 0.25, f"{seen:.0%} of the top 5 were bought before, though nothing is ever bought twice"
