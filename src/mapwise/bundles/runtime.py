"""onnxruntime on the CPU: the graph's input and output names and a well-behaved session (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

INPUT = "history"
SCORES = "scores"
TOP_ITEMS = "top_items"
TOP_SCORES = "top_scores"
QUERY = "query"  # a dot-product model's representation of the history (query.onnx)


def session(path: Path, *, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session; no spinning threads (they burn cores for nothing on small graphs)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def query_scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Scores [n, n_items + 1] of queries [n, D] against item vectors [n_items + 1, D + 1] (column 0 at -inf)."""
    scores = queries @ vectors[:, :-1].T + vectors[:, -1]
    scores[:, 0] = -np.inf
    return scores
