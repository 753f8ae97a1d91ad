"""CTGAN's data transformer (Xu et al. 2019): table rows <-> the vectors a tabular GAN reads and writes.

A number becomes (alpha, mode): a Bayesian Gaussian mixture finds its modes, each value gets a mode drawn
from its posterior and alpha = (v - mu) / (4 sigma) clipped to [-0.99, 0.99]; a null number is one more
mode (the "is null" indicator), and so is a value held by at least SPIKE_SHARE of the rows (a point mass
such as a return rate of 0: exact, no spread), as in CTAB-GAN's mixed-type encoding (Zhao et al. 2021),
the mixture fitted on the other values. A heavy-tailed number (one that sign(v) log(1 + |v|) makes more
symmetric, its skewness nearer 0) is modelled on that scale and mapped back with the inverse. A category (nulls a value of their own) becomes a one-hot vector.
`inverse` maps generator outputs back to a frame with the original dtypes: numbers clipped to the
range seen, integers rounded. The fitted transformer is a JSON-able dict (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from mapwise.errors import MapwiseError

WEIGHT_PRIOR = 0.001  # Dirichlet-process weight concentration: few modes unless the data needs them
MIN_WEIGHT = 0.005  # modes lighter than this are dropped
FIT_ROWS = 50_000  # the mixture is fitted on at most this many sampled values
ALPHA_CLIP = 0.99
SPIKE_SHARE = 0.1  # a value with at least this share of a number's non-null rows is a mode of its own
COUNT_SPIKE_SHARE = 0.01  # the same for an integer (a count: its common values are exact, not rounded draws)
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_DTYPES = {str(d): d for d in (*_INTEGERS, pl.Float32, pl.Float64, pl.String, pl.Boolean)}


@dataclass(frozen=True)
class Span:
    """A block of the encoded vector: `tanh` (one alpha) or `softmax` (a one-hot)."""

    column: str
    start: int
    width: int
    activation: str


@dataclass
class NumericColumn:
    name: str
    dtype: str
    weights: list[float]
    means: list[float]
    stds: list[float]
    spikes: list[float]  # point masses: modes after the mixture's, before the null mode
    low: float | None
    high: float | None
    nullable: bool
    log: bool  # the mixture models sign(v) log(1 + |v|): a heavy tail is spread out

    @property
    def modes(self) -> int:
        return len(self.means) + len(self.spikes) + self.nullable


@dataclass
class CategoricalColumn:
    name: str
    dtype: str
    values: list  # original values, sorted, null last when present
    counts: list[int]  # training rows per value


def _dtype_name(frame: pl.DataFrame, name: str, *, numeric: bool) -> str:
    dtype = frame.schema[name]
    if str(dtype) not in _DTYPES or (numeric and not dtype.is_numeric()):
        kind = "a number (integer or float)" if numeric else "a string, boolean or integer"
        raise MapwiseError(f"column {name!r}: dtype {dtype} cannot be synthesised as {kind}; cast it first")
    return str(dtype)


def check_columns(frame: pl.DataFrame, numeric: list[str], categorical: list[str]) -> list[str]:
    """The modelled columns in the frame's order; a missing, doubly listed or unsupported column is a MapwiseError."""
    missing = [n for n in (*numeric, *categorical) if n not in frame.columns]
    if missing:
        raise MapwiseError(f"column {missing[0]!r} is not in the table (columns: {', '.join(frame.columns)})")
    both = set(numeric) & set(categorical)
    if both:
        raise MapwiseError(f"column {sorted(both)[0]!r} is listed as both numeric and categorical")
    for name in (*numeric, *categorical):
        _dtype_name(frame, name, numeric=name in numeric)
    return [n for n in frame.columns if n in {*numeric, *categorical}]


def _symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _symexp(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.expm1(np.abs(x))


def _skewness(x: np.ndarray) -> float:
    centred = x - x.mean()
    spread = np.mean(centred**2)
    return float(np.mean(centred**3) / spread**1.5) if spread > 0 else 0.0


def heavy_tailed(values: np.ndarray) -> bool:
    """Whether sign(v) log(1 + |v|) brings the values' skewness nearer 0."""
    return abs(_skewness(_symlog(values))) < abs(_skewness(values))


def _fit_modes(values: np.ndarray, max_modes: int, rng: np.random.Generator, seed: int) -> tuple[list, list, list]:
    """Weights, means and standard deviations of the mixture's modes heavier than MIN_WEIGHT."""
    if len(values) > FIT_ROWS:
        values = rng.choice(values, FIT_ROWS, replace=False)
    distinct = np.unique(values)
    if len(distinct) < 2:  # constant or empty: one mode; the range clip restores the constant
        return [1.0], [float(distinct[0]) if len(distinct) else 0.0], [1.0]
    centre, scale = values.mean(), values.std()
    mixture = BayesianGaussianMixture(
        n_components=min(max_modes, len(distinct)), weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=WEIGHT_PRIOR, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(((values - centre) / scale)[:, None])
    keep = mixture.weights_ > MIN_WEIGHT
    weights = mixture.weights_[keep] / mixture.weights_[keep].sum()
    means = centre + scale * mixture.means_[keep, 0]
    stds = scale * np.sqrt(mixture.covariances_[keep].reshape(-1))
    return weights.tolist(), means.tolist(), np.maximum(stds, 1e-12 * max(scale, 1.0)).tolist()


def _category_index(series: pl.Series, values: list) -> np.ndarray:
    known = [v for v in values if v is not None]
    index = series.replace_strict(known, list(range(len(known))), default=None, return_dtype=pl.Int64)
    unknown = series.is_not_null() & index.is_null()
    if unknown.any():
        raise MapwiseError(f"column {series.name!r}: value {series.filter(unknown)[0]!r} was not seen when fitting")
    return index.fill_null(len(known)).to_numpy()  # null is the last value


@dataclass
class Transformer:
    """Fitted encoders, one per column, in `columns` order."""

    columns: list[str]
    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn]

    @classmethod
    def fit(cls, frame: pl.DataFrame, numeric: list[str], categorical: list[str], *, max_modes: int,
            seed: int) -> Transformer:
        columns = check_columns(frame, numeric, categorical)
        rng = np.random.default_rng(seed)
        nums = []
        for name in numeric:
            dtype = _dtype_name(frame, name, numeric=True)
            values = frame[name].drop_nulls().cast(pl.Float64).to_numpy()
            distinct, counts = np.unique(values, return_counts=True)
            share = COUNT_SPIKE_SHARE if _DTYPES[dtype] in _INTEGERS else SPIKE_SHARE
            spikes = distinct[counts >= share * len(values)]
            rest = values[~np.isin(values, spikes)]
            log = heavy_tailed(rest) if len(rest) else False
            weights, means, stds = _fit_modes(_symlog(rest) if log else rest, max_modes, rng, seed)
            nums.append(NumericColumn(name, dtype, weights, means, stds, spikes.tolist(),
                                      float(values.min()) if len(values) else None,
                                      float(values.max()) if len(values) else None, frame[name].null_count() > 0, log))
        cats = []
        for name in categorical:
            dtype = _dtype_name(frame, name, numeric=False)
            counts = frame[name].value_counts(name="n").sort(name, nulls_last=True)
            cats.append(CategoricalColumn(name, dtype, counts[name].to_list(), counts["n"].to_list()))
        return cls(columns, nums, cats)

    def _specs(self) -> list[NumericColumn | CategoricalColumn]:
        by_name = {s.name: s for s in (*self.numeric, *self.categorical)}
        return [by_name[n] for n in self.columns]

    @property
    def spans(self) -> list[Span]:
        """Every block of the encoded vector, in order."""
        spans, start = [], 0
        for spec in self._specs():
            if isinstance(spec, NumericColumn):
                blocks = [(1, "tanh"), (spec.modes, "softmax")]
            else:
                blocks = [(len(spec.values), "softmax")]
            for width, activation in blocks:
                spans.append(Span(spec.name, start, width, activation))
                start += width
        return spans

    @property
    def categorical_spans(self) -> list[Span]:
        """The one-hot spans of the categorical columns (what the conditional vector picks from)."""
        by_column = {s.column: s for s in self.spans}  # in the order of `categorical`, which conditions index
        return [by_column[s.name] for s in self.categorical]

    @property
    def width(self) -> int:
        last = self.spans[-1]
        return last.start + last.width

    def transform(self, frame: pl.DataFrame, *, seed: int) -> np.ndarray:
        """Rows -> encoded float32 matrix; each number's mode drawn from its posterior."""
        rng = np.random.default_rng(seed)
        out = np.zeros((frame.height, self.width), dtype=np.float32)
        rows = np.arange(frame.height)
        spans = iter(self.spans)
        for spec in self._specs():
            if isinstance(spec, CategoricalColumn):
                span = next(spans)
                out[rows, span.start + _category_index(frame[spec.name], spec.values)] = 1
                continue
            alpha, modes = next(spans), next(spans)
            x = frame[spec.name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            scaled = np.nan_to_num(_symlog(x) if spec.log else x)
            means, stds, spikes = np.array(spec.means), np.array(spec.stds), np.array(spec.spikes)
            log_post = np.log(spec.weights) - np.log(stds) - 0.5 * ((scaled[:, None] - means) / stds) ** 2
            post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
            cum = np.cumsum(post / post.sum(axis=1, keepdims=True), axis=1)
            mode = np.minimum((cum < rng.random(len(x))[:, None]).sum(axis=1), len(means) - 1)
            a = np.clip((scaled - means[mode]) / (4 * stds[mode]), -ALPHA_CLIP, ALPHA_CLIP)
            at_spike = x[:, None] == np.append(spikes, np.nan)[None, :]  # never equal to the appended nan
            mode = np.where(at_spike.any(axis=1), len(means) + at_spike.argmax(axis=1), mode)
            mode = np.where(np.isnan(x), len(means) + len(spikes), mode)  # the null mode
            out[:, alpha.start] = np.where(mode < len(means), a, 0.0)
            out[rows, modes.start + mode] = 1
        return out

    def inverse(self, data: np.ndarray) -> pl.DataFrame:
        """Generator outputs (alphas in [-1, 1], scores per one-hot) -> a frame with the original dtypes."""
        columns = []
        spans = iter(self.spans)
        for spec in self._specs():
            dtype = _DTYPES[spec.dtype]
            if isinstance(spec, CategoricalColumn):
                span = next(spans)
                index = data[:, span.start:span.start + span.width].argmax(axis=1)
                columns.append(pl.Series(spec.name, np.array(spec.values, dtype=object)[index].tolist(), dtype=dtype))
                continue
            alpha, modes = next(spans), next(spans)
            mode = data[:, modes.start:modes.start + modes.width].argmax(axis=1)
            k, spikes = len(spec.means), np.array(spec.spikes + [np.nan])  # after the spikes: the null mode
            mixture = np.minimum(mode, k - 1)
            x = np.clip(data[:, alpha.start], -1, 1) * 4 * np.array(spec.stds)[mixture] + np.array(spec.means)[mixture]
            if spec.log:
                x = _symexp(x)
            if spec.low is not None:
                x = np.clip(x, spec.low, spec.high)
            x = np.where(mode < k, x, spikes[np.maximum(mode - k, 0)])
            if dtype in _INTEGERS:
                x = np.round(x)
            columns.append(pl.Series(spec.name, x).fill_nan(None).cast(dtype))
        return pl.DataFrame(columns)

    def to_dict(self) -> dict:
        """JSON-able: what `from_dict` reads back."""
        return {"columns": self.columns, "numeric": [asdict(s) for s in self.numeric],
                "categorical": [asdict(s) for s in self.categorical]}

    @classmethod
    def from_dict(cls, data: dict) -> Transformer:
        return cls(list(data["columns"]), [NumericColumn(**s) for s in data["numeric"]],
                   [CategoricalColumn(**s) for s in data["categorical"]])
