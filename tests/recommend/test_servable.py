"""Servable baselines: fixed-weight networks that score windows exactly as the fitted baselines score them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapwise.recommend.baselines import BASELINES, build_baseline
from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.network_file import load_network
from mapwise.recommend.servable import servable
from mapwise.recommend.window import NEVER, window
from mapwise.bundles.runtime import session
from mapwise.recommend.export.onnx import check_parity, export_onnx
from test_baselines import N_ITEMS, TRAIN

HISTORIES = [np.array([4]), np.array([1], dtype=np.int64), np.array([2, 5, 5, 5]), np.array([3, 1, 2, 1, 4])]


def test_window_counts_recency_and_distinct_positions():
    w = window(torch.tensor([[0, 0, 2, 5, 5], [1, 2, 1, 3, 1]]), N_ITEMS)
    assert w.counts[0].tolist() == [0, 0, 1, 0, 0, 2]
    assert w.counts[1].tolist() == [0, 3, 1, 1, 0, 0]
    # purchases after the latest purchase of each item (0 = the latest); never bought: NEVER
    assert w.since[0].tolist() == [NEVER, NEVER, 2, NEVER, NEVER, 0]
    assert w.since[1].tolist() == [NEVER, 0, 3, 1, NEVER, NEVER]
    # each distinct item counted once, at its latest position; padding never
    assert w.first.tolist() == [[0, 0, 1, 0, 1], [0, 1, 0, 1, 1]]
    assert w.length.tolist() == [3, 5]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_servable_network_scores_as_the_baseline(name):
    baseline = build_baseline(name, popularity_window_days=7, knn_neighbours=2).fit(TRAIN, N_ITEMS)
    net = servable(name, baseline, max_len=4)
    windows = [h[-4:] for h in HISTORIES]
    expected = baseline.score(windows)
    with torch.no_grad():
        got = net(torch.from_numpy(pad_left(windows, 4))).numpy()
    assert np.isneginf(got[:, 0]).all()
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["recency_frequency", "ease", "item_knn"])
def test_servable_network_exports_saves_and_loads(tmp_path, name):
    baseline = build_baseline(name, popularity_window_days=7, knn_neighbours=2).fit(TRAIN, N_ITEMS)
    net = servable(name, baseline, max_len=4).eval()
    export_onnx(net, tmp_path / "model.onnx", top_k=3)
    parity = check_parity(net, session(tmp_path / "model.onnx"), HISTORIES, atol=1e-5, min_agreement=1.0)
    assert parity.passed and parity.max_abs_diff <= 1e-6, parity
    net.save(tmp_path / "net.pt")
    loaded = load_network(tmp_path / "net.pt")
    assert type(loaded) is type(net) and loaded.max_len == 4
    windows = torch.from_numpy(pad_left(HISTORIES, 4))
    with torch.no_grad():
        assert torch.equal(loaded(windows), net(windows))
