"""Baseline generators beside the GAN: a Gaussian copula and independent marginals, same fit / sample shape.

Every column is mapped to (0, 1) through its empirical marginal. A number takes its mid-rank among the
training values; its nulls take the bottom of the interval, [0, null share). A category takes a random
point in its own interval of the CDF, the categories ordered by frequency. Sampling maps uniform values
back: numbers through the empirical quantiles (linear between training values, integers rounded),
categories by the interval they fall in. `GaussianCopula` draws the uniforms from a Gaussian copula
with the correlation of the training rows' normal scores; `Independent` draws each column on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import ndtr, ndtri

from mapwise.synth.transform import check_columns

_EDGE = 1e-9  # uniforms are kept inside (0, 1) before normal scores


@dataclass
class _Marginal:
    name: str
    dtype: pl.DataType
    numeric: bool
    values: np.ndarray  # numbers: sorted training values; categories: values by descending frequency
    bounds: np.ndarray  # numbers: [null share]; categories: upper CDF bound of each value

    @classmethod
    def fit(cls, series: pl.Series, numeric: bool) -> _Marginal:
        if numeric:
            values = np.sort(series.drop_nulls().cast(pl.Float64).to_numpy())
            return cls(series.name, series.dtype, True, values, np.array([series.null_count() / max(len(series), 1)]))
        counts = series.value_counts(name="n").sort(["n", series.name], descending=[True, False], nulls_last=True)
        return cls(series.name, series.dtype, False, np.array(counts[series.name].to_list(), dtype=object),
                   np.cumsum(counts["n"].to_numpy()) / len(series))

    def to_uniform(self, series: pl.Series, rng: np.random.Generator) -> np.ndarray:
        if self.numeric:
            null_share = self.bounds[0]
            x = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
            mid_rank = (np.searchsorted(self.values, x, "left") + np.searchsorted(self.values, x, "right")) / 2
            u = null_share + (1 - null_share) * mid_rank / max(len(self.values), 1)
            return np.where(np.isnan(x), rng.random(len(x)) * null_share, u)
        lookup = {v: i for i, v in enumerate(self.values)}
        index = np.array([lookup[v] for v in series.to_list()], dtype=int)
        lower = np.concatenate([[0.0], self.bounds[:-1]])
        return lower[index] + rng.random(len(index)) * (self.bounds[index] - lower[index])

    def from_uniform(self, u: np.ndarray) -> pl.Series:
        if not self.numeric:
            index = np.minimum(np.searchsorted(self.bounds, u, "right"), len(self.values) - 1)
            return pl.Series(self.name, self.values[index].tolist(), dtype=self.dtype)
        null_share = self.bounds[0]
        if len(self.values) == 0:
            return pl.Series(self.name, [None] * len(u), dtype=self.dtype)
        q = np.clip((u - null_share) / max(1 - null_share, _EDGE), 0, 1)
        x = np.quantile(self.values, q) if len(u) else np.zeros(0)
        if self.dtype.is_integer():
            x = np.round(x)
        return pl.Series(self.name, np.where(u < null_share, np.nan, x)).fill_nan(None).cast(self.dtype)


def _correlation(z: np.ndarray) -> np.ndarray:
    """The correlation of normal scores, constant columns uncorrelated, made positive definite."""
    if z.shape[1] < 2 or len(z) < 2:
        return np.eye(z.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(z, rowvar=False))
    np.fill_diagonal(corr, 1.0)
    eigenvalues, vectors = np.linalg.eigh(corr)
    corr = vectors @ np.diag(np.clip(eigenvalues, 1e-6, None)) @ vectors.T
    scale = np.sqrt(np.diag(corr))
    return corr / np.outer(scale, scale)


class GaussianCopula:
    """Empirical marginals joined by a Gaussian copula fitted on the training rows' normal scores."""

    correlated = True

    def __init__(self, marginals: list[_Marginal], correlation: np.ndarray) -> None:
        self.marginals, self.correlation = marginals, correlation
        self.numeric = [m.name for m in marginals if m.numeric]
        self.categorical = [m.name for m in marginals if not m.numeric]

    @classmethod
    def fit(cls, frame: pl.DataFrame, numeric: list[str], categorical: list[str], seed: int):
        marginals = [_Marginal.fit(frame[name], name in numeric) for name in check_columns(frame, numeric, categorical)]
        if not cls.correlated:
            return cls(marginals, np.eye(len(marginals)))
        rng = np.random.default_rng(seed)
        u = np.column_stack([m.to_uniform(frame[m.name], rng) for m in marginals]) if marginals else np.zeros((0, 0))
        return cls(marginals, _correlation(ndtri(np.clip(u, _EDGE, 1 - _EDGE))))

    def sample(self, n: int, seed: int) -> pl.DataFrame:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, len(self.marginals))) @ np.linalg.cholesky(self.correlation).T
        u = ndtr(z)
        return pl.DataFrame([m.from_uniform(u[:, j]) for j, m in enumerate(self.marginals)])


class Independent(GaussianCopula):
    """Each column drawn from its own empirical marginal: every dependence between columns lost."""

    correlated = False


GENERATORS = {"gaussian_copula": GaussianCopula, "independent": Independent}
