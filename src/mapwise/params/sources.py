"""`ingest` and `profile`: mapping sources into canonical tables, and profiles from them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mapwise.params.base import Section


class DaskParams(Section):
    """`ingest.dask`: the Dask cluster that maps partitions when `ingest.engine` is dask."""

    address: str | None = Field(None, description="scheduler of a running cluster (tcp://host:8786); null starts a "
                                "LocalCluster on this machine for the stage")
    workers: int = Field(2, ge=1, description="LocalCluster worker processes (ignored with an address)")
    threads_per_worker: int = Field(1, ge=1, description="LocalCluster threads per worker (ignored with an address)")
    memory_limit: str = Field("auto", description="LocalCluster memory per worker, e.g. 4GiB; auto = the machine's "
                              "memory shared among the workers")
    connect_timeout_s: float = Field(30, gt=0, description="how long to wait for the scheduler at `address`")


class IngestParams(Section):
    """`ingest`: which sources to map, from where, into where."""

    raw_dir: Path = Field(description="folder the mappings' file patterns are relative to")
    batches_dir: Path = Field(Path("data/batches"), description="accepted batches, <batches_dir>/<source>/<file>, read after raw_dir")
    mappings_dir: Path = Path("mappings")
    sources: list[str] = Field(min_length=1, description="mapping names, i.e. <mappings_dir>/<name>.yaml")
    canonical_dir: Path = Path("data/canonical")
    quarantine_dir: Path = Path("data/quarantine")
    report: Path = Path("reports/ingest.json")
    key_file: Path = Field(Path(".mapwise/hmac.key"), description="used when $MAPWISE_HMAC_KEY is unset")
    max_file_mb: float = Field(2048, gt=0, description="largest raw file once decompressed, in MiB: a bound on memory "
                                                         "and against decompression bombs")
    chunk_mb: float = Field(64, gt=0, description="delimited files are read (and decompressed) this many MiB at a "
                            "time, each chunk an independent partition: a bound on memory that changes no result")
    engine: Literal["local", "dask"] = Field("local", description="where chunks are mapped and checked: in the "
                                             "stage's process, or on the Dask cluster of `dask` (same results)")
    dask: DaskParams = DaskParams()
    future_tolerance_days: float = Field(1, ge=0, description="timestamps later than the time of ingestion plus this "
                                                               "are quarantined")
    min_timestamp: datetime = Field(datetime(1900, 1, 1, tzinfo=UTC), description="earlier timestamps are quarantined "
                                    "(a zero or garbled epoch, a two-digit year read as year 0024)")
    trusted_dirs: list[Path] = Field([Path(".dvc/cache")], description="folders besides raw_dir and batches_dir that "
                                     "raw files may link into (DVC's cache, for cache.type symlink)")

    @field_validator("min_timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ProfileParams(Section):
    """`profile`: customer profiles as of one point in time."""

    as_of: datetime | None = Field(None, description="UTC cutoff; null = just after the last event")
    sequence_length: int = Field(20, ge=1, description="most recent items kept per customer")
    category_tokens: int = Field(40, ge=2, description="categories derived from title words, when items have none")
    out: Path = Path("data/profiles/profiles.parquet")
    report: Path = Path("reports/profile.html")
