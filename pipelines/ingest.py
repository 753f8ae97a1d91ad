"""DVC stage `ingest`: map the raw sources into validated canonical tables (params: ingest)."""

from __future__ import annotations

import sys

from mapwise.ingest import ingest
from mapwise.mapping.spec import load_mapping
from mapwise.params import Params
from mapwise.privacy import load_key
from mapwise.report import print_ingest_report
from pipelines._stage import run, write_json


def stage(params: Params) -> None:
    p = params.ingest
    mappings = [load_mapping(p.mappings_dir / f"{name}.yaml") for name in p.sources]
    result = ingest(p.raw_dir, mappings, load_key(p.key_file), p.batches_dir)
    for folder, frames in ((p.canonical_dir, result.tables), (p.quarantine_dir, result.quarantine)):
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            frame.write_parquet(folder / f"{name}.parquet")
    write_json(p.report, result.report)
    print_ingest_report(result.report)


def main(argv: list[str] | None = None) -> int:
    return run("ingest", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
