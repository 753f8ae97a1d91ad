"""How good and how private a synthetic table is, judged against real training rows and a real holdout.

Shape: per column 1 - KS statistic (numbers) or 1 - total variation distance (categories), as SDMetrics'
KSComplement / TVComplement. Pair trends: per pair of columns 1 - |corr_real - corr_synth| / 2 with
Spearman's correlation (Pearson on average ranks) for two numbers, else 1 - TVD of the two contingency
tables, numbers binned at the real deciles. Utility: a classifier trained on synthetic rows and one trained
on real rows, both tested on the real holdout. Privacy: distance to the closest training record (DCR) of
synthetic rows beside that of holdout rows, numbers rank-scaled to [0, 1] on the training rows, each
category mismatch counting 1 in the squared distance. Nulls are values of their own everywhere.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from mapwise.synth.transform import check_columns

DECILES = np.linspace(0.1, 0.9, 9)
NULL_POSITION = -1.0  # a null number's position: farther from every number than any two numbers are
MAX_CATEGORIES = 250  # classifier codes per categorical feature (the rarer values count as missing)
HISTOGRAM_BINS = 30
SKEW_RATIO = 10  # log-spaced histogram bins when the 99th percentile exceeds this many medians (the maximum 10x more)
_EXACT = 1e-9


def _numbers(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Float64).drop_nulls().to_numpy()


def ks_complement(real: pl.Series, synth: pl.Series) -> float:
    """1 - the largest gap between the two empirical CDFs (nulls dropped; 0 when only one side has values)."""
    a, b = np.sort(_numbers(real)), np.sort(_numbers(synth))
    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    grid = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b))
    return float(1 - gap.max())


def _shares(frame: pl.DataFrame) -> dict[tuple, float]:
    counts = frame.group_by(frame.columns).len(name="__n")
    return {row[:-1]: row[-1] / frame.height for row in counts.iter_rows()}


def tv_complement(real: pl.DataFrame, synth: pl.DataFrame) -> float:
    """1 - total variation distance between the distributions of the rows' values (one or more columns)."""
    p, q = _shares(real), _shares(synth)
    return float(1 - 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in p.keys() | q.keys()))


def column_shapes(real: pl.DataFrame, synth: pl.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, float]:
    """Per column: KSComplement for numbers, TVComplement for categories."""
    return {name: ks_complement(real[name], synth[name]) if name in numeric
            else tv_complement(real.select(name), synth.select(name))
            for name in check_columns(real, numeric, categorical)}


def _spearman(frame: pl.DataFrame, a: str, b: str) -> float:
    both = frame.select(a, b).drop_nulls()
    ranks = both.select(pl.all().rank("average").cast(pl.Float64))
    value = ranks.select(pl.corr(a, b)).item() if both.height > 1 else None
    return 0.0 if value is None or np.isnan(value) else float(value)  # undefined (a constant): no correlation


def _binned(frame: pl.DataFrame, name: str, edges: np.ndarray) -> pl.Series:
    x = frame[name].cast(pl.Float64)
    bins = np.searchsorted(edges, x.fill_null(np.nan).to_numpy(), "right")
    return pl.Series(name, bins).set(x.is_null(), None)


def pair_trends(real: pl.DataFrame, synth: pl.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, float]:
    """Per pair "a|b": correlation similarity for two numbers (Spearman), else contingency similarity."""
    columns = check_columns(real, numeric, categorical)
    edges = {n: np.unique(np.quantile(_numbers(real[n]), DECILES)) if len(_numbers(real[n])) else np.zeros(0)
             for n in numeric}

    def discrete(frame: pl.DataFrame, name: str) -> pl.Series:
        return _binned(frame, name, edges[name]) if name in numeric else frame[name]

    scores = {}
    for a, b in combinations(columns, 2):
        if a in numeric and b in numeric:
            scores[f"{a}|{b}"] = 1 - abs(_spearman(real, a, b) - _spearman(synth, a, b)) / 2
        else:
            scores[f"{a}|{b}"] = tv_complement(pl.DataFrame([discrete(real, a), discrete(real, b)]),
                                               pl.DataFrame([discrete(synth, a), discrete(synth, b)]))
    return scores


def correlations(frame: pl.DataFrame, numeric: list[str]) -> list[list[float]]:
    """The Spearman correlation matrix of the numbers (what the report's heatmaps show)."""
    return [[1.0 if a == b else _spearman(frame, a, b) for b in numeric] for a in numeric]


def _feature_matrix(frames: list[pl.DataFrame], numeric: list[str], categorical: list[str]) -> list[np.ndarray]:
    """Numbers as floats (NaN for null), categories as codes shared by all frames (NaN for rare values)."""
    columns = {n: [f[n].cast(pl.Float64).fill_null(np.nan).to_numpy() for f in frames] for n in numeric}
    for name in categorical:
        counts = pl.concat([f[name] for f in frames[:2]]).value_counts(name="__n")
        common = counts.sort(["__n", name], descending=[True, False], nulls_last=True)[name].to_list()
        code = {v: float(i) for i, v in enumerate(common[:MAX_CATEGORIES])}
        columns[name] = [np.array([code.get(v, np.nan) for v in f[name].to_list()]) for f in frames]
    return [np.column_stack([columns[n][i] for n in (*numeric, *categorical)]) for i in range(len(frames))]


def _probabilities(x: np.ndarray, y: np.ndarray, test: np.ndarray, classes: list, categorical: np.ndarray,
                   seed: int) -> np.ndarray:
    """Class probabilities on `test` over `classes` (0 for a class the training rows lack)."""
    out = np.zeros((len(test), len(classes)))
    seen = sorted(set(y.tolist()))
    if len(seen) == 1:  # one class: nothing to learn, it is always the answer
        out[:, classes.index(seen[0])] = 1
        return out
    model = HistGradientBoostingClassifier(categorical_features=categorical if categorical.any() else None,
                                           random_state=seed)
    with threadpool_limits(1, user_api="openmp"):  # small tables: OpenMP threads only wait on busy cores
        proba = model.fit(x, y).predict_proba(test)
    for j, cls in enumerate(model.classes_.tolist()):
        out[:, classes.index(cls)] = proba[:, j]
    return out


def _scores(y: np.ndarray, proba: np.ndarray, classes: list) -> dict:
    """Macro one-vs-rest ROC AUC (over classes with both outcomes in `y`) and accuracy."""
    aucs = [roc_auc_score(y == cls, proba[:, j]) for j, cls in enumerate(classes) if 0 < (y == cls).sum() < len(y)]
    return {"roc_auc": float(np.mean(aucs)) if aucs else None,
            "accuracy": float(np.mean(np.array(classes, dtype=object)[proba.argmax(axis=1)] == y))}


def utility(train_real: pl.DataFrame, synth: pl.DataFrame, holdout: pl.DataFrame, target: str, numeric: list[str],
            categorical: list[str], seed: int) -> dict:
    """Train on synthetic / test on real (TSTR) against train on real / test on real (TRTR): the same
    HistGradientBoostingClassifier predicting `target` from the other columns, scored on the holdout."""
    check_columns(train_real, numeric, categorical)
    frames = [f.filter(pl.col(target).is_not_null()) for f in (train_real, synth, holdout)]
    nums = [n for n in numeric if n != target]
    cats = [n for n in categorical if n != target]
    x_real, x_synth, x_test = _feature_matrix(frames, nums, cats)
    y_real, y_synth, y_test = (np.array(f[target].cast(pl.String).to_list(), dtype=object) for f in frames)
    classes = sorted(set(y_real.tolist()) | set(y_synth.tolist()) | set(y_test.tolist()))
    is_cat = np.array([False] * len(nums) + [True] * len(cats))
    trtr = _scores(y_test, _probabilities(x_real, y_real, x_test, classes, is_cat, seed), classes)
    tstr = _scores(y_test, _probabilities(x_synth, y_synth, x_test, classes, is_cat, seed), classes)
    gap = None if None in (trtr["roc_auc"], tstr["roc_auc"]) else tstr["roc_auc"] - trtr["roc_auc"]
    return {"target": target, "features": nums + cats, "classes": len(classes), "trtr": trtr, "tstr": tstr,
            "tstr_minus_trtr_roc_auc": gap}


def _encoder(train: pl.DataFrame, numeric: list[str], categorical: list[str]):
    """frame -> points: numbers at their mid-rank ECDF among the training values (null at NULL_POSITION),
    categories one-hot over the training values plus one slot for unseen ones, scaled by 1/sqrt(2)."""
    check_columns(train, numeric, categorical)
    sorted_values = {n: np.sort(_numbers(train[n])) for n in numeric}
    vocab = {n: {v: i for i, v in enumerate(train[n].unique(maintain_order=True).to_list())} for n in categorical}

    def encode(frame: pl.DataFrame) -> np.ndarray:
        parts = []
        for name in numeric:
            values, x = sorted_values[name], frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            rank = (np.searchsorted(values, x, "left") + np.searchsorted(values, x, "right")) / (2 * max(len(values), 1))
            parts.append(np.where(np.isnan(x), NULL_POSITION, rank)[:, None])
        for name in categorical:
            slots = vocab[name]
            index = np.array([slots.get(v, len(slots)) for v in frame[name].to_list()], dtype=int)
            parts.append(np.eye(len(slots) + 1)[index] / np.sqrt(2))
        return np.hstack(parts) if parts else np.zeros((frame.height, 0))

    return encode


def closest_distances(train_real: pl.DataFrame, other: pl.DataFrame, numeric: list[str],
                      categorical: list[str]) -> np.ndarray:
    """Each row of `other`: its Euclidean distance to the closest training row (DCR)."""
    encode = _encoder(train_real, numeric, categorical)
    if other.height == 0:
        return np.zeros(0)
    index = NearestNeighbors(n_neighbors=1).fit(encode(train_real))
    return index.kneighbors(encode(other))[0][:, 0]


def distance_threshold(train_real: pl.DataFrame, holdout: pl.DataFrame, quantile: float, numeric: list[str],
                       categorical: list[str]) -> float:
    """The `quantile` of the holdout rows' DCR: how close a fresh real customer may come to a training row."""
    return float(np.quantile(closest_distances(train_real, holdout, numeric, categorical), quantile))


def near_copies(train_real: pl.DataFrame, synth: pl.DataFrame, threshold: float, numeric: list[str],
                categorical: list[str]) -> np.ndarray:
    """True for synthetic rows at most `threshold` from a training row (exact copies always)."""
    return closest_distances(train_real, synth, numeric, categorical) <= max(threshold, _EXACT)


def privacy(train_real: pl.DataFrame, synth: pl.DataFrame, holdout: pl.DataFrame, numeric: list[str],
            categorical: list[str]) -> dict:
    """DCR of synthetic rows beside DCR of holdout rows (the baseline): medians, 5th percentiles, the share of
    synthetic rows closer than the holdout's 5th percentile, exact copies, and both distributions binned."""
    synthetic = closest_distances(train_real, synth, numeric, categorical)
    real = closest_distances(train_real, holdout, numeric, categorical)
    holdout_p5 = float(np.quantile(real, 0.05))
    edges = np.linspace(0, max(synthetic.max(initial=0), real.max(initial=0)) or 1.0, HISTOGRAM_BINS + 1)
    return {
        "synthetic_median": float(np.median(synthetic)), "synthetic_p5": float(np.quantile(synthetic, 0.05)),
        "holdout_median": float(np.median(real)), "holdout_p5": holdout_p5,
        "share_closer_than_holdout_p5": float(np.mean(synthetic < holdout_p5)),
        "exact_copies": int((synthetic <= _EXACT).sum()), "holdout_exact_copies": int((real <= _EXACT).sum()),
        "histogram": {"edges": edges.tolist(), "synthetic": (np.histogram(synthetic, edges)[0] / len(synthetic)).tolist(),
                      "holdout": (np.histogram(real, edges)[0] / len(real)).tolist()},
    }


def _edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Histogram bin edges from the real values: log-spaced when skewed (SKEW_RATIO) and nearly all positive (the
    rest fall in the first bin), else even."""
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    positive = values[values > 0]
    median = np.median(values) if len(values) else 0.0
    skewed = (len(positive) >= 0.95 * len(values) > 0 and median > 0
              and max(np.quantile(values, 0.99), high / SKEW_RATIO) > SKEW_RATIO * median)
    if skewed:
        return np.geomspace(positive.min(), high, HISTOGRAM_BINS + 1), True
    return np.linspace(low, high if high > low else low + 1, HISTOGRAM_BINS + 1), False


def _histogram(frame: pl.DataFrame, name: str, edges: np.ndarray) -> list[float]:
    x = _numbers(frame[name])
    return (np.histogram(np.clip(x, edges[0], edges[-1]), edges)[0] / max(len(x), 1)).tolist()


def _summary(shapes: dict[str, float], trends: dict[str, float]) -> dict:
    shape = float(np.mean(list(shapes.values()))) if shapes else None
    trend = float(np.mean(list(trends.values()))) if trends else None
    known = [s for s in (shape, trend) if s is not None]
    return {"shape": shape, "pair_trends": trend, "quality": float(np.mean(known)) if known else None}


def evaluate(train_real: pl.DataFrame, holdout: pl.DataFrame, synthetic: dict[str, pl.DataFrame], numeric: list[str],
             categorical: list[str], target: str, seed: int) -> dict:
    """One JSON-able report: per generator shapes, pair trends, utility and privacy with a summary (mean shape,
    mean pair trend, their mean `quality`); the holdout scored the same way as the real-vs-real reference."""
    real = {"rows": train_real.height, "correlations": correlations(train_real, numeric), "histograms": {}}
    for name in numeric:
        edges, log = _edges(_numbers(train_real[name]))
        real["histograms"][name] = {"edges": edges.tolist(), "log": log, "shares": _histogram(train_real, name, edges)}
    generators = {}
    for name, synth in synthetic.items():
        shapes = column_shapes(train_real, synth, numeric, categorical)
        trends = pair_trends(train_real, synth, numeric, categorical)
        generators[name] = {
            "rows": synth.height, **_summary(shapes, trends), "column_shapes": shapes, "pair_trend_scores": trends,
            "utility": utility(train_real, synth, holdout, target, numeric, categorical, seed),
            "privacy": privacy(train_real, synth, holdout, numeric, categorical),
            "correlations": correlations(synth, numeric),
            "histograms": {n: _histogram(synth, n, np.array(h["edges"])) for n, h in real["histograms"].items()},
        }
    reference = _summary(column_shapes(train_real, holdout, numeric, categorical),
                         pair_trends(train_real, holdout, numeric, categorical))
    return {"numeric": numeric, "categorical": categorical, "target": target, "correlation": "spearman",
            "real": real, "holdout": {"rows": holdout.height, **reference}, "generators": generators}
