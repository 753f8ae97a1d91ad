"""DVC stage `split`: training interactions, item index, validation and test windows (params: split)."""

from __future__ import annotations

import json
import sys

import polars as pl

from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.recommend.split import describe_split, leave_last_out_split, save_split, small_data_warnings, temporal_split
from pipelines._stage import run, write_json


def stage(params: Params) -> None:
    p = params.split
    events_path = params.ingest.canonical_dir / "events.parquet"
    if not events_path.exists():
        raise MapwiseError(f"{events_path}: not found; run the ingest stage first")
    events = pl.read_parquet(events_path)
    if p.method == "temporal":
        split = temporal_split(
            events,
            cutoff=p.cutoff,
            validation_days=p.validation_days,
            horizon_days=p.horizon_days,
            min_history=p.min_history,
        )
    else:
        split = leave_last_out_split(events, min_history=p.min_history)
    if split.n_items == 0 or split.test.height == 0:
        raise MapwiseError(f"no {'items' if split.n_items == 0 else 'test customers'}; check split.cutoff")
    save_split(split, p.out_dir)
    warnings = small_data_warnings(split, ks=params.evaluate.ks)
    summary = {**describe_split(p), **split.summary(), "warnings": warnings}
    write_json(p.report, summary)
    print(f"split ({p.method}): {json.dumps(summary)}")
    for warning in warnings:
        print(f"split: warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run("split", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
