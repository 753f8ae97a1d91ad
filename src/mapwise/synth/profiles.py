"""Synthetic rows -> synthetic customer profiles that pass the profile schema, never copies of real ones.

`synthetic_profiles` completes what a generator did not produce: ids that can never equal a real
pseudonym (a leading 's', which no hex pseudonym has) and the real table's `as_of`; bounds (integer
counts >= 1, returns >= 0, purchases >= frequency, distinct items <= purchases, recency >= 0, tenure >=
recency, return rate in [0, 1], basket value >= 0, monetary >= min(0, the real minimum)); and, each only
when not generated, the derived columns the profile code's own way (R/F/M quintiles and the segment over
the synthetic customers, return rate, basket value, interests = the top category at 1.00, no recent items).
A profile column neither generated nor derivable is drawn from its real marginal; a column of the real
table outside the profile schema (customer traits) is null unless generated.
`sample_profiles` draws from a fitted generator, drops near-copies of training rows and redraws.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.profiles.build import PROFILE_SCHEMA, SEGMENT_OF_RF, quintile
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH
from mapwise.synth.quality import near_copies

ID_PREFIX = "s"  # not a hex digit: a synthetic id never equals a pseudonym
MAX_DRAWS = 10  # rounds of sampling before too many near-copies is an error
_HEX = np.array(list("0123456789abcdef"))
_COUNTS = {c.FREQUENCY: 1, c.DISTINCT_ITEMS: 1, c.PURCHASES: 1, c.RETURNS: 0}  # count -> its minimum
_DERIVED = {c.CUSTOMER_ID, c.AS_OF, c.RETURN_RATE, c.AVG_BASKET_VALUE, c.INTERESTS, c.RECENT_ITEMS, c.R_SCORE,
            c.F_SCORE, c.M_SCORE, c.SEGMENT}


def _ids(n: int, rng: np.random.Generator) -> pl.Series:
    digits = _HEX[rng.integers(0, 16, size=(n, PSEUDONYM_LENGTH - 1))]
    return pl.Series(c.CUSTOMER_ID, np.char.add(ID_PREFIX, digits.view(f"<U{PSEUDONYM_LENGTH - 1}")[:, 0]),
                     dtype=pl.String)


def synthetic_profiles(generated: pl.DataFrame, real: pl.DataFrame, *, seed: int) -> pl.DataFrame:
    """Generated rows completed into profiles with `real`'s columns; the schema's columns pass PROFILE_SCHEMA."""
    schema_columns = list(PROFILE_SCHEMA.columns)
    unknown = [n for n in generated.columns if n not in real.columns]
    missing = [n for n in schema_columns if n not in real.columns]
    if unknown or missing or real.is_empty():
        problem = (f"generated column {unknown[0]!r} is not a profile column" if unknown else
                   f"the real profiles lack column {missing[0]!r}" if missing else "the real profiles are empty")
        raise MapwiseError(f"synthetic profiles: {problem}")
    rng = np.random.default_rng(seed)
    n, dtypes = generated.height, real.schema
    out = generated.with_columns(_ids(n, rng), pl.lit(real[c.AS_OF][0], dtype=dtypes[c.AS_OF]).alias(c.AS_OF))
    drawn = [n_ for n_ in schema_columns if n_ not in out.columns and n_ not in _DERIVED]
    out = out.with_columns(real[name].sample(n, with_replacement=True, seed=int(rng.integers(2**31))).alias(name)
                           for name in drawn)
    counts = {name: pl.col(name).round().clip(lower_bound=low).cast(pl.Int32) for name, low in _COUNTS.items()}
    money_floor = min(0.0, real[c.MONETARY].min() or 0.0)  # net of returns a real customer can be below 0
    out = out.with_columns(
        *counts.values(),
        pl.col(c.RECENCY_DAYS).cast(pl.Float64).clip(lower_bound=0),
        pl.col(c.MONETARY).cast(pl.Float64).clip(lower_bound=money_floor),
    ).with_columns(
        pl.max_horizontal(c.PURCHASES, c.FREQUENCY).alias(c.PURCHASES),  # a basket has a purchase line at least
        pl.min_horizontal(c.DISTINCT_ITEMS, c.PURCHASES).alias(c.DISTINCT_ITEMS),  # and a line one item at most
        pl.max_horizontal(pl.col(c.TENURE_DAYS).cast(pl.Float64), c.RECENCY_DAYS).alias(c.TENURE_DAYS),
    )
    derived = {
        c.RETURN_RATE: pl.col(c.RETURNS) / (pl.col(c.PURCHASES) + pl.col(c.RETURNS)),
        c.AVG_BASKET_VALUE: pl.col(c.MONETARY).clip(lower_bound=0) / pl.col(c.FREQUENCY),
        c.INTERESTS: pl.col(c.TOP_CATEGORY) + pl.lit(":1.00"),
        c.RECENT_ITEMS: pl.lit(pl.Series([[]] * n, dtype=pl.List(pl.String))),
        c.R_SCORE: quintile(pl.col(c.RECENCY_DAYS), descending=True),
        c.F_SCORE: quintile(pl.col(c.FREQUENCY)),
        c.M_SCORE: quintile(pl.col(c.MONETARY)),
    }
    out = out.with_columns(expr.alias(name) for name, expr in derived.items() if name not in generated.columns)
    out = out.with_columns(
        pl.col(c.RETURN_RATE).cast(pl.Float64).clip(0, 1),
        pl.col(c.AVG_BASKET_VALUE).cast(pl.Float64).clip(lower_bound=0),
        *(pl.col(s).round().clip(1, 5).cast(pl.Int8) for s in (c.R_SCORE, c.F_SCORE, c.M_SCORE)),
    )
    if c.SEGMENT not in generated.columns:
        out = out.with_columns((pl.col(c.R_SCORE).cast(pl.Int16) * 10 + pl.col(c.F_SCORE))
                               .replace_strict(SEGMENT_OF_RF, return_dtype=pl.String).alias(c.SEGMENT))
    out = out.select(pl.col(name).cast(dtypes[name]) if name in out.columns else pl.lit(None, dtypes[name]).alias(name)
                     for name in real.columns)
    PROFILE_SCHEMA.validate(out.select(schema_columns))
    return out


def sample_profiles(model, n: int, real_train: pl.DataFrame, threshold: float, *, seed: int) -> tuple[pl.DataFrame, dict]:
    """n synthetic profiles from a fitted generator (CTGAN or a baseline) with no row within `threshold` of a
    training row (`quality.distance_threshold`): near-copies are dropped and redrawn, at most MAX_DRAWS rounds.
    Returns the profiles and {requested, drawn, dropped, draws, threshold}."""
    kept, have, drawn, dropped, draws = [], 0, 0, 0, 0
    while not kept or (have < n and draws < MAX_DRAWS):
        size = int(np.ceil((n - have) * 1.1)) + 10
        rows = model.sample(size, seed=seed + draws)
        close = near_copies(real_train, rows, threshold, model.numeric, model.categorical)
        kept.append(rows.filter(pl.Series(~close)))
        have, drawn, dropped, draws = have + int((~close).sum()), drawn + size, dropped + int(close.sum()), draws + 1
    if have < n:
        raise MapwiseError(f"only {have} of {n} synthetic rows were farther than {threshold:.4g} from every training "
                           f"row after {MAX_DRAWS} draws ({dropped} near-copies dropped): lower the distance quantile")
    stats = {"requested": n, "drawn": drawn, "dropped": dropped, "draws": draws, "threshold": threshold}
    return synthetic_profiles(pl.concat(kept).head(n), real_train, seed=seed), stats
