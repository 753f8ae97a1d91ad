"""Attributions without torch: numeric integrated gradients on a black-box scorer, and reasons from them.

Integrated gradients along the straight path from a baseline to the input, approximated with the
midpoint Riemann rule: ``steps`` points at ``alpha = (k + 0.5) / steps``, each weighted ``1 / steps``.
``numeric_integrated_gradients`` takes central finite differences of a numpy scorer (e.g. an
onnxruntime session); ``explain.integrated_gradients`` computes the same quantity with Captum. The
other helpers aggregate encoded-column attributions per source feature ("group") and turn them into
global importances or per-row reasons. Serving imports this module: it needs neither torch nor captum.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def broadcast_baseline(x: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be [B, F], got shape {x.shape}")
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    return x, np.ascontiguousarray(baseline)


def numeric_integrated_gradients(
    score: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    *,
    steps: int = 32,
    eps: float = 1e-3,
    max_cells: int = 1 << 24,
) -> np.ndarray:
    """Integrated gradients of a numpy scorer ``score(x [N, F]) -> [N]``.

    Same midpoint rule as ``integrated_gradients``; each gradient is a central
    difference with step ``eps``.  All ``steps * 2 * F * B`` points go to
    ``score`` in one float32 call, split by rows only when the batch would
    exceed ``max_cells`` matrix entries.  Returns [B, F] float64.
    """
    x, baseline = broadcast_baseline(x, baseline)
    n_rows, n_features = x.shape
    alphas = (np.arange(steps) + 0.5) / steps
    offsets = np.concatenate([np.eye(n_features), -np.eye(n_features)]) * eps  # [2F, F]
    per_row = steps * 2 * n_features
    rows_per_call = max(1, max_cells // (per_row * n_features))

    mean_grads = np.empty((n_rows, n_features))
    for start in range(0, n_rows, rows_per_call):
        xs = x[start:start + rows_per_call].astype(np.float64)
        bs = baseline[start:start + rows_per_call].astype(np.float64)
        path = bs[:, None, :] + alphas[None, :, None] * (xs - bs)[:, None, :]  # [b, S, F]
        points = (path[:, :, None, :] + offsets[None, None]).astype(np.float32)  # [b, S, 2F, F]
        values = np.asarray(score(points.reshape(-1, n_features)), dtype=np.float64)
        values = values.reshape(len(xs), steps, 2, n_features)
        # Divide by the step actually taken after rounding to float32.
        idx = np.arange(n_features)
        h = (points[:, :, idx, idx].astype(np.float64) - points[:, :, n_features + idx, idx])
        mean_grads[start:start + len(xs)] = ((values[:, :, 0] - values[:, :, 1]) / h).mean(axis=1)
    return (x.astype(np.float64) - baseline) * mean_grads


def by_group(attributions: np.ndarray, groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sum [B, F] column attributions per group; returns (names, [B, G]) in first-appearance order."""
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.shape[-1] != len(groups):
        raise ValueError(f"{attributions.shape[-1]} columns but {len(groups)} groups")
    names = list(dict.fromkeys(groups))
    index = {name: i for i, name in enumerate(names)}
    membership = np.zeros((len(groups), len(names)))
    membership[np.arange(len(groups)), [index[g] for g in groups]] = 1.0
    return names, attributions @ membership


def global_importance(attributions: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Mean absolute grouped attribution per group, sorted descending."""
    names, grouped = by_group(attributions, groups)
    importance = np.abs(grouped).mean(axis=0)
    order = sorted(range(len(names)), key=lambda i: -importance[i])
    return {names[i]: float(importance[i]) for i in order}


def top_reasons(
    grouped_row: np.ndarray,
    names: Sequence[str],
    values: dict | None = None,
    top: int = 5,
) -> list[dict]:
    """The ``top`` groups of one row by |attribution|, descending.

    Each entry is ``{"feature", "attribution"}`` plus ``"value"`` (the raw input
    value from ``values``, None when missing) when ``values`` is given.
    """
    grouped_row = np.asarray(grouped_row, dtype=np.float64)
    order = sorted(range(len(names)), key=lambda i: -abs(grouped_row[i]))[:top]
    reasons = []
    for i in order:
        reason = {"feature": names[i], "attribution": float(grouped_row[i])}
        if values is not None:
            reason["value"] = values.get(names[i])
        reasons.append(reason)
    return reasons
