"""ONNX export of a sequence network, proven equal to it before anyone serves it.

The graph takes `history` (int64 [batch, length], left-padded item indices) and returns `scores`
(float32 [batch, n_items + 1], column 0 = padding at -inf), plus `top_items` / `top_scores` when a
top-K is built in. Batch is always dynamic; length is dynamic (2..max_len) for the models that read
any window length (GRU, SASRec) and fixed to max_len for Caser, whose convolutions read a fixed window.

For dot-product models (score = representation . item embedding + item bias: GRU4Rec, Caser, SASRec)
`export_query` also writes `query.onnx` (`history` -> `query`, float32 [batch, D]) and `item_vectors.npy`
(float32 [n_items + 1, D + 1]: embedding and bias), so serving can retrieve candidates with an
approximate nearest-neighbour index instead of scoring the whole catalogue (see `retrieval`).

The GRU goes through the TorchScript exporter (native ONNX GRU op): with torch 2.13 the dynamo exporter
fixes its length axis to the example's on every GRU export after the first in a process.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mapwise.errors import MapwiseError
from mapwise.bundles.runtime import INPUT, QUERY, SCORES, TOP_ITEMS, TOP_SCORES, query_scores, session
from mapwise.recommend.models.networks import Caser, GRU4Rec, SequenceRecommender
from mapwise.recommend.ranker.network import Ranker
from mapwise.recommend.ranker.onnx import CANDIDATES, FEATURE_ROWS, Front, complete
from mapwise.bundles.format import QUERY_FILE, VECTORS_FILE
from mapwise.recommend.models.sequences import pad_left


class ScoringGraph(nn.Module):
    """What the ONNX graph computes: catalogue scores, and optionally the top K (indices, scores)."""

    def __init__(self, net: SequenceRecommender, top_k: int | None) -> None:
        super().__init__()
        self.net, self.top_k = net, top_k

    def forward(self, history: torch.Tensor):
        scores = self.net(history)  # SASRec's last layer computes the newest position only (SASRec.encode)
        if self.top_k is None:
            return scores
        top_scores, top_items = torch.topk(scores, self.top_k, dim=1)
        return scores, top_items, top_scores


class QueryGraph(nn.Module):
    """The representation a dot-product model scores items with: history [B, L] -> query [B, D]."""

    def __init__(self, net: SequenceRecommender) -> None:
        super().__init__()
        self.net = net

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.net.encode(history)


def dot_product(net: SequenceRecommender) -> bool:
    """Whether the network's scores are its representation . item embeddings + bias (not RepeatNet's mixture)."""
    return type(net).forward is SequenceRecommender.forward


def item_vectors(net: SequenceRecommender) -> np.ndarray:
    """[n_items + 1, D + 1]: each item's embedding and bias (row 0 padding), so score = [query, 1] . vector."""
    with torch.no_grad():
        return torch.cat([net.items.weight, net.bias[:, None]], dim=1).float().numpy().copy()


def dynamic_length(net: SequenceRecommender) -> bool:
    """Whether the network reads windows of any length up to max_len (Caser's layout is fixed)."""
    return not isinstance(net, Caser)


def padding_invariant(net: SequenceRecommender, histories: list[np.ndarray], *, atol: float, customers: int = 32) -> bool:
    """Whether left padding leaves the scores alone (SASRec, RepeatNet, the ranker: yes; a GRU reads the padding), checked
    on real histories: then the service pads a window only to its own length, and a short history costs less."""
    if not dynamic_length(net):
        return False
    net = net.eval()
    with torch.no_grad():
        for history in histories[:customers]:
            window = np.asarray(history)[-net.max_len:]
            full = net(torch.from_numpy(pad_left([window], net.max_len))).numpy()[:, 1:]
            short = net(torch.from_numpy(pad_left([window], max(2, len(window))))).numpy()[:, 1:]
            if not np.allclose(full, short, rtol=0, atol=atol):
                return False
    return True


def export_onnx(net: SequenceRecommender, path: Path, *, top_k: int | None = None) -> None:
    """Write `net` as ONNX at `path`; afterwards the input axes are checked to really be dynamic."""
    net = net.eval()
    if top_k is not None and not 1 <= top_k <= net.n_items:
        raise MapwiseError(f"export.top_k: {top_k} must lie in 1..{net.n_items} (the catalogue)")
    outputs = [SCORES] if top_k is None else [SCORES, TOP_ITEMS, TOP_SCORES]
    if isinstance(net, Ranker):  # torch computes its candidates and features, onnxruntime's tree operator the rest
        _export(net, Front(net), path, [CANDIDATES, FEATURE_ROWS])
        onnx.save(complete(onnx.load(str(path)), net, outputs, top_k), str(path))
        return
    _export(net, ScoringGraph(net, top_k), path, outputs)


def export_query(net: SequenceRecommender, folder: Path, histories: list[np.ndarray], *, atol: float) -> float | None:
    """For a dot-product network, write `query.onnx` and `item_vectors.npy` into `folder` and return the largest
    |network score - query . vectors| on `histories` (a MapwiseError over `atol`); None (nothing written) otherwise."""
    net = net.eval()
    if not dot_product(net):
        return None
    _export(net, QueryGraph(net), folder / QUERY_FILE, [QUERY])
    vectors = item_vectors(net)
    np.save(folder / VECTORS_FILE, vectors)
    windows = np.ascontiguousarray(pad_left(histories, net.max_len)[:256])
    with torch.no_grad():
        expected = net(torch.from_numpy(windows)).numpy()[:, 1:]
    got = query_scores(session(folder / QUERY_FILE).run([QUERY], {INPUT: windows})[0], vectors)[:, 1:]
    worst = float(np.abs(expected - got).max()) if len(windows) else 0.0
    if worst > atol:
        raise MapwiseError(f"query graph parity failed: max |score diff| {worst:.3g} (allowed {atol:g})")
    return worst


def _export(net: SequenceRecommender, graph: nn.Module, path: Path, outputs: list[str]) -> None:
    # batch >= 2 and length >= 2 (and not max_len itself), or the exporter specialises those dims
    length = net.max_len - 1 if dynamic_length(net) and net.max_len > 2 else net.max_len
    example = torch.randint(1, net.n_items + 1, (3, length), dtype=torch.int64)
    if isinstance(net, GRU4Rec):
        axes = {INPUT: {0: "batch", 1: "length"}, **{name: {0: "batch"} for name in outputs}}
        options = {"dynamic_axes": axes, "dynamo": False}
    else:
        dims = {0: torch.export.Dim("batch", min=1, max=1 << 20)}
        if dynamic_length(net):
            dims[1] = torch.export.Dim("length", min=2, max=net.max_len)
        options = {"dynamic_shapes": (dims,), "dynamo": True, "external_data": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed": noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), (example,), str(path), input_names=[INPUT], output_names=outputs,
                          verbose=False, **options)
    exporter_log.setLevel(level)
    check_dynamic_axes(path, length_dynamic=dynamic_length(net))


def check_dynamic_axes(path: Path, *, length_dynamic: bool) -> None:
    """The exporter can silently fix an axis to the example's size: insist they are symbolic."""
    (graph_input,) = onnx.load(str(path), load_external_data=False).graph.input
    dims = graph_input.type.tensor_type.shape.dim
    expected = {"batch": 0, **({"length": 1} if length_dynamic else {})}
    for axis_name, axis in expected.items():
        if not dims[axis].dim_param:
            raise MapwiseError(f"{path}: the {axis_name} axis was exported fixed at {dims[axis].dim_value}, not dynamic")


@dataclass(frozen=True)
class Parity:
    """How closely the ONNX graph reproduces the network on real inputs."""

    customers: int
    max_abs_diff: float
    top10_agreement: float  # share of customers whose top-10 item sets are identical
    atol: float
    min_agreement: float
    shapes_checked: list[list[int]]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top10_agreement >= self.min_agreement

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _top10(scores: np.ndarray) -> np.ndarray:
    k = min(10, scores.shape[1] - 1)
    return np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)


def check_parity(
    net: SequenceRecommender, sess: ort.InferenceSession, histories: list[np.ndarray], *, atol: float,
    min_agreement: float, batch: int = 512,
) -> Parity:
    """Score the same real histories with torch and onnxruntime and compare; also at batch 1 and a shorter length."""
    if not histories:
        raise MapwiseError("parity check: no histories to compare on")
    net = net.eval()
    windows = pad_left(histories, net.max_len)
    shapes = [(min(batch, len(windows)), net.max_len), (1, net.max_len)]
    if dynamic_length(net):
        shapes.append((min(3, len(windows)), max(2, net.max_len // 2)))
    worst, agree, compared = 0.0, 0, 0
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        torch_scores, onnx_scores = _both(net, sess, chunk)
        worst = max(worst, float(np.abs(torch_scores[:, 1:] - onnx_scores[:, 1:]).max()))
        agree += int((_top10(torch_scores) == _top10(onnx_scores)).all(axis=1).sum())
        compared += len(chunk)
    for rows, length in shapes[1:]:  # other batch sizes and lengths must run and agree too
        torch_scores, onnx_scores = _both(net, sess, windows[:rows, -length:])
        worst = max(worst, float(np.abs(torch_scores[:, 1:] - onnx_scores[:, 1:]).max()))
    return Parity(compared, worst, agree / compared, atol, min_agreement, [list(s) for s in shapes])


def _both(net: SequenceRecommender, sess: ort.InferenceSession, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        expected = net(torch.from_numpy(np.ascontiguousarray(windows))).numpy()
    got = sess.run([SCORES], {INPUT: np.ascontiguousarray(windows)})[0]
    if got.shape != expected.shape:
        raise MapwiseError(f"parity check: ONNX scores have shape {got.shape}, the network {expected.shape}")
    return expected, got
