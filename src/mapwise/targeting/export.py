"""Targeting bundles for serving: an ONNX graph over encoded features, plus what encodes and looks up inputs.

The bundle has the recommenders' layout (model.onnx, metadata.json, items.parquet, customers.parquet),
so the registry and the service handle both families alike:
- propensity: input `features` [B, F] (and `sequence` [B, L] item indices), output `probability` [B]
  before calibration (the isotonic map is in metadata.json);
- uplift: input `features`, output `outcomes` [B, arms] (probabilities for 0/1 outcomes).
A baseline that serves in a network's place (a scikit-learn classifier, a fixed policy's constant outcomes) is
written with the same inputs and output, so the service, the gate and the registry read it alike.
customers.parquet holds each customer's raw feature values (and item sequence) as of the latest data.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import torch
from onnx import TensorProto, helper
from torch import nn

from mapwise.errors import MapwiseError
from mapwise.bundles.format import MODEL_FILE, write_bundle
from mapwise.bundles.runtime import session
from mapwise.targeting.fitting import predict

FEATURES, SEQUENCE_INPUT = "features", "sequence"
PROBABILITY, OUTCOMES = "probability", "outcomes"
ITEM_INDEX, ITEM = "item_idx", "item_id"
OPSET = 17  # the hand-written graphs' default-domain opset


class _Probability(nn.Module):
    def __init__(self, net: nn.Module, binary: bool = True) -> None:
        super().__init__()
        self.net, self.binary = net, binary

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.net(*inputs)
        return torch.sigmoid(out) if self.binary else out


def export_graph(net: nn.Module, path: Path, n_features: int, *, sequence_length: int = 0, binary: bool = True,
                 output: str = PROBABILITY) -> None:
    """Write the network (sigmoid applied for 0/1 outcomes) as ONNX with a dynamic batch axis."""
    net = net.eval()
    example = [torch.zeros(3, n_features)]
    names = [FEATURES]
    axes = {FEATURES: {0: "batch"}, output: {0: "batch"}}
    if sequence_length:
        example.append(torch.ones(3, sequence_length, dtype=torch.int64))
        names.append(SEQUENCE_INPUT)
        axes[SEQUENCE_INPUT] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Probability(net, binary), tuple(example), str(path), input_names=names, output_names=[output],
                          dynamic_axes=axes, dynamo=False)
    log.setLevel(level)


def _feeds(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    feeds = {FEATURES: inputs[0].astype(np.float32)}
    if len(inputs) > 1:
        feeds[SEQUENCE_INPUT] = inputs[1].astype(np.int64)
    return feeds


def _compare(path: Path, inputs: list[np.ndarray], reference: np.ndarray, atol: float, against: str) -> dict:
    """onnxruntime's output on `inputs` against `reference`; a difference over `atol` fails the export."""
    onnx_out = session(path).run(None, _feeds(inputs))[0].astype(np.float64)
    diff = float(np.max(np.abs(onnx_out - reference))) if len(onnx_out) else 0.0
    result = {"rows": int(len(onnx_out)), "max_abs_diff": diff, "atol": atol, "passed": diff <= atol}
    if not result["passed"]:
        raise MapwiseError(f"{path}: ONNX and {against} differ by {diff:.2e} (> {atol}) on the test rows; export refused")
    return result


def parity(path: Path, net: nn.Module, inputs: list[np.ndarray], *, binary: bool, atol: float) -> dict:
    """onnxruntime against torch on the same rows; a difference over `atol` fails the export."""
    torch_out = predict(net, *inputs)
    return _compare(path, inputs, 1 / (1 + np.exp(-torch_out)) if binary else torch_out, atol, "torch")


def _graph_inputs(n_features: int, sequence_length: int) -> list[onnx.ValueInfoProto]:
    """The network graphs' inputs; `sequence` is read by none of the nodes here, only fed alike."""
    inputs = [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", n_features])]
    if sequence_length:
        inputs.append(helper.make_tensor_value_info(SEQUENCE_INPUT, TensorProto.INT64, ["batch", sequence_length]))
    return inputs


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], output: onnx.ValueInfoProto,
           initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "mapwise", inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _at_most(threshold: float) -> float:
    """The largest float32 <= `threshold`: float32 features compare to it as scikit-learn's float64 split does."""
    t = np.float32(threshold)
    return float(np.nextafter(t, np.float32(-np.inf)) if float(t) > threshold else t)


def _boosting_nodes(model) -> list[onnx.NodeProto]:  # noqa: ANN001 - a fitted HistGradientBoostingClassifier
    """The trees as one ai.onnx.ml TreeEnsembleRegressor (features -> raw score [batch, 1]) and a sigmoid.

    Written here: skl2onnx 1.20's converter for it fails under onnx 1.23 (a bool in an ints attribute)."""
    if model.n_trees_per_iteration_ != 1:
        raise MapwiseError("gradient boosting: only a two-class model exports")
    a: dict[str, list] = {}
    for tree_id, (tree,) in enumerate(model._predictors):
        for node_id, node in enumerate(tree.nodes):
            leaf = bool(node["is_leaf"])
            if not leaf and node["is_categorical"]:
                raise MapwiseError("gradient boosting: categorical splits do not export")
            for key, value in (("treeids", tree_id), ("nodeids", node_id), ("featureids", 0 if leaf else int(node["feature_idx"])),
                               ("modes", "LEAF" if leaf else "BRANCH_LEQ"),
                               ("values", 0.0 if leaf else _at_most(float(node["num_threshold"]))),
                               ("truenodeids", 0 if leaf else int(node["left"])),
                               ("falsenodeids", 0 if leaf else int(node["right"])),
                               ("missing_value_tracks_true", 0 if leaf else int(node["missing_go_to_left"]))):
                a.setdefault(f"nodes_{key}", []).append(value)
            if leaf:
                for key, value in (("treeids", tree_id), ("nodeids", node_id), ("ids", 0), ("weights", float(node["value"]))):
                    a.setdefault(f"target_{key}", []).append(value)
    base = float(np.ravel(model._baseline_prediction)[0])
    return [helper.make_node("TreeEnsembleRegressor", [FEATURES], ["raw"], domain="ai.onnx.ml", n_targets=1,
                             aggregate_function="SUM", base_values=[base], post_transform="NONE", **a),
            helper.make_node("Sigmoid", ["raw"], ["positive"])]


def _logistic_nodes(model, n_features: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:  # noqa: ANN001
    """skl2onnx's graph of a fitted LogisticRegression, its class probabilities column 1 as `positive` [batch, 1]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    graph = to_onnx(model, initial_types=[(FEATURES, FloatTensorType([None, n_features]))], options={"zipmap": False},
                    target_opset={"": OPSET, "ai.onnx.ml": 1}).graph
    column = helper.make_tensor("column", TensorProto.INT64, [1], [1])
    return [*graph.node, helper.make_node("Gather", ["probabilities", "column"], ["positive"], axis=1)], [*graph.initializer, column]


def sklearn_graph(model, n_features: int, sequence_length: int = 0) -> onnx.ModelProto:  # noqa: ANN001
    """A fitted scikit-learn baseline (logistic regression or gradient boosting) as the propensity network's twin:
    inputs `features` [batch, F] (and `sequence`, unused), output `probability` [batch] of the positive class."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(model, HistGradientBoostingClassifier):
        nodes, initializers = _boosting_nodes(model), []
    elif isinstance(model, LogisticRegression):
        nodes, initializers = _logistic_nodes(model, n_features)
    else:
        raise MapwiseError(f"no ONNX export for {type(model).__name__}")
    nodes.append(helper.make_node("Reshape", ["positive", "flat"], [PROBABILITY]))
    initializers.append(helper.make_tensor("flat", TensorProto.INT64, [1], [-1]))
    return _model(nodes, _graph_inputs(n_features, sequence_length),
                  helper.make_tensor_value_info(PROBABILITY, TensorProto.FLOAT, ["batch"]), initializers)


def constant_graph(values: list[float], n_features: int) -> onnx.ModelProto:
    """Input `features` [batch, F], output `outcomes` [batch, arms]: `values` on every row (a fixed policy)."""
    nodes = [helper.make_node("Shape", [FEATURES], ["rows"], start=0, end=1),
             helper.make_node("Concat", ["rows", "arms"], ["shape"], axis=0),
             helper.make_node("Expand", ["values", "shape"], [OUTCOMES])]
    initializers = [helper.make_tensor("arms", TensorProto.INT64, [1], [len(values)]),
                    helper.make_tensor("values", TensorProto.FLOAT, [1, len(values)], [float(v) for v in values])]
    return _model(nodes, _graph_inputs(n_features, 0),
                  helper.make_tensor_value_info(OUTCOMES, TensorProto.FLOAT, ["batch", len(values)]), initializers)


def _items(vocab: list[str] | None) -> pl.DataFrame:
    return pl.DataFrame({ITEM_INDEX: list(range(1, len(vocab or []) + 1)), ITEM: vocab or []},
                        schema={ITEM_INDEX: pl.Int64, ITEM: pl.String})


def write_target_bundle(folder: Path, net: nn.Module, parity_inputs: list[np.ndarray], metadata: dict,
                        customers: pl.DataFrame, vocab: list[str] | None, *, binary: bool, output: str,
                        sequence_length: int, atol: float) -> dict:
    """Export, check parity, write the bundle; returns the parity figures (also in metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    export_graph(net, folder / MODEL_FILE, parity_inputs[0].shape[1], sequence_length=sequence_length if vocab else 0,
                 binary=binary, output=output)
    checked = parity(folder / MODEL_FILE, net, parity_inputs, binary=binary, atol=atol)
    write_bundle(folder, {**metadata, "parity": checked}, _items(vocab), customers)
    return checked


def write_graph_bundle(folder: Path, graph: onnx.ModelProto, parity_inputs: list[np.ndarray], reference: np.ndarray,
                       metadata: dict, customers: pl.DataFrame, vocab: list[str] | None, *, against: str, atol: float) -> dict:
    """Write a ready graph, check it against `reference` (what its source model gives on `parity_inputs`), write
    the bundle; returns the parity figures (also in metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(folder / MODEL_FILE))
    checked = _compare(folder / MODEL_FILE, parity_inputs, reference, atol, against)
    write_bundle(folder, {**metadata, "parity": checked}, _items(vocab), customers)
    return checked
