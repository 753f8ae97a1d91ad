"""Ingest throughput: mapping + validation rows/s beside a bare polars read of the same file.

Writes bench/results/ingest.json. Online Retail comes from ../shared/data when present, else from
the demo copy; the synthetic events file (10M rows by default) is generated from the events
contract's vocabulary into bench/data/ once and reused.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

from mapwise.sources.ingest import Limits, ingest
from mapwise.sources.mapping.spec import load_mapping

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
KEY = b"bench-key-not-a-secret-0123456789"
ACTIONS = {"view": 0.70, "cart": 0.12, "uncart": 0.03, "buy": 0.13, "return": 0.02}


def synthetic_events(path: Path, rows: int, seed: int = 0) -> None:
    """A clickstream CSV: 200k users, 50k items, 3M sessions, ~0.1% bad rows."""
    rng = np.random.default_rng(seed)
    names = np.array(list(ACTIONS))
    qty = rng.integers(1, 5, rows)
    qty[rng.random(rows) < 0.001] = -1  # bad rows the contract must quarantine
    frame = pl.DataFrame(
        {
            "user": rng.integers(1, 200_000, rows),
            "sku": rng.integers(10_000, 60_000, rows),
            "action": names[rng.choice(len(names), rows, p=list(ACTIONS.values()))],
            "ts": rng.integers(1_700_000_000, 1_730_000_000, rows),
            "qty": qty,
            "price": rng.integers(50, 20_000, rows) / 100,
            "session": rng.integers(0, 3_000_000, rows),
            "channel": np.array(["web", "app", "email"])[rng.integers(0, 3, rows)],
        }
    ).with_columns(pl.concat_str(pl.lit("SKU-"), pl.col("sku").cast(pl.String)).alias("sku"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)


def online_retail_csv() -> Path:
    """The Online Retail CSV, decompressed once so both timings read the same plain file."""
    out = DATA / "online-retail" / "online_retail_I.csv"
    if not out.exists():
        shared = ROOT.parent / "shared" / "data" / "online-retail" / "online_retail_I.csv.xz"
        source = shared if shared.exists() else ROOT / "data" / "demo" / "online-retail" / "online_retail_I.csv.xz"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(lzma.decompress(source.read_bytes()))
    return out


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(name: str, raw_dir: Path, file: Path, mapping_path: Path, repeats: int) -> dict:
    mapping = load_mapping(mapping_path)
    read_s, frame = best_of(repeats, lambda: pl.read_csv(file, infer_schema=False))  # text, as ingest reads
    ingest_s, result = best_of(repeats, lambda: ingest(raw_dir, [mapping], KEY, Limits.of()))
    rows = result.report["sources"][mapping.name]["rows_read"]
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for table, data in result.tables.items():
        data.write_parquet(out / f"{table}.parquet")
    write_s = time.perf_counter() - start
    return {
        "dataset": name,
        "rows": rows,
        "file_mb": round(file.stat().st_size / 1e6, 1),
        "bare_read_s": round(read_s, 3),
        "ingest_s": round(ingest_s, 3),
        "rows_per_s": round(rows / ingest_s),
        "ratio_to_bare_read": round(ingest_s / read_s, 2),
        "parquet_write_s": round(write_s, 3),
        "accepted_rows": {t: v["accepted"] for t, v in result.report["sources"][mapping.name]["tables"].items()},
        "bare_read_columns": frame.width,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="synthetic events rows (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="timings keep the best of N runs")
    args = parser.parse_args()
    results = []
    retail = online_retail_csv()
    mapping = ROOT / "mappings" / "online_retail.yaml"
    results.append(measure("online_retail", DATA, retail, mapping, args.repeats))
    synthetic = DATA / "synthetic" / "synthetic_events.csv"
    marker = synthetic.with_suffix(".rows")
    if not (synthetic.exists() and marker.exists() and marker.read_text() == str(args.rows)):
        print(f"generating {args.rows:,} synthetic events ...", flush=True)
        synthetic_events(synthetic, args.rows)
        marker.write_text(str(args.rows))
    mapping = ROOT / "bench" / "mappings" / "synthetic_events.yaml"
    results.append(measure("synthetic_events", synthetic.parent, synthetic, mapping, args.repeats))
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__},
        "target": {"rows_per_s": 1_000_000, "max_ratio_to_bare_read": 3.0},
        "results": results,
    }
    out = ROOT / "bench" / "results" / "ingest.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(f"{r['dataset']}: {r['rows']:,} rows, ingest {r['ingest_s']} s ({r['rows_per_s']:,} rows/s), "
              f"bare read {r['bare_read_s']} s, ratio {r['ratio_to_bare_read']}x, parquet write {r['parquet_write_s']} s")


if __name__ == "__main__":
    main()
