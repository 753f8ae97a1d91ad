"""Customer profiles: one row per customer as of a cutoff, from events strictly before it.

Point in time: only events with `timestamp < as_of` are read, so a profile never sees the future.
Only customers with at least one purchase before the cutoff get a row. A purchase's value is its
`value`, else quantity x item price, else 0; `purchases` and `returns` count event lines, `frequency`
baskets (distinct sessions, or purchase days where a purchase has no session). `interests` lists the
top categories by share of purchase lines, named categories before OTHER; `top_category` is the first.

RFM scores are quintiles 1..5 (5 best) of recency (lower is better), frequency and monetary, by rank
over the customers profiled; tied customers share the lower score. Segments come from (r_score, f_score) by this grid:

    r \\ f   1               2                    3                    4          5
    5       new             potential_loyalists  potential_loyalists  champions  champions
    4       promising       potential_loyalists  potential_loyalists  loyal      loyal
    3       need_attention  need_attention       need_attention       loyal      loyal
    2       hibernating     hibernating          at_risk              at_risk    cant_lose
    1       lost            lost                 at_risk              at_risk    cant_lose
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandera.polars as pa
import polars as pl

from mapwise import columns as c
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH
from mapwise.sources.contracts import UTC_TIMESTAMP
from mapwise.errors import MapwiseError

OTHER = "OTHER"  # category of items whose title gives no frequent word
TOP_INTERESTS = 3  # categories listed in `interests`
STOP_WORDS = frozenset(
    "SET OF AND THE WITH IN DESIGN SMALL LARGE VINTAGE MINI JUMBO ASSORTED "
    "RED BLUE PINK GREEN WHITE BLACK CREAM IVORY GOLD SILVER".split()
)
MIN_WORD_LENGTH = 3
_DAY_US = 86_400_000_000
_DECIMALS = 6  # monetary is rounded to this, so that returns cancelling purchases give exactly 0

# (r_score, f_score) -> segment; rows are r = 5..1, columns f = 1..5 (see the module docstring)
_SEGMENT_GRID = {
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"),
    3: ("need_attention", "need_attention", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cant_lose"),
}
SEGMENT_OF_RF = {r * 10 + f: seg for r, row in _SEGMENT_GRID.items() for f, seg in enumerate(row, start=1)}


def _count(minimum: int) -> pa.Column:
    return pa.Column(pl.Int32, pa.Check.ge(minimum))


def _score() -> pa.Column:
    return pa.Column(pl.Int8, pa.Check.in_range(1, 5))


PROFILE_SCHEMA = pa.DataFrameSchema(
    {
        c.CUSTOMER_ID: pa.Column(pl.String, pa.Check.str_length(PSEUDONYM_LENGTH, PSEUDONYM_LENGTH), unique=True),
        c.AS_OF: pa.Column(UTC_TIMESTAMP),
        c.RECENCY_DAYS: pa.Column(pl.Float64, pa.Check.ge(0)),
        c.FREQUENCY: _count(1),
        c.MONETARY: pa.Column(pl.Float64),
        c.TENURE_DAYS: pa.Column(pl.Float64, pa.Check.ge(0)),
        c.AVG_BASKET_VALUE: pa.Column(pl.Float64, pa.Check.ge(0)),
        c.DISTINCT_ITEMS: _count(1),
        c.PURCHASES: _count(1),
        c.RETURNS: _count(0),
        c.RETURN_RATE: pa.Column(pl.Float64, pa.Check.in_range(0, 1)),
        c.TOP_CATEGORY: pa.Column(pl.String, pa.Check.str_length(min_value=1)),
        c.INTERESTS: pa.Column(pl.String, pa.Check.str_length(min_value=1)),
        c.PREFERRED_CHANNEL: pa.Column(pl.String, nullable=True),
        c.COUNTRY: pa.Column(pl.String, nullable=True),
        c.RECENT_ITEMS: pa.Column(pl.List(pl.String)),
        c.R_SCORE: _score(),
        c.F_SCORE: _score(),
        c.M_SCORE: _score(),
        c.SEGMENT: pa.Column(pl.String, pa.Check.isin(list(c.SEGMENTS))),
    },
    checks=pa.Check(lambda data: data.lazyframe.select(pl.col(c.TENURE_DAYS) >= pl.col(c.RECENCY_DAYS)),
                    error="tenure_days >= recency_days"),
    name=c.PROFILES,
    strict=True,
    ordered=True,
    coerce=False,
)


def derive_categories(items: pl.DataFrame, n_tokens: int) -> pl.DataFrame:
    """item_id -> category: the item's own, else its title's last meaningful word if frequent, else OTHER.

    A title's words are its runs of letters, upper-cased, simple plurals made singular; words shorter than
    MIN_WORD_LENGTH and STOP_WORDS are skipped. The word counts when it is among the `n_tokens` most common
    such last words over items without a category (ties by word).
    """
    word = pl.element()
    last_word = (
        pl.col(c.TITLE).str.to_uppercase().str.extract_all(r"\p{L}+")
        .list.eval(word.filter((word.str.len_chars() >= MIN_WORD_LENGTH) & ~word.is_in(list(STOP_WORDS))))
        .list.eval(word.str.replace(r"(SS|X|Z|CH|SH)ES$", "$1").str.replace(r"([^AIOUS])S$", "$1"))
        .list.last()
    )
    words = items.select(c.ITEM_ID, c.CATEGORY, last_word.alias("word"))
    frequent = (
        words.filter(pl.col(c.CATEGORY).is_null(), pl.col("word").is_not_null())
        .group_by("word").len()
        .sort(["len", "word"], descending=[True, False])
        .head(n_tokens)["word"]
    )
    derived = pl.when(pl.col("word").is_in(frequent.implode())).then(pl.col("word")).otherwise(pl.lit(OTHER))
    return words.select(c.ITEM_ID, pl.coalesce(c.CATEGORY, derived).alias(c.CATEGORY)).sort(c.ITEM_ID)


def default_as_of(events: pl.DataFrame) -> datetime:
    """Just after the last event: 1 microsecond past its timestamp."""
    last = events[c.TIMESTAMP].max()
    if last is None:
        raise MapwiseError("no events: cannot choose a profile cutoff")
    return last + timedelta(microseconds=1)


def _utc(moment: datetime) -> datetime:
    """A cutoff in UTC; a naive one is taken as UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _days_since(moment: pl.Expr, as_of: datetime) -> pl.Expr:
    return (pl.lit(as_of, dtype=UTC_TIMESTAMP) - moment).dt.total_microseconds() / _DAY_US


def quintile(expr: pl.Expr, *, descending: bool = False) -> pl.Expr:
    """1..5 by rank in fifths, the best customer 5 and the worst 1; ties share the lower score."""
    rank = expr.rank("min", descending=descending).cast(pl.Int64)
    return (1 + 5 * (rank - 1) // pl.max_horizontal(pl.len().cast(pl.Int64) - 1, 1)).clip(upper_bound=5).cast(pl.Int8)


def _share_text(share: pl.Expr) -> pl.Expr:
    """A share in [0, 1] as text with two decimals, e.g. 0.2 -> '0.20'."""
    hundredths = (share * 100).round().cast(pl.Int32)
    return pl.when(hundredths >= 100).then(pl.lit("1.00")).otherwise(
        pl.lit("0.") + hundredths.cast(pl.String).str.zfill(2)
    )


def build_profiles(
    events: pl.DataFrame,
    customers: pl.DataFrame,
    items: pl.DataFrame,
    *,
    as_of: datetime,
    sequence_length: int,
    category_tokens: int,
) -> pl.DataFrame:
    """One validated row per customer who purchased before `as_of`, from events before it (see module doc)."""
    as_of = _utc(as_of)
    past = (
        events.lazy()
        .filter(pl.col(c.TIMESTAMP) < pl.lit(as_of, dtype=UTC_TIMESTAMP), pl.col(c.CUSTOMER_ID).is_not_null())
        .join(items.lazy().select(c.ITEM_ID, c.PRICE), on=c.ITEM_ID, how="left")
        .join(derive_categories(items, category_tokens).lazy(), on=c.ITEM_ID, how="left")
        .with_columns(
            pl.coalesce(c.VALUE, pl.col(c.QUANTITY) * pl.col(c.PRICE), pl.lit(0.0)).alias(c.VALUE),
            pl.col(c.CATEGORY).fill_null(OTHER),
        )
    )
    purchases = past.filter(pl.col(c.EVENT_TYPE) == c.PURCHASE)
    basket = pl.when(pl.col(c.SESSION_ID).is_not_null()).then(pl.lit("session ") + pl.col(c.SESSION_ID)).otherwise(
        pl.lit("day ") + pl.col(c.TIMESTAMP).dt.date().cast(pl.String)
    )
    bought = purchases.group_by(c.CUSTOMER_ID).agg(
        pl.col(c.TIMESTAMP).max().alias("last_purchase"),
        basket.n_unique().cast(pl.Int32).alias(c.FREQUENCY),
        pl.col(c.VALUE).sum().alias("gross"),
        pl.col(c.ITEM_ID).n_unique().cast(pl.Int32).alias(c.DISTINCT_ITEMS),
        pl.len().cast(pl.Int32).alias(c.PURCHASES),
        pl.col(c.ITEM_ID).sort_by(c.TIMESTAMP, c.EVENT_ID).tail(sequence_length).alias(c.RECENT_ITEMS),
    )
    returned = past.filter(pl.col(c.EVENT_TYPE) == c.RETURN).group_by(c.CUSTOMER_ID).agg(
        pl.len().cast(pl.Int32).alias(c.RETURNS), pl.col(c.VALUE).sum().alias("returned")
    )
    first_seen = past.group_by(c.CUSTOMER_ID).agg(pl.col(c.TIMESTAMP).min().alias("first_event"))
    share = pl.col("len") / pl.col("len").sum()
    interests = (
        purchases.group_by(c.CUSTOMER_ID, c.CATEGORY).len()
        .sort([c.CUSTOMER_ID, pl.col(c.CATEGORY) == OTHER, "len", c.CATEGORY], descending=[False, False, True, False])
        .group_by(c.CUSTOMER_ID, maintain_order=True)
        .agg(
            pl.col(c.CATEGORY).first().alias(c.TOP_CATEGORY),
            pl.format("{}:{}", c.CATEGORY, _share_text(share)).head(TOP_INTERESTS).str.join(",").alias(c.INTERESTS),
        )
    )
    channel = (
        past.filter(pl.col(c.CHANNEL).is_not_null())
        .group_by(c.CUSTOMER_ID, c.CHANNEL).len()
        .sort([c.CUSTOMER_ID, "len", c.CHANNEL], descending=[False, True, False])
        .group_by(c.CUSTOMER_ID, maintain_order=True)
        .agg(pl.col(c.CHANNEL).first().alias(c.PREFERRED_CHANNEL))
    )
    returns = pl.col(c.RETURNS).fill_null(0)
    profiles = (
        bought.join(returned, on=c.CUSTOMER_ID, how="left")
        .join(first_seen, on=c.CUSTOMER_ID, how="left")
        .join(interests, on=c.CUSTOMER_ID, how="left")
        .join(channel, on=c.CUSTOMER_ID, how="left")
        .join(customers.lazy().select(c.CUSTOMER_ID, c.COUNTRY), on=c.CUSTOMER_ID, how="left")
        .with_columns(
            pl.lit(as_of, dtype=UTC_TIMESTAMP).alias(c.AS_OF),
            _days_since(pl.col("last_purchase"), as_of).alias(c.RECENCY_DAYS),
            (pl.col("gross") - pl.col("returned").fill_null(0.0)).round(_DECIMALS).alias(c.MONETARY),
            _days_since(pl.col("first_event"), as_of).alias(c.TENURE_DAYS),
            (pl.col("gross") / pl.col(c.FREQUENCY)).alias(c.AVG_BASKET_VALUE),
            returns,
            (returns / (pl.col(c.PURCHASES) + returns)).alias(c.RETURN_RATE),
        )
        .with_columns(
            quintile(pl.col(c.RECENCY_DAYS), descending=True).alias(c.R_SCORE),
            quintile(pl.col(c.FREQUENCY)).alias(c.F_SCORE),
            quintile(pl.col(c.MONETARY)).alias(c.M_SCORE),
        )
        .with_columns(
            (pl.col(c.R_SCORE).cast(pl.Int16) * 10 + pl.col(c.F_SCORE))
            .replace_strict(SEGMENT_OF_RF, return_dtype=pl.String)
            .alias(c.SEGMENT)
        )
        .select(list(PROFILE_SCHEMA.columns))
        .sort(c.CUSTOMER_ID)
        .collect()
    )
    return PROFILE_SCHEMA.validate(profiles)
