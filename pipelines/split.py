"""DVC stage `split`: training interactions, item index, validation and test windows (params: split)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from mapwise.errors import MapwiseError
from mapwise.params import load_params
from mapwise.split import leave_last_out_split, save_split, temporal_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
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
            raise MapwiseError(f"split: no {'items' if split.n_items == 0 else 'test customers'}; check split.cutoff")
    except MapwiseError as err:
        print(f"split: {err}", file=sys.stderr)
        return 1
    save_split(split, p.out_dir)
    summary = split.summary()
    p.report.parent.mkdir(parents=True, exist_ok=True)
    p.report.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"split ({p.method}): {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
