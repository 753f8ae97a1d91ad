"""Orchestration on the demo: what the Prefect flow adds to `dvc repro`, and file drop -> gate decision.

Works on a copy of this repository (data, models, MLflow store, DVC cache) in a temp folder, against
a temporary Prefect server, and writes bench/results/orchestrate.json:
- overhead: an up-to-date run (every stage skipped) and a run where one stage re-runs
  (`promote.margin` changed), `dvc repro` beside the `pipeline` flow;
- reaction: a backfill batch dropped into the drop folder, watched by `mapwise watch`, retrained by
  the served `retrain/on-arrival` deployment; seconds to the event, to the flow's start, per stage,
  and to the gate decision.
The batch is synthetic: real Online Retail rows (customers, items, prices) resampled and moved one
year back, as a legacy system's history would arrive. Run it after `make demo`.
`--write-batch PATH` only writes such a batch (to drop into a running stack by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import lzma
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".prefect", "bench", "lightning_logs", ".pytest_cache"}


def copy_repo(dst: Path) -> Path:
    """The working tree with its outputs, DVC cache and MLflow store, without the venv and bench data."""
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [n for n in names if Path(d) == ROOT and n in SKIP])
    shutil.rmtree(dst / ".mapwise" / "stack", ignore_errors=True)
    return dst


def backfill_batch(path: Path, rows: int, seed: int = 0) -> Path:
    """`rows` real purchases resampled and moved 364 days back (same weekday), with invoice numbers of their own."""
    raw = pl.read_csv(lzma.decompress((ROOT / "data/demo/online-retail/online_retail_I.csv.xz").read_bytes()),
                      infer_schema=False)
    sample = raw.filter(pl.col("CustomerID").is_not_null() & ~pl.col("InvoiceNo").str.starts_with("C")).sample(rows, seed=seed)
    moved = pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S") - pl.duration(days=364)
    batch = sample.with_columns(("9" + pl.col("InvoiceNo")).alias("InvoiceNo"), moved.dt.strftime("%Y-%m-%d %H:%M:%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    batch.write_csv(part)
    part.rename(path)  # appears whole, as a producer should drop files
    return path


CPU: list[float] = []  # CPU seconds of each timed call: this process and the subprocesses it waited for


def timed(fn) -> float:
    """Wall seconds of `fn()`; its CPU seconds (less sensitive to a busy machine) are appended to CPU."""
    start, cpu = time.perf_counter(), os.times()
    fn()
    end = os.times()
    CPU.append(sum(getattr(end, f) - getattr(cpu, f) for f in ("user", "system", "children_user", "children_system")))
    return time.perf_counter() - start


def dvc_repro() -> None:
    subprocess.run(["dvc", "repro"], check=True, capture_output=True)


def overhead(repeats: int) -> dict:
    from flows.pipeline import pipeline
    from mapwise.overrides import params_overridden

    dvc_repro()  # make sure everything is up to date first
    pipeline(return_state=True)  # imports and first connections: a served flow has them already
    noop_dvc, noop_flow, cpu_dvc, cpu_flow = [], [], [], []
    for _ in range(repeats):  # alternated, so that a busy spell of the machine hits both
        noop_dvc.append(timed(dvc_repro))
        cpu_dvc.append(CPU[-1])
        noop_flow.append(timed(lambda: pipeline(return_state=True)))
        cpu_flow.append(CPU[-1])
    one_dvc, one_flow = [], []
    for i in range(repeats):  # a new margin each time, so that promote re-runs
        with params_overridden(Path("params.yaml"), {"promote.margin": 0.001 + (2 * i + 1) * 1e-4}):
            one_dvc.append(timed(dvc_repro))
        margin = {"promote.margin": 0.001 + (2 * i + 2) * 1e-4}
        one_flow.append(timed(lambda: pipeline(overrides=margin, return_state=True)))  # noqa: B023 (called at once)
    dvc_repro()  # back to the params on disk
    med = statistics.median
    return {
        "up_to_date": {"dvc_repro_s": round(med(noop_dvc), 2), "flow_s": round(med(noop_flow), 2),
                       "overhead_s": round(med(noop_flow) - med(noop_dvc), 2),
                       "dvc_repro_cpu_s": round(med(cpu_dvc), 2), "flow_cpu_s": round(med(cpu_flow), 2),
                       "note": "cpu: this process and the dvc processes it waited for (not the Prefect server)"},
        "promote_reruns": {"dvc_repro_s": round(med(one_dvc), 2), "flow_s": round(med(one_flow), 2),
                           "overhead_s": round(med(one_flow) - med(one_dvc), 2)},
        "repeats": repeats,
    }


def serve_deployments():
    from prefect.runner import Runner

    from mapwise.params import load_params

    spec = importlib.util.spec_from_file_location("serve_flows", ROOT / "deploy" / "serve_flows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = Runner(name="bench")
    for deployment in module.deployments(load_params(Path("params.yaml"))):
        runner.add_deployment(deployment)
    threading.Thread(target=lambda: asyncio.run(runner.start()), daemon=True).start()
    return runner


def reaction(rows: int) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )

    before = _model_figures()  # the champion's, trained from scratch on the data before the batch
    runner = serve_deployments()
    watch = subprocess.Popen([str(Path(sys.executable).parent / "mapwise"), "watch"], stdout=subprocess.PIPE, text=True)
    time.sleep(8)  # the watcher's first listing
    dropped = time.time()
    batch = backfill_batch(Path("data/incoming/online_retail/backfill.csv"), rows)
    with get_client(sync_client=True) as c:
        while True:
            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["on-arrival"])))
            if runs and runs[0].state.is_final():
                run = runs[0]
                break
            time.sleep(2)
        tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    runner.stop()
    watch.terminate()
    announced = next(line for line in watch.stdout if "announced" in line)
    decision = json.loads(Path("reports/promote.json").read_text())
    gate = next((t for t in tasks if t.name == "promote"), None)
    return {
        "batch_rows": rows, "batch": str(batch), "flow_state": run.state.name, "watch_output": announced.strip(),
        "drop_to_flow_start_s": round(run.start_time.timestamp() - dropped, 1),
        "drop_to_decision_s": round((gate or run).end_time.timestamp() - dropped, 1),  # the promote task's end
        "drop_to_flow_end_s": round(run.end_time.timestamp() - dropped, 1),
        "stages_s": {t.name: round(t.total_run_time.total_seconds(), 1) for t in sorted(tasks, key=lambda t: t.start_time)},
        "decision": {k: decision[k] for k in ("action", "challenger", "champion_before", "champion_after", "reason")},
        "models_before": before, "models_after": _model_figures(),
    }


def _model_figures() -> dict:
    """Per sequence model in reports/train.json: validation NDCG@10, steps, how it started; test NDCG@10 (all items)."""
    trained = json.loads(Path("reports/train.json").read_text())
    tested = json.loads(Path("reports/evaluate.json").read_text())["all_items"]["recommenders"]
    return {name: {"val_ndcg@10": t["val_ndcg@10"], "test_ndcg@10": tested.get(name, {}).get("ndcg@10"),
                   "steps": t["steps"], "refit_steps": t.get("refit", {}).get("steps"), "seconds": t["seconds"],
                   "init_from": t.get("init_from")} for name, t in trained.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000, help="purchases in the dropped batch")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "orchestrate.json")
    parser.add_argument("--write-batch", type=Path, metavar="PATH", help="only write a backfill batch there, and exit")
    parser.add_argument("--only", choices=["overhead", "reaction"], help="measure only this part (the other is kept "
                        "from the results file, if there is one)")
    args = parser.parse_args()
    if args.write_batch:
        print(f"{backfill_batch(args.write_batch, args.rows)}: {args.rows:,} purchases, one year back")
        return
    os.environ.update(DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        os.chdir(copy_repo(Path(tmp) / "repo"))
        result = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
        if args.only != "reaction":
            result["overhead"] = overhead(args.repeats)
        if args.only != "overhead":
            result["reaction"] = reaction(args.rows)
        result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_1min_at_end": round(os.getloadavg()[0], 2)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
