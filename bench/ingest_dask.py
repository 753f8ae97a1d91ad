"""Ingest on a Dask LocalCluster beside the in-process engine, on the same synthetic events file in one run:
seconds, rows/s, the cluster's start-up, and whether the two results are identical.

Writes bench/results/ingest_dask.json. On one machine a cluster can only lose or tie (the same cores, plus
shipping chunks and partitions between processes); what it shows is the cost of the hop and that the result
does not change. Speed-up comes from adding machines: point `ingest.dask.address` at a real cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from polars.testing import assert_frame_equal

from bench.ingest import DATA, KEY, ROOT, best_of, synthetic
from mapwise.params import DaskParams, IngestParams
from mapwise.sources.cluster import partition_executor
from mapwise.sources.ingest import Limits, ingest
from mapwise.sources.mapping.load import load_mapping


def _same(a, b) -> bool:
    a.report.pop("timestamps"), b.report.pop("timestamps")
    assert a.report == b.report
    for name in a.tables:
        assert_frame_equal(a.tables[name], b.tables[name])
        assert_frame_equal(a.quarantine[name], b.quarantine[name])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="synthetic events rows (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="timings keep the best of N runs")
    parser.add_argument("--chunk-mb", type=float, default=IngestParams.model_fields["chunk_mb"].default,
                        help="ingest.chunk_mb (default %(default)s)")
    args = parser.parse_args()
    limits = Limits.of(IngestParams.model_construct(chunk_mb=args.chunk_mb))
    file = synthetic(args.rows, DATA / "synthetic")
    mapping = load_mapping(ROOT / "bench" / "mappings" / "synthetic_events.yaml")
    local_s, local = best_of(args.repeats, lambda: ingest(file.parent, [mapping], KEY, limits))
    start = time.perf_counter()
    with partition_executor(DaskParams(workers=args.workers)) as executor:
        startup_s = time.perf_counter() - start
        dask_s, there = best_of(args.repeats, lambda: ingest(file.parent, [mapping], KEY, limits, executor=executor))
    rows = local.report["sources"][mapping.name]["rows_read"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "rows": rows, "chunk_mb": args.chunk_mb, "workers": args.workers,
        "local_s": round(local_s, 2), "local_rows_per_s": round(rows / local_s),
        "dask_s": round(dask_s, 2), "dask_rows_per_s": round(rows / dask_s),
        "dask_to_local": round(dask_s / local_s, 2), "cluster_startup_s": round(startup_s, 2),
        "identical_result": _same(local, there),
    }
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / "ingest_dask.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
