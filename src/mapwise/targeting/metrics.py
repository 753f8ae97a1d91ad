"""Targeting metrics in plain numpy: propensity (ranking, calibration, lift), uplift, and policy value.

Inputs may be lists or arrays of one row per customer; arrays of different lengths raise ValueError.
Uplift functions take the outcome `y` (binary or continuous), the predicted uplift `u` and the treatment
flag `t` (1 treated, 0 control) and follow scikit-uplift's definitions (`sklift.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np


def _arrays(**named: object) -> list[np.ndarray]:
    """The named inputs as 1-D arrays of one common, non-zero length."""
    arrays = [np.asarray(value) for value in named.values()]
    for name, array in zip(named, arrays, strict=True):
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    lengths = {name: array.size for name, array in zip(named, arrays, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError("inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    if not arrays[0].size:
        raise ValueError("inputs are empty")
    return arrays


def _binary(name: str, values: np.ndarray) -> np.ndarray:
    """`values` as floats, checked to hold only 0 and 1."""
    values = values.astype(float)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return values


def _classification(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and probabilities in [0, 1]."""
    y, p = _arrays(y=y, p=p)
    p = p.astype(float)
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p must hold probabilities in [0, 1]")
    return _binary("y", y), p


def _both_classes(y: np.ndarray) -> None:
    if y.min() == y.max():
        raise ValueError("y holds one class only")


def roc_auc(y: object, p: object) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties count half)."""
    y, p = _classification(y, p)
    _both_classes(y)
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    midranks = np.cumsum(counts) - (counts - 1) / 2  # average 1-based rank of each distinct score
    n_pos = y.sum()
    n_neg = y.size - n_pos
    return float((midranks[inverse][y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: object, p: object) -> float:
    """Average precision: sum over distinct score thresholds (descending) of (R_n - R_{n-1}) * P_n."""
    y, p = _classification(y, p)
    if not y.any():
        raise ValueError("y has no positives")
    order = np.argsort(-p, kind="mergesort")
    scores, labels = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last row of each tied score
    true_pos = np.cumsum(labels)[last]
    precision = true_pos / (last + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def log_loss(y: object, p: object, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood, with p clipped to [eps, 1 - eps]."""
    y, p = _classification(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(y: object, p: object, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin of p over [0, 1] (bins [lo, hi), the last one closed):
    lo, hi, count, mean_predicted and observed_rate."""
    y, p = _classification(y, p)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in np.unique(which):
        inside = which == b
        rows.append({
            "lo": float(b / bins),
            "hi": float((b + 1) / bins),
            "count": int(inside.sum()),
            "mean_predicted": float(p[inside].mean()),
            "observed_rate": float(y[inside].mean()),
        })
    return rows


def expected_calibration_error(y: object, p: object, bins: int = 10) -> float:
    """Mean over the `reliability` bins of |observed_rate - mean_predicted|, weighted by bin count."""
    rows = reliability(y, p, bins)
    total = sum(row["count"] for row in rows)
    return float(sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in rows) / total)


def lift_table(y: object, p: object, groups: int = 10) -> list[dict]:
    """Customers by p descending (ties in input order) cut into `groups` near-equal groups (np.array_split).

    Per group: decile (1..groups), count, positives, rate, lift (rate / overall rate), cumulative_gain
    (share of all positives in this and the groups above) and cumulative_share (share of customers).
    """
    y, p = _classification(y, p)
    if not 1 <= groups <= y.size:
        raise ValueError(f"groups must be in 1..{y.size} (the number of rows), got {groups}")
    total = y.sum()
    if not total:
        raise ValueError("y has no positives")
    overall = total / y.size
    rows, seen, found = [], 0, 0.0
    for decile, part in enumerate(np.array_split(y[np.argsort(-p, kind="stable")], groups), start=1):
        seen += part.size
        found += part.sum()
        rows.append({
            "decile": decile,
            "count": int(part.size),
            "positives": int(part.sum()),
            "rate": float(part.mean()),
            "lift": float(part.mean() / overall),
            "cumulative_gain": float(found / total),
            "cumulative_share": seen / y.size,
        })
    return rows


def bootstrap_interval(
    stat: Callable[..., float], arrays: Sequence[object], n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of `stat(*arrays)` over `n` resamples of rows, drawn with replacement (the same
    rows from every array). Resamples where `stat` raises ValueError or returns NaN are skipped."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arrays = _arrays(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        rows = rng.integers(0, arrays[0].size, arrays[0].size)
        try:
            value = float(stat(*(a[rows] for a in arrays)))
        except ValueError:
            continue
        if not np.isnan(value):
            values.append(value)
    if not values:
        raise ValueError("no resample gave a value")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# --- uplift -------------------------------------------------------------------------------------------


def _uplift_inputs(y: object, u: object, t: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float outcome and uplift, and a treatment flag holding both 0 and 1."""
    y, u, t = _arrays(y=y, u=u, t=t)
    t = _binary("t", t)
    _both_groups(t)
    return y.astype(float), u.astype(float), t


def _both_groups(t: np.ndarray) -> None:
    if t.min() == t.max():
        raise ValueError("t must hold both treated (1) and control (0) rows")


def _cumulative(y: np.ndarray, u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows taken, treated rows, treated outcome and control outcome at each distinct score, best first."""
    order = np.argsort(u, kind="mergesort")[::-1]
    y, u, t = y[order], u[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(u)), u.size - 1]
    return (last + 1.0, np.cumsum(t)[last], np.cumsum(y * t)[last], np.cumsum(y * (1 - t))[last])


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0."""
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def uplift_curve(y: object, u: object, t: object) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve from (0, 0): at each distinct u (descending), the n rows taken so far and
    (treated mean outcome - control mean outcome) * n among them (a group with no rows counts 0)."""
    taken, treated, y_treated, y_control = _cumulative(*_uplift_inputs(y, u, t))
    values = (_ratio(y_treated, treated) - _ratio(y_control, taken - treated)) * taken
    return np.r_[0.0, taken], np.r_[0.0, values]


def qini_curve(y: object, u: object, t: object) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve from (0, 0): at each distinct u (descending), the n rows taken so far and
    treated outcome sum - control outcome sum * n_treated / n_control among them (0 while no control)."""
    taken, treated, y_treated, y_control = _cumulative(*_uplift_inputs(y, u, t))
    values = y_treated - y_control * _ratio(treated, taken - treated)
    return np.r_[0.0, taken], np.r_[0.0, values]


def perfect_uplift_curve(y: object, t: object) -> tuple[np.ndarray, np.ndarray]:
    """The optimum uplift curve (binary y): treated responders first, control non-responders next, then
    control responders and treated non-responders, the larger of the two groups first (as sklift)."""
    y, t = _arrays(y=y, t=t)
    y, t = _binary("y", y), _binary("t", t)
    control_responders = np.sum((y == 1) & (t == 0))
    treated_non_responders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_non_responders else t
    return uplift_curve(y, 2 * (y == t) + summand, t)


def perfect_qini_curve(y: object, t: object, negative_effect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The optimum Qini curve. With `negative_effect`, rows ranked by y * t - y * (1 - t) (treated
    responders first, control responders last); without it, the points (0, 0), (q, q), (n, q) where q is
    the total incremental outcome (as sklift; ValueError unless 0 <= q <= n)."""
    y, t = _arrays(y=y, t=t)
    y, t = y.astype(float), _binary("t", t)
    if negative_effect:
        return qini_curve(y, y * t - y * (1 - t), t)
    _both_groups(t)
    gain = y[t == 1].sum() - (t == 1).sum() * y[t == 0].sum() / (t == 0).sum()
    if not 0 <= gain <= y.size:
        raise ValueError(f"total incremental outcome {gain:g} is outside [0, {y.size}]: use negative_effect=True")
    return np.array([0.0, gain, y.size]), np.array([0.0, gain, gain])


def _normalised_area(model: tuple[np.ndarray, ...], perfect: tuple[np.ndarray, ...]) -> float:
    """(area(model) - area(random)) / (area(perfect) - area(random)), trapezoid areas, random the straight
    line from (0, 0) to the perfect curve's last point."""
    random = np.trapezoid([0.0, perfect[1][-1]], [0.0, perfect[0][-1]])
    best = np.trapezoid(perfect[1], perfect[0]) - random
    if best == 0:
        raise ValueError("the perfect curve has no area above the random line")
    return float((np.trapezoid(model[1], model[0]) - random) / best)


def qini_auc_score(y: object, u: object, t: object, negative_effect: bool = True) -> float:
    """The Qini coefficient: the area between the Qini curve and the random line, over the same area for
    `perfect_qini_curve`; 1 is a perfect ranking, 0 random."""
    y, u, t = _uplift_inputs(y, u, t)
    return _normalised_area(qini_curve(y, u, t), perfect_qini_curve(y, t, negative_effect))


def uplift_auc_score(y: object, u: object, t: object) -> float:
    """AUUC, normalised: the area between the uplift curve and the random line, over the same area for
    `perfect_uplift_curve` (binary y); 1 is a perfect ranking, 0 random."""
    y, u, t = _uplift_inputs(y, u, t)
    return _normalised_area(uplift_curve(y, u, t), perfect_uplift_curve(y, t))


def uplift_at_k(y: object, u: object, t: object, k: float = 0.3, strategy: str = "overall") -> float:
    """Treated mean outcome - control mean outcome among the top rows by u, as sklift.

    `k` is a share in (0, 1) or a row count. "overall": the top int(k * n) rows of all n rows (k rows when
    a count); "by_group": the top int(k * size) rows of the treated and of the control group separately
    (k of each when a count). Rows are ranked by a stable ascending sort of u, reversed (as sklift: tied
    rows come later ones first). Raises ValueError when a group has no rows in the top.
    """
    y, u, t = _uplift_inputs(y, u, t)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    count = isinstance(k, int | np.integer) and not isinstance(k, bool)
    if count and not 0 < k < y.size:
        raise ValueError(f"k={k} rows must be in 1..{y.size - 1}")
    if not count and not (isinstance(k, float | np.floating) and 0 < k < 1):
        raise ValueError(f"k must be a share in (0, 1) or a row count, got {k!r}")
    order = np.argsort(u, kind="mergesort")[::-1]
    y, t = y[order], t[order]
    if strategy == "overall":
        top = k if count else int(k * y.size)
        treated, control = y[:top][t[:top] == 1], y[:top][t[:top] == 0]
    else:
        treated, control = y[t == 1], y[t == 0]
        if count and k > min(treated.size, control.size):
            raise ValueError(f"k={k} rows is more than the treated ({treated.size}) or control ({control.size}) group")
        treated = treated[: k if count else int(k * treated.size)]
        control = control[: k if count else int(k * control.size)]
    if not treated.size or not control.size:
        raise ValueError(f"the top k={k} holds {treated.size} treated and {control.size} control rows")
    return float(treated.mean() - control.mean())


# --- policy value -------------------------------------------------------------------------------------


def policy_value(
    y: object,
    arm: object,
    chosen: object,
    propensity: object,
    cost: float = 0.0,
    cost_of: Mapping[str, float] | None = None,
    no_contact: str = "control",
) -> float:
    """Value per customer of the policy that picks `chosen`, by inverse propensity weighting on
    randomised trial data:

        V = (1 / n) * sum_i 1[arm_i == chosen_i] * (y_i - c(chosen_i)) / propensity_i

    `arm` is the action assigned in the trial and `propensity` its known probability per row. The contact
    cost c(a) is 0 for `no_contact`, `cost_of[a]` where given, and `cost` for any other action.
    """
    y, arm, chosen, propensity = _arrays(y=y, arm=arm, chosen=chosen, propensity=propensity)
    y, propensity = y.astype(float), propensity.astype(float)
    arm, chosen = arm.astype(str), chosen.astype(str)
    if not ((propensity > 0) & (propensity <= 1)).all():
        raise ValueError("propensity must be in (0, 1]")
    costs = dict(cost_of or {})
    charged = np.zeros(y.size)
    for action in np.unique(chosen):
        if action != no_contact:
            charged[chosen == action] = costs.get(action, cost)
    return float(np.mean((arm == chosen) * (y - charged) / propensity))


def policy_value_interval(
    y: object,
    arm: object,
    chosen: object,
    propensity: object,
    cost: float = 0.0,
    cost_of: Mapping[str, float] | None = None,
    no_contact: str = "control",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap percentile interval of `policy_value` (see `bootstrap_interval`)."""

    def stat(y: np.ndarray, arm: np.ndarray, chosen: np.ndarray, propensity: np.ndarray) -> float:
        return policy_value(y, arm, chosen, propensity, cost, cost_of, no_contact)

    return bootstrap_interval(stat, [y, arm, chosen, propensity], n=n, seed=seed, level=level)
