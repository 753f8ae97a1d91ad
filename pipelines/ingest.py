"""DVC stage `ingest`: map the raw sources into validated canonical tables, leaving out forgotten customers
(params: ingest, privacy.forget_log); on a Dask cluster with `ingest.engine: dask`."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from mapwise.atomic import replacing_folder
from mapwise.sources.cluster import partition_executor
from mapwise.sources.ingest import PARQUET_OPTIONS, Limits, ingest
from mapwise.sources.mapping.load import load_mapping
from mapwise.params import Params
from mapwise.privacy.forget import forgotten
from mapwise.privacy.pseudonym import load_key
from mapwise.report import print_ingest_report
from pipelines._stage import run, write_json


def _write_tables(folder: Path, frames: dict[str, pl.DataFrame]) -> None:
    for name, frame in frames.items():
        frame.write_parquet(folder / f"{name}.parquet", **PARQUET_OPTIONS)


def stage(params: Params) -> None:
    p = params.ingest
    mappings = [load_mapping(p.mappings_dir / f"{name}.yaml") for name in p.sources]
    with partition_executor(p.dask if p.engine == "dask" else None) as executor:
        result = ingest(p.raw_dir, mappings, load_key(p.key_file), Limits.of(p), p.batches_dir,
                        forgotten(params.privacy.forget_log), executor=executor)
    with replacing_folder(p.canonical_dir) as canonical:  # both folders built whole, then swapped in
        _write_tables(canonical, result.tables)
        with replacing_folder(p.quarantine_dir) as quarantine:
            _write_tables(quarantine, result.quarantine)
    write_json(p.report, result.report)
    print_ingest_report(result.report)


def main(argv: list[str] | None = None) -> int:
    return run("ingest", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
