"""The mapping file: how one source's files become rows of canonical tables.

A mapping is applied in this order, each step seeing the columns the previous one produced:
read -> rename -> value_maps -> casts / timestamps -> identity -> derive -> tables.
The identity's raw value, and every column it reads, is replaced by the pseudonym before any
later step sees it, so no raw customer id can reach a table.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mapwise import columns as c
from mapwise.sources.contracts import CONTRACTS, TRAIT_BASE_COLUMNS, Contract, TraitSpec, traits_contract

Scalar = str | int | float | bool | None


def _literal_text(value: object) -> object:
    """A number or true/false written bare in YAML (`quantity: 1`) is that literal's expression."""
    return str(value) if isinstance(value, int | float) else value  # bool is an int: True -> "True"


Expression = Annotated[str, BeforeValidator(_literal_text)]
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadSpec(_Strict):
    """Where the files are and how to parse them."""

    pattern: str | list[str] = Field(description="glob(s) relative to the raw data folder")
    format: Literal["csv", "tsv", "whitespace", "parquet", "jsonl"] = "csv"
    compression: Literal["auto", "none", "gzip", "bz2", "xz"] = "auto"
    encoding: str = "utf-8"
    delimiter: str | None = Field(None, description="default: ',' for csv, tab for tsv")
    quote: str | None = '"'
    header: bool = True
    names: list[str] | None = Field(None, description="column names when header is false")
    skip_rows: int = Field(0, ge=0, description="lines to skip before the header")
    null_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "NULL", "null"])
    trim: bool = Field(True, description="strip spaces and tabs around header names and text values before "
                                         "casts and null_values (false keeps them)")

    @property
    def patterns(self) -> list[str]:
        return [self.pattern] if isinstance(self.pattern, str) else list(self.pattern)

    @property
    def separator(self) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if self.format == "tsv" else ","

    @field_validator("pattern")
    @classmethod
    def _relative_globs(cls, value: str | list[str]) -> str | list[str]:
        for pattern in [value] if isinstance(value, str) else value:
            if not pattern.strip():
                raise ValueError("a pattern must not be empty")
            if PurePosixPath(pattern).is_absolute() or PureWindowsPath(pattern).anchor or pattern.startswith("~"):
                raise ValueError(f"'{pattern[:80]}' is not relative: patterns are globs under ingest.raw_dir")
            try:  # the glob ingest runs, on a folder that does not exist: only the pattern is checked
                next(Path("/nonexistent/mapwise").glob(pattern), None)
            except (ValueError, NotImplementedError) as err:
                raise ValueError(f"'{pattern[:80]}' is not a usable glob ({err})") from None
        return value

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) != 1:
            raise ValueError("must be a single one-byte character")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'") from None

    @model_validator(mode="after")
    def _names_without_header(self) -> ReadSpec:
        if not self.header and not self.names and self.format not in ("parquet", "jsonl"):
            raise ValueError("header: false needs names: [...]")
        if self.names and len(set(self.names)) != len(self.names):
            raise ValueError("names: each column is named once")
        return self


class TimestampSpec(_Strict):
    """Parse a text column as a point in time, converted to UTC."""

    format: str | None = Field(None, description="strftime format, e.g. '%d/%m/%Y %H:%M'")
    epoch: Literal["s", "ms", "us", "ns"] | None = None
    timezone: str = Field("UTC", description="zone of the values when they carry none")

    @model_validator(mode="after")
    def _one_way(self) -> TimestampSpec:
        if (self.format is None) == (self.epoch is None):
            raise ValueError("give exactly one of format or epoch")
        return self


CastType = Literal["str", "int", "float", "bool", "date"]


class TableSpec(_Strict):
    """How one canonical table is filled from the source's columns."""

    filter: Expression | None = Field(None, description="rows where this is false are quarantined as excluded")
    columns: dict[str, Expression] = Field(description="canonical column -> expression")
    duplicates: Literal["quarantine", "keep"] = Field(
        "quarantine", description="fact tables: rows identical to an earlier one are quarantined as 'duplicate row' "
                                  "(quarantine), or kept as distinct events, e.g. a repeat purchase written as an "
                                  "identical line (keep); a mapped id must be unique either way")


class Mapping(_Strict):
    """One source, declared in `mappings/<name>.yaml`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    read: ReadSpec
    rename: dict[str, str] = Field(default_factory=dict)
    value_maps: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    casts: dict[str, CastType] = Field(default_factory=dict)
    timestamps: dict[str, TimestampSpec] = Field(default_factory=dict)
    identity: str | None = Field(
        None, description="expression (usually a column) giving the raw customer id to pseudonymise"
    )
    derive: dict[str, Expression] = Field(default_factory=dict)
    traits: dict[str, TraitSpec] = Field(
        default_factory=dict, description="customer traits this source fills (tables.customer_traits): name -> type, values"
    )
    tables: dict[str, TableSpec]

    def contract(self, table: str) -> Contract:
        """The contract rows of `table` from this source must meet (customer_traits: with this source's traits)."""
        return traits_contract(self.traits) if table == c.CUSTOMER_TRAITS else CONTRACTS[table]

    @field_validator("value_maps")
    @classmethod
    def _one_type_per_map(cls, maps: dict[str, dict[str, Scalar]]) -> dict[str, dict[str, Scalar]]:
        for column, table in maps.items():
            kinds = sorted({"number" if type(v) in (int, float) else type(v).__name__ for v in table.values() if v is not None})
            if len(kinds) > 1:
                raise ValueError(f"{column}: values of one map must share a type (and may be null), found {', '.join(kinds)}")
        return maps

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: dict[str, TableSpec]) -> dict[str, TableSpec]:
        for table, spec in tables.items():
            if table not in CONTRACTS:
                raise ValueError(f"unknown table '{table}' (known: {', '.join(CONTRACTS)})")
            contract = CONTRACTS[table]
            if spec.duplicates == "keep" and contract.kind != "fact":
                raise ValueError(f"{table}.duplicates: keep applies to fact tables only; {table} rows merge into one "
                                 f"per {contract.key}")
            for column in spec.columns:
                if column not in contract.dtypes and table != c.CUSTOMER_TRAITS:  # traits: checked with `traits`
                    known = ", ".join(contract.dtypes)
                    raise ValueError(f"{table}: unknown column '{column}' (known: {known})")
                if column in (c.CUSTOMER_ID, c.SOURCE):
                    raise ValueError(f"{table}.{column} is filled by ingest; do not map it")
            auto = {c.CUSTOMER_ID, c.SOURCE} | ({contract.key} if contract.kind == "fact" else set())
            missing = [col for col in contract.required if col not in spec.columns and col not in auto]
            if missing:
                raise ValueError(f"{table}: required column(s) not mapped: {', '.join(missing)}")
        return tables

    @model_validator(mode="after")
    def _traits_declared(self) -> Mapping:
        bad = [name for name in self.traits if not _NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"traits: name(s) {', '.join(bad)} must be lower_snake_case")
        traits_contract(self.traits)  # names clashing with the fixed columns
        mapped = set(self.tables[c.CUSTOMER_TRAITS].columns) if c.CUSTOMER_TRAITS in self.tables else set()
        undeclared = sorted(mapped - set(self.traits) - set(TRAIT_BASE_COLUMNS))
        if undeclared:
            raise ValueError(f"{c.CUSTOMER_TRAITS}: column(s) {', '.join(undeclared)} not declared under traits "
                             f"(declare each: {{type: category|number|integer|flag, values: [...]}})")
        unmapped = sorted(set(self.traits) - mapped)
        if unmapped:
            raise ValueError(f"traits: {', '.join(unmapped)} declared but not mapped in tables.{c.CUSTOMER_TRAITS}.columns")
        return self

    @model_validator(mode="after")
    def _identity_for_customers(self) -> Mapping:
        for table in self.tables:
            if self.identity is None and c.CUSTOMER_ID in CONTRACTS[table].required:
                raise ValueError(f"{table} needs customer ids: set identity: <column>")
        return self

    def expressions(self) -> Iterator[tuple[str, str]]:
        """Every expression with its place in the file, e.g. ('tables.events.columns.value', ...)."""
        if self.identity:
            yield "identity", self.identity
        yield from ((f"derive.{k}", v) for k, v in self.derive.items())
        for table, spec in self.tables.items():
            if spec.filter:
                yield f"tables.{table}.filter", spec.filter
            yield from ((f"tables.{table}.columns.{k}", v) for k, v in spec.columns.items())
