"""Targeting bundles for serving: an ONNX graph over encoded features, plus what encodes and looks up inputs.

The bundle has the recommenders' layout (model.onnx, metadata.json, items.parquet, customers.parquet),
so the registry and the service handle both families alike:
- propensity: input `features` [B, F] (and `sequence` [B, L] item indices), output `probability` [B]
  before calibration (the isotonic map is in metadata.json);
- uplift: input `features`, output `outcomes` [B, arms] (probabilities for 0/1 outcomes).
customers.parquet holds each customer's raw feature values (and item sequence) as of the latest data.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from mapwise.errors import MapwiseError
from mapwise.serving.bundle import MODEL_FILE, write_bundle
from mapwise.serving.inference import session
from mapwise.target.fitting import predict

FEATURES, SEQUENCE_INPUT = "features", "sequence"
PROBABILITY, OUTCOMES = "probability", "outcomes"
ITEM_INDEX, ITEM = "item_idx", "item_id"


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


def parity(path: Path, net: nn.Module, inputs: list[np.ndarray], *, binary: bool, atol: float) -> dict:
    """onnxruntime against torch on the same rows; a difference over `atol` fails the export."""
    sess = session(path)
    feeds = {FEATURES: inputs[0].astype(np.float32)}
    if len(inputs) > 1:
        feeds[SEQUENCE_INPUT] = inputs[1].astype(np.int64)
    onnx_out = sess.run(None, feeds)[0].astype(np.float64)
    torch_out = predict(net, *inputs)
    torch_out = 1 / (1 + np.exp(-torch_out)) if binary else torch_out
    diff = float(np.max(np.abs(onnx_out - torch_out))) if len(onnx_out) else 0.0
    result = {"rows": int(len(onnx_out)), "max_abs_diff": diff, "atol": atol, "passed": diff <= atol}
    if not result["passed"]:
        raise MapwiseError(f"{path}: ONNX and torch differ by {diff:.2e} (> {atol}) on the test rows; export refused")
    return result


def write_target_bundle(folder: Path, net: nn.Module, parity_inputs: list[np.ndarray], metadata: dict,
                        customers: pl.DataFrame, vocab: list[str] | None, *, binary: bool, output: str,
                        sequence_length: int, atol: float) -> dict:
    """Export, check parity, write the bundle; returns the parity figures (also in metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    export_graph(net, folder / MODEL_FILE, parity_inputs[0].shape[1], sequence_length=sequence_length if vocab else 0,
                 binary=binary, output=output)
    checked = parity(folder / MODEL_FILE, net, parity_inputs, binary=binary, atol=atol)
    items = pl.DataFrame({ITEM_INDEX: list(range(1, len(vocab or []) + 1)), ITEM: vocab or []},
                         schema={ITEM_INDEX: pl.Int64, ITEM: pl.String})
    write_bundle(folder, {**metadata, "parity": checked}, items, customers)
    return checked
