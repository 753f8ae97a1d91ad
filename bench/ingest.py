"""Ingest throughput: mapping + validation rows/s beside a bare polars read of the same file, with the
seconds per step, and peak memory (RSS) as files grow.

Writes bench/results/ingest.json. Online Retail comes from ../shared/data when present, else from
the demo copy; the synthetic events files (10M rows by default; 1M, 10M and 30M for memory) are
generated from the events contract's vocabulary into bench/data/ once and reused. Peak RSS is
measured in a fresh process per file (ru_maxrss): ingest with the canonical tables written as
parquet, beside a bare polars read of the same file.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from mapwise.sources.ingest import PARQUET_OPTIONS, Limits, ingest
from mapwise.sources.mapping.load import load_mapping
from mapwise.params import IngestParams

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
    """The fastest of `repeats` runs: its seconds and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if (spent := time.perf_counter() - start) < best:
            best, result = spent, out
        del out
    return best, result


def _ingest_timed(raw_dir: Path, mapping, limits: Limits):
    timings: dict[str, float] = {}
    result = ingest(raw_dir, [mapping], KEY, limits, timings=timings)
    return result, timings


def measure(name: str, raw_dir: Path, file: Path, mapping_path: Path, repeats: int, limits: Limits) -> dict:
    mapping = load_mapping(mapping_path)
    read_s, frame = best_of(repeats, lambda: pl.read_csv(file, infer_schema=False))  # text, as ingest reads
    width = frame.width
    del frame
    ingest_s, (result, timings) = best_of(repeats, lambda: _ingest_timed(raw_dir, mapping, limits))
    rows = result.report["sources"][mapping.name]["rows_read"]
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for table, data in result.tables.items():
        data.write_parquet(out / f"{table}.parquet", **PARQUET_OPTIONS)
    write_s = time.perf_counter() - start
    total_s = ingest_s + write_s
    return {
        "dataset": name,
        "rows": rows,
        "file_mb": round(file.stat().st_size / 1e6, 1),
        "bare_read_s": round(read_s, 3),
        "ingest_s": round(ingest_s, 3),
        "rows_per_s": round(rows / ingest_s),
        "ratio_to_bare_read": round(ingest_s / read_s, 2),
        "parquet_write_s": round(write_s, 3),
        "ingest_and_write_s": round(total_s, 3),
        "rows_per_s_with_write": round(rows / total_s),
        "ratio_to_bare_read_with_write": round(total_s / read_s, 2),
        "steps_s": {step: round(spent, 3) if isinstance(spent, float) else spent for step, spent in timings.items()},
        "accepted_rows": {t: v["accepted"] for t, v in result.report["sources"][mapping.name]["tables"].items()},
        "bare_read_columns": width,
    }


def synthetic(rows: int, folder: Path) -> Path:
    """The synthetic events file of `rows` rows in `folder`, generated once."""
    file = folder / "synthetic_events.csv"
    marker = file.with_suffix(".rows")
    if not (file.exists() and marker.exists() and marker.read_text() == str(rows)):
        print(f"generating {rows:,} synthetic events ...", flush=True)
        synthetic_events(file, rows)
        marker.write_text(str(rows))
    return file


def _peak_child(what: str, file: str, chunk_mb: float) -> None:
    """In a fresh process: a bare read or an ingest + parquet write of `file`; prints peak RSS (MiB) and seconds."""
    start = time.perf_counter()
    if what == "bare":
        rows = pl.read_csv(file, infer_schema=False).height
    else:
        mapping = load_mapping(ROOT / "bench" / "mappings" / "synthetic_events.yaml")
        limits = Limits.of(IngestParams.model_construct(chunk_mb=chunk_mb))
        result = ingest(Path(file).parent, [mapping], KEY, limits)
        out = Path(file).parent / "out"
        out.mkdir(exist_ok=True)
        for table, data in result.tables.items():
            data.write_parquet(out / f"{table}.parquet", **PARQUET_OPTIONS)
        rows = result.report["sources"][mapping.name]["rows_read"]
        held = sum(frame.estimated_size() for frame in [*result.tables.values(), *result.quarantine.values()])
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": rows, "peak_rss_mib": round(_peak_rss_kib() / 1024), "seconds": round(seconds, 2),
                      "result_tables_mib": round(held / 2**20) if what != "bare" else None}))


def _peak_rss_kib() -> int:
    """This process's peak resident memory: VmHWM, which exec resets (ru_maxrss keeps the parent's peak at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


WHOLE_MB = 1e6  # a chunk_mb no file reaches: the file read whole, as before chunks


def _child(what: str, file: Path, chunk_mb: float) -> dict:
    done = subprocess.run([sys.executable, __file__, "--peak-child", what, str(file), str(chunk_mb)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory(sizes: list[int], whole_sizes: list[int], chunk_mb: float) -> list[dict]:
    """Peak RSS per file size, each run in a fresh process: ingest + write in chunks, a bare read, and for
    `whole_sizes` ingest + write with the file read whole."""
    results = []
    for rows in sizes:
        file = synthetic(rows, DATA / "sizes" / str(rows))
        entry = {"rows": rows, "file_mb": round(file.stat().st_size / 1e6, 1), "chunk_mb": chunk_mb}
        runs = [("ingest", "ingest", chunk_mb), ("bare", "bare", chunk_mb)]
        runs += [("ingest_whole_file", "ingest", WHOLE_MB)] if rows in whole_sizes else []
        for name, what, mb in runs:
            child = _child(what, file, mb)
            entry[f"{name}_peak_rss_mib"] = child["peak_rss_mib"]
            entry[f"{name}_s"] = child["seconds"]
            if child["result_tables_mib"] is not None:
                entry[f"{name}_result_tables_mib"] = child["result_tables_mib"]
        print(f"{rows:,} rows: peak RSS {', '.join(f'{k} {v}' for k, v in entry.items() if 'rss' in k)} MiB", flush=True)
        results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="synthetic events rows (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="timings keep the best of N runs")
    parser.add_argument("--chunk-mb", type=float, default=IngestParams.model_fields["chunk_mb"].default,
                        help="ingest.chunk_mb (default %(default)s)")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000, 30_000_000],
                        help="synthetic file sizes (rows) whose peak RSS is measured; none to skip")
    parser.add_argument("--memory-whole-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000],
                        help="of those, the sizes also measured with the file read whole (no chunks)")
    parser.add_argument("--peak-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        what, file, chunk_mb = args.peak_child
        _peak_child(what, file, float(chunk_mb))
        return
    limits = Limits.of(IngestParams.model_construct(chunk_mb=args.chunk_mb))
    results = []
    retail = online_retail_csv()
    mapping = ROOT / "mappings" / "online_retail.yaml"
    results.append(measure("online_retail", DATA, retail, mapping, args.repeats, limits))
    synthetic_file = synthetic(args.rows, DATA / "synthetic")
    mapping = ROOT / "bench" / "mappings" / "synthetic_events.yaml"
    results.append(measure("synthetic_events", synthetic_file.parent, synthetic_file, mapping, args.repeats, limits))
    for r in results:
        print(f"{r['dataset']}: {r['rows']:,} rows, ingest {r['ingest_s']} s ({r['rows_per_s']:,} rows/s), "
              f"bare read {r['bare_read_s']} s, ratio {r['ratio_to_bare_read']}x, parquet write {r['parquet_write_s']} s "
              f"(with it {r['rows_per_s_with_write']:,} rows/s, {r['ratio_to_bare_read_with_write']}x); "
              f"steps {r['steps_s']}", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__,
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "target": {"rows_per_s": 1_000_000, "max_ratio_to_bare_read": 3.0},
        "results": results,
        "peak_memory": peak_memory(args.memory_sizes, args.memory_whole_sizes, args.chunk_mb),
    }
    out = ROOT / "bench" / "results" / "ingest.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
