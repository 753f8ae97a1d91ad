"""ONNX export: dynamic axes that really are dynamic, parity with the network, and a stage that fails loudly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import run_stage
from mapwise.bundles.format import load_bundle
from mapwise.errors import MapwiseError
from mapwise.bundles.runtime import INPUT, SCORES, TOP_ITEMS, TOP_SCORES, session
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.export.onnx import check_dynamic_axes, check_parity, dynamic_length, export_onnx, padding_invariant
from mapwise.params import ModelParams

SMALL = ModelParams(max_len=6, embedding_dim=16, caser_window=3, sasrec_layers=1)
N_ITEMS = 30


def _histories(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, N_ITEMS + 1, size=rng.integers(1, 12)) for _ in range(n)]


@pytest.mark.parametrize("name", ["gru", "caser", "sasrec", "repeatnet"])
def test_export_is_dynamic_and_equal_to_the_network(tmp_path, name):
    torch.manual_seed(0)
    net = build_network(name, N_ITEMS, SMALL).eval()
    path = tmp_path / f"{name}.onnx"
    export_onnx(net, tmp_path / "first.onnx", top_k=5)
    export_onnx(net, path, top_k=5)  # a second export in one process stays dynamic (dynamo once fixed GRU's length)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and bool(dims[1].dim_param) == dynamic_length(net) == (name != "caser")
    sess = session(path)
    parity = check_parity(net, sess, _histories(), atol=1e-4, min_agreement=0.99)
    assert parity.passed and parity.customers == 40 and parity.top10_agreement == 1.0
    for batch, length in [(1, 6), (7, 6), *([(2, 3)] if name != "caser" else [])]:  # sizes never seen at export
        window = np.random.default_rng(batch).integers(0, N_ITEMS + 1, size=(batch, length))
        scores, top_items, top_scores = sess.run([SCORES, TOP_ITEMS, TOP_SCORES], {INPUT: window})
        with torch.no_grad():
            expected = net(torch.from_numpy(window)).numpy()
        assert scores.shape == (batch, N_ITEMS + 1) and np.isneginf(scores[:, 0]).all()
        np.testing.assert_allclose(scores[:, 1:], expected[:, 1:], atol=1e-4)
        np.testing.assert_allclose(top_scores, np.sort(expected, axis=1)[:, ::-1][:, :5], atol=1e-4)
        assert (np.take_along_axis(scores, top_items, axis=1) == top_scores).all()


@pytest.mark.parametrize(("name", "invariant"), [("gru", False), ("caser", False), ("sasrec", True), ("repeatnet", True)])
def test_padding_invariance_is_found_on_real_windows(name, invariant):
    # a GRU reads its padding (the service must pad to max_len), attention never does; Caser reads a fixed window
    torch.manual_seed(0)
    net = build_network(name, N_ITEMS, SMALL).eval()
    with torch.no_grad():
        for key, value in net.named_parameters():
            if key.startswith("gru.bias"):  # as after training: a zero padding input then still moves the state
                value.normal_()
    assert padding_invariant(net, _histories(), atol=1e-5) is invariant


def test_parity_fails_for_a_graph_that_differs_from_the_network(tmp_path):
    torch.manual_seed(0)
    net = build_network("gru", N_ITEMS, SMALL).eval()
    export_onnx(net, tmp_path / "gru.onnx")
    with torch.no_grad():
        net.items.weight.mul_(1.5)  # the network moves on; the exported graph does not
    parity = check_parity(net, session(tmp_path / "gru.onnx"), _histories(), atol=1e-4, min_agreement=0.99)
    assert not parity.passed and parity.max_abs_diff > 1e-3


def test_a_fixed_axis_is_caught(tmp_path):
    net = build_network("caser", N_ITEMS, SMALL).eval()
    export_onnx(net, tmp_path / "caser.onnx")  # Caser's length is fixed by design
    with pytest.raises(MapwiseError, match="length axis was exported fixed at 6"):
        check_dynamic_axes(tmp_path / "caser.onnx", length_dynamic=True)


def test_export_stage_writes_bundles_with_metadata(exported_root):
    report = json.loads((exported_root / "reports/export.json").read_text())
    baselines = {"popularity", "personal_popularity", "recency_frequency", "item_knn", "ease"}
    assert set(report) == {"gru", "sasrec"} | baselines and all(r["passed"] for r in report.values())
    served = load_bundle(exported_root / "models/export/personal_popularity")  # a baseline: bundled to be servable
    assert served.metadata["trained_with"]["name"] == "personal_popularity" and served.metadata["parity"]["passed"]
    assert served.metadata["metrics"]["test"]["all_items"]["ndcg@10"] >= 0
    bundle = load_bundle(exported_root / "models/export/sasrec")
    meta = bundle.metadata
    assert meta["model"] == "sasrec" and meta["dynamic_axes"] == {"batch": True, "length": True}
    assert meta["lineage"]["train_run_id"] and meta["trained_with"]["lr"] > 0
    assert meta["metrics"]["test"]["all_items"]["ndcg@10"] > 0 and meta["metrics"]["validation"]["ndcg@10"] > 0
    assert bundle.items["item_idx"].to_list() == list(range(1, bundle.n_items + 1))
    assert bundle.customers.height > 0


def test_export_stage_fails_when_parity_fails(exported_root, tmp_path):
    import shutil

    import yaml

    root = tmp_path / "p"
    shutil.copytree(exported_root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["export"]["atol"] = 1e-15  # stricter than float32 arithmetic can be
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage(root, "export")
    assert done.returncode == 2
    assert done.stderr.startswith("export: gru: ONNX parity failed on") and "(allowed 1e-15)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (root / "models/export/gru").exists()
