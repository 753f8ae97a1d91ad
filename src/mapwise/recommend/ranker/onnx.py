"""The ranker's ONNX graph: the torch-exported candidate features, then onnxruntime's own tree operator.

Walking trees with tensor gathers costs milliseconds per request; `ai.onnx.ml.TreeEnsembleRegressor`
a fraction of one. Its float32 thresholds are LightGBM's float64 ones rounded down, which for float32
features decides every split as LightGBM does. The graph completed here computes what
`Ranker.forward` computes: candidates get the trees' score, every other item a score below them in
order of popularity, padding -inf, and optionally the top K.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from mapwise.recommend.ranker.features import FEATURES

CANDIDATES, FEATURE_ROWS = "candidates", "candidate_features"  # the torch part's outputs
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 3


class Front(torch.nn.Module):
    """The torch part of the graph: history -> (candidates, features)."""

    def __init__(self, ranker: torch.nn.Module) -> None:
        super().__init__()
        self.features = ranker.features

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features(history)


def _tree_attributes(trees: torch.nn.Module) -> dict:
    """TreeEnsembleRegressor attributes from the ranker's padded tree tables (a leaf points to itself)."""
    feature, threshold = trees.feature.numpy(), trees.threshold.numpy()
    left, right, value = trees.left.numpy(), trees.right.numpy(), trees.value.numpy()
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
                         "nodes_falsenodeids", "target_treeids", "target_nodeids", "target_ids")}
    thresholds, weights = [], []
    for tree in range(feature.shape[0]):
        for node in range(feature.shape[1]):
            leaf = left[tree, node] == right[tree, node]
            if leaf and left[tree, node] != node:
                continue  # padding beyond this tree's nodes
            a["nodes_treeids"].append(tree)
            a["nodes_nodeids"].append(node)
            a["nodes_featureids"].append(int(feature[tree, node]))
            a["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            a["nodes_truenodeids"].append(0 if leaf else int(left[tree, node]))
            a["nodes_falsenodeids"].append(0 if leaf else int(right[tree, node]))
            thresholds.append(0.0 if leaf else float(threshold[tree, node]))
            if leaf:
                a["target_treeids"].append(tree)
                a["target_nodeids"].append(node)
                a["target_ids"].append(0)
                weights.append(float(value[tree, node]))
    a["nodes_values"] = float32_thresholds(np.asarray(thresholds, dtype=np.float64)).tolist()
    a["target_weights"] = np.asarray(weights, dtype=np.float32).tolist()
    return a


def float32_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each float64 threshold: for a float32 input x, `x <= t32` exactly when
    `x <= t` (LightGBM's float64 comparison), so the trees read float32 features without a cast."""
    t32 = thresholds.astype(np.float32)
    above = t32.astype(np.float64) > thresholds
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def complete(model: onnx.ModelProto, ranker: torch.nn.Module, outputs: list[str], top_k: int | None) -> onnx.ModelProto:
    """Append the trees and the scoring to the exported front (outputs CANDIDATES, FEATURE_ROWS)."""
    graph = model.graph
    n = ranker.n_items + 1
    tie = ranker.features.tie.numpy().astype(np.float32).reshape(1, n)
    padding = np.zeros((1, n), dtype=np.float32)
    padding[0, 0] = -np.inf
    graph.initializer.extend([
        numpy_helper.from_array(tie, "rk_tie"), numpy_helper.from_array(padding, "rk_padding"),
        numpy_helper.from_array(np.array([-1, len(FEATURES)], dtype=np.int64), "rk_rows_shape"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "rk_axis1"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "rk_two"),
    ])
    nodes = [
        helper.make_node("Reshape", [FEATURE_ROWS, "rk_rows_shape"], ["rk_rows"]),
        helper.make_node("TreeEnsembleRegressor", ["rk_rows"], ["rk_tree_out"], domain=ML_DOMAIN, n_targets=1,
                         aggregate_function="SUM", post_transform="NONE", **_tree_attributes(ranker.trees)),
        helper.make_node("Shape", [CANDIDATES], ["rk_cand_shape"]),
        helper.make_node("Reshape", ["rk_tree_out", "rk_cand_shape"], ["rk_ranked"]),
        helper.make_node("ReduceMin", ["rk_ranked", "rk_axis1"], ["rk_min"], keepdims=1),
        helper.make_node("Sub", ["rk_min", "rk_two"], ["rk_floor"]),
        helper.make_node("Add", ["rk_floor", "rk_tie"], ["rk_base"]),
        helper.make_node("ScatterElements", ["rk_base", CANDIDATES, "rk_ranked"], ["rk_scattered"], axis=1),
        helper.make_node("Add", ["rk_scattered", "rk_padding"], [outputs[0]]),
    ]
    if top_k is not None:
        graph.initializer.append(numpy_helper.from_array(np.array([top_k], dtype=np.int64), "rk_k"))
        nodes.append(helper.make_node("TopK", [outputs[0], "rk_k"], [outputs[2], outputs[1]], axis=1))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, ["batch", n]))
    if top_k is not None:
        graph.output.append(helper.make_tensor_value_info(outputs[1], TensorProto.INT64, ["batch", top_k]))
        graph.output.append(helper.make_tensor_value_info(outputs[2], TensorProto.FLOAT, ["batch", top_k]))
    if not any(op.domain == ML_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    onnx.checker.check_model(model)
    return model
