"""Canonical table contracts: pandera schemas plus the keys ingest needs to merge and deduplicate.

A *fact* table (events, exposures, sessions) holds one row per source record and has an id column
that ingest fills from the source file and line when a mapping does not. A *dimension* table
(customers, items) holds one row per key; rows from several records are merged, the latest
non-null value of each attribute winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Literal

import pandera.polars as pa
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mapwise import columns as c
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH

MAX_TEXT_LENGTH = 2048  # longest free-text value accepted (titles, categories, ids)
UTC_TIMESTAMP = pl.Datetime("us", "UTC")
NOT_BEFORE, NOT_AFTER = "not_before", "not_after"  # the checks bounding timestamps (ingest sets the bounds)


def _text(*checks: pa.Check, nullable: bool = True, unique: bool = False) -> pa.Column:
    return pa.Column(
        pl.String,
        [pa.Check.str_length(1, MAX_TEXT_LENGTH), *checks],
        nullable=nullable,
        unique=unique,
    )


def _pseudonym(nullable: bool = False, unique: bool = False) -> pa.Column:
    length = pa.Check.str_length(PSEUDONYM_LENGTH, PSEUDONYM_LENGTH)
    return pa.Column(pl.String, length, nullable=nullable, unique=unique)


def _finite(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_finite())


def _num(dtype: pl.DataType, *checks: pa.Check, nullable: bool = True) -> pa.Column:
    finite = [pa.Check(_finite, name="finite", error="NaN or infinite")] if dtype.is_float() else []
    return pa.Column(dtype, [*checks, *finite], nullable=nullable)


def _flag(nullable: bool = True) -> pa.Column:
    return pa.Column(pl.Boolean, nullable=nullable)


def _one_of(values: tuple[str, ...], nullable: bool = True) -> pa.Column:
    return pa.Column(pl.String, pa.Check.isin(list(values)), nullable=nullable)


def _timestamp(nullable: bool) -> pa.Column:
    return pa.Column(UTC_TIMESTAMP, nullable=nullable)


_NON_NEGATIVE = pa.Check.ge(0)
_UNIT = pa.Check.in_range(0, 1)


@dataclass(frozen=True)
class Contract:
    """One canonical table: its schema, its key and how ingest combines its rows."""

    name: str
    kind: Literal["fact", "dimension"]
    key: str
    schema: pa.DataFrameSchema

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return {name: col.dtype.type for name, col in self.schema.columns.items()}

    @property
    def required(self) -> list[str]:
        return [name for name, col in self.schema.columns.items() if not col.nullable]

    @cached_property
    def rows_schema(self) -> pa.DataFrameSchema:
        """The row-level checks alone: key uniqueness is checked on whole tables (see ingest)."""
        return self.schema.update_column(self.key, unique=False)

    def rows_schema_within(self, earliest: datetime, latest: datetime) -> pa.DataFrameSchema:
        """`rows_schema` with every timestamp in [earliest, latest]: nothing recorded before records began, or later."""
        def not_before(data: pa.PolarsData) -> pl.LazyFrame:
            return data.lazyframe.select(pl.col(data.key) >= earliest)

        def not_after(data: pa.PolarsData) -> pl.LazyFrame:
            return data.lazyframe.select(pl.col(data.key) <= latest)

        bounded = {name: {"checks": [*col.checks, pa.Check(not_before, name=NOT_BEFORE), pa.Check(not_after, name=NOT_AFTER)]}
                   for name, col in self.rows_schema.columns.items() if col.dtype.type == UTC_TIMESTAMP}
        return self.rows_schema.update_columns(bounded)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.dtypes)


class TraitSpec(BaseModel):
    """One customer trait a mapping declares: its type and the values it may take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["category", "number", "integer", "flag"]
    values: list[str] | None = Field(None, description="allowed values (category only); any text when omitted")
    min: float | None = Field(None, description="smallest allowed value (number, integer)")
    max: float | None = Field(None, description="largest allowed value (number, integer)")
    description: str = ""

    @model_validator(mode="after")
    def _fits_type(self) -> TraitSpec:
        if self.values is not None and self.type != "category":
            raise ValueError("values: only a category trait lists values")
        if self.values is not None and (not self.values or len(set(self.values)) != len(self.values)):
            raise ValueError("values: list each allowed value once")
        if (self.min is not None or self.max is not None) and self.type not in ("number", "integer"):
            raise ValueError("min / max: only number and integer traits have bounds")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self

    def column(self) -> pa.Column:
        if self.type == "category":
            return _one_of(tuple(self.values)) if self.values else _text()
        if self.type == "flag":
            return _flag()
        bounds = [pa.Check.ge(self.min)] if self.min is not None else []
        bounds += [pa.Check.le(self.max)] if self.max is not None else []
        return _num(pl.Float64 if self.type == "number" else pl.Int64, *bounds)


def _contract(name: str, kind: Literal["fact", "dimension"], key: str, cols: dict) -> Contract:
    schema = pa.DataFrameSchema(cols, name=name, strict=True, ordered=True, coerce=False)
    return Contract(name=name, kind=kind, key=key, schema=schema)


CONTRACTS: dict[str, Contract] = {
    contract.name: contract
    for contract in (
        _contract(
            c.CUSTOMERS,
            "dimension",
            c.CUSTOMER_ID,
            {
                c.CUSTOMER_ID: _pseudonym(unique=True),
                c.COUNTRY: _text(),
                c.REGION: _text(),
                c.AGE: _num(pl.Int16, pa.Check.in_range(0, 120)),
                c.AGE_BAND: _one_of(c.AGE_BANDS),
                c.GENDER: _one_of(c.GENDERS),
                c.SIGNUP_DATE: pa.Column(pl.Date, nullable=True),
                c.CONSENT_EMAIL: _flag(),
                c.CONSENT_SMS: _flag(),
                c.CONSENT_PHONE: _flag(),
            },
        ),
        _contract(
            c.ITEMS,
            "dimension",
            c.ITEM_ID,
            {
                c.ITEM_ID: _text(nullable=False, unique=True),
                c.TITLE: _text(),
                c.CATEGORY: _text(),
                c.PRICE: _num(pl.Float64, _NON_NEGATIVE),
            },
        ),
        _contract(
            c.EVENTS,
            "fact",
            c.EVENT_ID,
            {
                c.EVENT_ID: _text(nullable=False, unique=True),
                c.CUSTOMER_ID: _pseudonym(),
                c.ITEM_ID: _text(nullable=False),
                c.EVENT_TYPE: _one_of(c.EVENT_TYPES, nullable=False),
                c.TIMESTAMP: _timestamp(nullable=False),
                c.QUANTITY: _num(pl.Int32, pa.Check.gt(0), nullable=False),
                c.VALUE: _num(pl.Float64, _NON_NEGATIVE),
                c.SESSION_ID: _text(),
                c.CHANNEL: _text(),
                c.SOURCE: _text(nullable=False),
            },
        ),
        _contract(
            c.CAMPAIGN_EXPOSURES,
            "fact",
            c.EXPOSURE_ID,
            {
                c.EXPOSURE_ID: _text(nullable=False, unique=True),
                c.CUSTOMER_ID: _pseudonym(),
                c.CAMPAIGN_ID: _text(nullable=False),
                c.ARM: _text(nullable=False),
                c.TREATED: _flag(nullable=False),
                c.TIMESTAMP: _timestamp(nullable=True),
                c.CHANNEL: _text(),
                c.VISIT: _flag(),
                c.CONVERSION: _flag(),
                c.SPEND: _num(pl.Float64, _NON_NEGATIVE),
                c.SOURCE: _text(nullable=False),
            },
        ),
        _contract(c.CUSTOMER_TRAITS, "fact", c.RECORD_ID, {
            c.RECORD_ID: _text(nullable=False, unique=True),
            c.CUSTOMER_ID: _pseudonym(),
            c.OBSERVED_AT: _timestamp(nullable=True),
            c.SOURCE: _text(nullable=False),
        }),
        _contract(
            c.SESSIONS,
            "fact",
            c.SESSION_ID,
            {
                c.SESSION_ID: _text(nullable=False, unique=True),
                c.CUSTOMER_ID: _pseudonym(nullable=True),
                c.TIMESTAMP: _timestamp(nullable=True),
                c.MONTH: _num(pl.Int8, pa.Check.in_range(1, 12)),
                c.WEEKEND: _flag(),
                c.VISITOR_TYPE: _one_of(c.VISITOR_TYPES),
                c.ADMIN_PAGES: _num(pl.Int32, _NON_NEGATIVE),
                c.ADMIN_DURATION: _num(pl.Float64, _NON_NEGATIVE),
                c.INFO_PAGES: _num(pl.Int32, _NON_NEGATIVE),
                c.INFO_DURATION: _num(pl.Float64, _NON_NEGATIVE),
                c.PRODUCT_PAGES: _num(pl.Int32, _NON_NEGATIVE),
                c.PRODUCT_DURATION: _num(pl.Float64, _NON_NEGATIVE),
                c.BOUNCE_RATE: _num(pl.Float64, _UNIT),
                c.EXIT_RATE: _num(pl.Float64, _UNIT),
                c.PAGE_VALUE: _num(pl.Float64, _NON_NEGATIVE),
                c.SPECIAL_DAY: _num(pl.Float64, _UNIT),
                c.REGION: _text(),
                c.TRAFFIC_TYPE: _text(),
                c.BROWSER: _text(),
                c.OPERATING_SYSTEM: _text(),
                c.CHANNEL: _text(),
                c.PURCHASED: _flag(),
                c.SOURCE: _text(nullable=False),
            },
        ),
    )
}

TRAIT_BASE_COLUMNS = tuple(CONTRACTS[c.CUSTOMER_TRAITS].dtypes)


def traits_contract(traits: dict[str, TraitSpec]) -> Contract:
    """The customer_traits contract with the declared traits as typed columns after the fixed ones.

    A trait's `observed_at` is when its values held (null: before any cutoff); profiles take, per
    customer and trait, the latest value observed before their cutoff.
    """
    base = CONTRACTS[c.CUSTOMER_TRAITS]
    clash = sorted(set(traits) & set(TRAIT_BASE_COLUMNS))
    if clash:
        raise ValueError(f"trait name(s) {', '.join(clash)} are columns of {c.CUSTOMER_TRAITS} already; rename them")
    cols = {**base.schema.columns, **{name: spec.column() for name, spec in sorted(traits.items())}}
    return _contract(base.name, base.kind, base.key, cols)


QUARANTINE_SCHEMA = pa.DataFrameSchema(
    {
        c.SOURCE: pa.Column(pl.String),
        c.Q_FILE: pa.Column(pl.String),
        c.Q_LINE: pa.Column(pl.Int64, pa.Check.ge(1)),
        c.Q_COLUMN: pa.Column(pl.String, nullable=True),
        c.Q_REASON: pa.Column(pl.String),
        c.Q_VALUE: pa.Column(pl.String, nullable=True),
    },
    name="quarantine",
    strict=True,
    ordered=True,
)
