"""Synthetic training rows for scarce segments: a CTGAN fitted on the training rows (label included), sampled
conditionally on each segment that has fewer rows than asked. Validation and test rows are never touched."""

from __future__ import annotations

import polars as pl

from mapwise.errors import MapwiseError
from mapwise.params import AugmentParams
from mapwise.synth.gan import CTGAN


def scarce_segments(train: pl.DataFrame, p: AugmentParams) -> dict[str, int]:
    """Segment value -> training rows, for the segments with fewer than `p.min_rows` (and at least 2 to learn from)."""
    if p.segment not in train.columns:
        raise MapwiseError(f"augment.segment '{p.segment}' is not a column of the task's table")
    counts = train.group_by(pl.col(p.segment).cast(pl.String)).len().drop_nulls(p.segment)
    return {value: n for value, n in counts.sort(p.segment).iter_rows() if 2 <= n < p.min_rows}


def synthetic_rows(train: pl.DataFrame, columns: list[str], label: str, p: AugmentParams, *, seed: int
                   ) -> tuple[pl.DataFrame, dict]:
    """Rows to add to `train` (its `columns` and `label`, same dtypes; other columns null): min_rows - n per scarce
    segment, drawn by a CTGAN conditioned on the segment. Booleans and the label are generated as categories."""
    scarce = scarce_segments(train, p)
    report = {"segment": p.segment, "min_rows": p.min_rows,
              "segments": {v: {"real_rows": n, "synthetic_rows": p.min_rows - n} for v, n in scarce.items()}}
    if not scarce:
        return train.clear(), report
    used = [col for col in dict.fromkeys([*columns, p.segment, label]) if col in train.columns]
    dtypes = train.select(used).schema
    numeric = [col for col in used if dtypes[col].is_numeric() and col != label]
    categorical = [col for col in used if col not in numeric]
    as_text = train.select(pl.col(numeric), *[pl.col(col).cast(pl.String) for col in categorical])
    gan = CTGAN.fit(as_text, numeric, categorical, p.gan, seed=seed)
    drawn = [gan.sample(p.min_rows - n, seed=seed + i, condition={p.segment: value})
             for i, (value, n) in enumerate(scarce.items())]
    rows = pl.concat(drawn).with_columns(_back(col, dtypes[col]) for col in categorical)
    missing = [pl.lit(None, dtype).alias(col) for col, dtype in train.schema.items() if col not in rows.columns]
    return rows.with_columns(missing).select(train.columns), report


def _back(col: str, dtype: pl.DataType) -> pl.Expr:
    """A generated text column in its original dtype (booleans were written as 'true' / 'false')."""
    if dtype == pl.Boolean:
        return pl.col(col).replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
    return pl.col(col).cast(dtype, strict=False)
