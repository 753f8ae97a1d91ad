"""Model inputs for targeting: a table's columns encoded as one float matrix, and back to names.

Numbers and flags are standardised, skewed non-negative numbers after log1p (a missing value becomes the mean, with a `<name>=missing`
indicator when training saw any); text columns with few values are one-hot (an unseen or missing
value is all zeros); other columns are left out and named in `dropped`. The encoder is plain JSON,
so the HTTP service encodes posted rows exactly as training did, without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from mapwise.errors import MapwiseError

MISSING = "missing"
SKEWED = 2.0  # skewness above which a non-negative number is log-transformed


@dataclass(frozen=True)
class Numeric:
    name: str
    mean: float
    std: float
    missing: bool  # training saw missing values: an indicator column follows
    log: bool = False  # non-negative and skewed: log1p before standardising
    edges: list[float] = field(default_factory=list)  # quantile bin edges: piecewise-linear encoding columns follow


@dataclass(frozen=True)
class Categorical:
    name: str
    values: list[str]


@dataclass(frozen=True)
class Encoder:
    """How a table's feature columns become the model's float32 input."""

    numeric: list[Numeric]
    categorical: list[Categorical]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature

    @classmethod
    def fit(cls, frame: pl.DataFrame, exclude: set[str] | frozenset[str] = frozenset(), max_values: int = 50,
            bins: int = 0) -> Encoder:
        """`bins` > 0 adds a piecewise-linear encoding of each number over that many quantile bins
        (Gorishniy et al. 2022: it lets an MLP bend where gradient boosting would split)."""
        numeric, categorical, dropped = [], [], {}
        for name, dtype in frame.schema.items():
            if name in exclude:
                continue
            values = frame[name]
            if dtype.is_numeric() or dtype == pl.Boolean:
                x = values.cast(pl.Float64).fill_nan(None)
                if x.drop_nulls().is_empty():
                    dropped[name] = "always missing"
                    continue
                log = dtype != pl.Boolean and x.min() >= 0 and (x.skew() or 0) > SKEWED
                x = x.log1p() if log else x
                std = x.std() or 0.0
                edges = []
                if bins and dtype != pl.Boolean:
                    qs = np.nanquantile(x.drop_nulls().to_numpy(), np.linspace(0, 1, bins + 1))
                    edges = [float(e) for e in np.unique(qs)]
                    edges = edges if len(edges) > 2 else []
                numeric.append(Numeric(name, float(x.mean()), float(std) if std > 0 else 1.0, bool(x.null_count()), log,
                                       edges))
            elif dtype in (pl.String, pl.Categorical, pl.Enum):
                seen = values.drop_nulls().cast(pl.String).unique().sort().to_list()
                if not seen:
                    dropped[name] = "always missing"
                elif len(seen) > max_values:
                    dropped[name] = f"{len(seen)} distinct values (more than {max_values})"
                else:
                    categorical.append(Categorical(name, seen))
            else:
                dropped[name] = f"type {dtype}"
        if not numeric and not categorical:
            raise MapwiseError("no usable feature column (numbers, flags or text with few values)")
        return cls(numeric, categorical, dropped)

    @property
    def inputs(self) -> dict[str, str]:
        """Feature name -> 'number' | 'category': what a caller may send."""
        return {**{n.name: "number" for n in self.numeric}, **{c.name: "category" for c in self.categorical}}

    @property
    def columns(self) -> list[str]:
        names = []
        for n in self.numeric:
            names += [n.name] + ([f"{n.name}={MISSING}"] if n.missing else [])
            names += [f"{n.name}#bin{i}" for i in range(len(n.edges) - 1)]
        for cat in self.categorical:
            names += [f"{cat.name}={v}" for v in cat.values]
        return names

    @property
    def groups(self) -> list[str]:
        """The feature each encoded column belongs to (attributions are summed per feature)."""
        groups = []
        for n in self.numeric:
            groups += [n.name] * ((2 if n.missing else 1) + max(len(n.edges) - 1, 0))
        for cat in self.categorical:
            groups += [cat.name] * len(cat.values)
        return groups

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        """[rows, columns] float32; a feature column absent from `frame` counts as missing."""
        parts = []
        for n in self.numeric:
            x = frame[n.name].cast(pl.Float64, strict=False).to_numpy() if n.name in frame.columns else np.full(frame.height, np.nan)
            x = np.asarray(x, dtype=np.float64)
            if n.log:
                with np.errstate(invalid="ignore", divide="ignore"):
                    x = np.log1p(np.maximum(x, 0.0))
            missing = ~np.isfinite(x)
            parts.append(np.where(missing, 0.0, (x - n.mean) / n.std))
            if n.missing:
                parts.append(missing.astype(np.float64))
            if n.edges:
                lo, hi = np.asarray(n.edges[:-1]), np.asarray(n.edges[1:])
                with np.errstate(invalid="ignore"):
                    ple = np.clip((x[:, None] - lo[None, :]) / (hi - lo)[None, :], 0.0, 1.0)
                parts.append(np.where(missing[:, None], 0.0, ple))
        for cat in self.categorical:
            text = frame[cat.name].cast(pl.String) if cat.name in frame.columns else pl.Series([None] * frame.height, dtype=pl.String)
            codes = text.replace_strict(cat.values, list(range(len(cat.values))), default=-1, return_dtype=pl.Int32).to_numpy()
            parts.append((codes[:, None] == np.arange(len(cat.values))[None, :]).astype(np.float64))
        matrix = np.concatenate([p.reshape(frame.height, -1) for p in parts], axis=1)
        return matrix.astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Encoder:
        return cls([Numeric(**n) for n in data["numeric"]], [Categorical(**c) for c in data["categorical"]],
                   dict(data.get("dropped", {})))


def rows_frame(rows: list[dict], encoder: Encoder) -> pl.DataFrame:
    """Posted feature rows as a frame the encoder reads; unknown names or wrong types raise ValueError naming them."""
    kinds = encoder.inputs
    data: dict[str, list] = {name: [] for name in kinds}
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(kinds))
        if unknown:
            raise ValueError(f"rows[{i}]: unknown feature(s) {', '.join(unknown[:5])} (known: {', '.join(kinds)})")
        for name, kind in kinds.items():
            value = row.get(name)
            if value is not None:
                number = isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, bool)
                if kind == "number" and not number:
                    raise ValueError(f"rows[{i}].{name}: expected a number or true/false, got {type(value).__name__}")
                if kind == "category" and not isinstance(value, str):
                    raise ValueError(f"rows[{i}].{name}: expected text, got {type(value).__name__}")
                if kind == "number" and not np.isfinite(float(value)):
                    raise ValueError(f"rows[{i}].{name}: not a finite number")
            data[name].append(float(value) if kind == "number" and value is not None else value)
    schema = {name: pl.Float64 if kind == "number" else pl.String for name, kind in kinds.items()}
    return pl.DataFrame(data, schema=schema)
