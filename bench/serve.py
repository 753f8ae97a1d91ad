"""The real HTTP service under load, and model time per request: onnxruntime vs torch eager.

Starts `mapwise serve` on the exported bundle (default: the registered model's, models/export/<name>),
drives POST /recommendations with `wrk` (k = 10, a mix of known and unknown customers) at several
concurrencies and worker counts, and times one history at batch 1 through onnxruntime and through
the torch network it was exported from. Writes bench/results/serve.json.

Needs `wrk` (apt install wrk) and a finished `dvc repro` (export stage).
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mapwise.serving.bundle import load_bundle
from mapwise.serving.inference import INPUT, SCORES
from mapwise.recommend.models.training import load_network
from mapwise.serving.onnx_export import ScoringGraph
from mapwise.params import load_params
from mapwise.serving.recommendations import Recommender

ROOT = Path(__file__).resolve().parents[1]
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def raw_customer_ids(params, limit: int) -> list[str]:
    """Customer ids as the shop knows them (the raw demo file), for realistic requests."""
    path = sorted((ROOT / params.ingest.raw_dir / "online-retail").glob("online_retail_I.csv*"))[0]
    data = lzma.open(path).read() if path.suffix == ".xz" else gzip.open(path).read() if path.suffix == ".gz" else (
        path.read_bytes())
    ids = pl.read_csv(data, columns=["CustomerID"], infer_schema_length=0)["CustomerID"].drop_nulls().unique(
        maintain_order=True)
    return [str(int(float(x))) for x in ids.head(limit).to_list()]


def lua_script(bodies: list[str], path: Path) -> Path:
    quoted = ",\n".join("[[" + b + "]]" for b in bodies)
    path.write_text(
        f"bodies = {{\n{quoted}\n}}\ncounter = 0\n"
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n  counter = counter + 1\n"
        '  return wrk.format(nil, "/recommendations", nil, bodies[(counter % #bodies) + 1])\nend\n'
    )
    return path


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    # one load thread (under 0.2 core here), so the service keeps the cores
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    latency = {p: float(v) * _UNIT[u] for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "concurrency": connections,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": round(latency["50"], 3), "p90_ms": round(latency["90"], 3), "p99_ms": round(latency["99"], 3),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": bool(re.search(r"Socket errors", out)),
    }


def serve(bundle: Path, port: int, workers: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mapwise"), "serve", "--model", str(bundle), "--port", str(port),
                             "--workers", str(workers)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the service did not become ready: {proc.stderr.read().decode()[-2000:]}")


def model_time(bundle: Path, network: Path, repeats: int) -> dict:
    """Median microseconds to score one history (batch 1, full catalogue), onnxruntime vs torch eager.

    torch_eager runs exactly the exported computation (ScoringGraph: for SASRec, the last position only);
    torch_network runs the network's own forward (every position).
    """
    rec = Recommender(load_bundle(bundle, threads=1))
    net = load_network(network)
    graph = ScoringGraph(net, None).eval()
    windows = [np.asarray(r, dtype=np.int64)[-rec.max_len:] for r, _ in list(rec.customers.values())[:200]]
    batch = [np.pad(w, (rec.max_len - len(w), 0))[None, :] for w in windows]
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sess = load_bundle(bundle, threads=threads).session
        for label, fn in (("onnxruntime", lambda x, s=sess: s.run([SCORES], {INPUT: x})),
                          ("torch_eager", lambda x: graph(torch.from_numpy(x))),
                          ("torch_network", lambda x: net(torch.from_numpy(x)))):
            with torch.inference_mode():
                for x in batch[:20]:
                    fn(x)
                times = []
                for i in range(repeats):
                    x = batch[i % len(batch)]
                    start = time.perf_counter()
                    fn(x)
                    times.append(time.perf_counter() - start)
            out[f"{label}_threads{threads}_us"] = round(float(np.median(times)) * 1e6, 1)
    for threads in (1, 2):
        out[f"speedup_threads{threads}"] = round(out[f"torch_eager_threads{threads}_us"] / out[f"onnxruntime_threads{threads}_us"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--model", default=None, help="architecture to serve (default: the one register chose)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/serve.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: apt install wrk")
    os.chdir(ROOT)
    params = load_params(args.params)
    name = args.model or json.loads(params.register.report.read_text())["model"]
    bundle = params.export.out_dir / name
    known = raw_customer_ids(params, 150)
    bodies = [json.dumps({"customer_id": cu, "k": 10}) for cu in known]
    bodies += [json.dumps({"customer_id": f"new-{n}", "k": 10, "recent_items": ["85123A", "22423"]}) for n in range(30)]
    bodies += [json.dumps({"customer_id": f"anon-{n}", "k": 10}) for n in range(20)]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": name, "k": 10, "catalogue": load_bundle(bundle).n_items, "requests_mix": {
            "known_customers": len(known), "unknown_with_recent_items": 30, "unknown_cold_start": 20},
        "model_time_batch1": model_time(bundle, params.train.out_dir / f"{name}.pt", repeats=3000),
        "http": [],
    }
    print(json.dumps(result["model_time_batch1"]))
    with tempfile.TemporaryDirectory() as tmp:
        script = lua_script(bodies, Path(tmp) / "post.lua")
        for workers in args.workers:
            proc = serve(bundle, args.port, workers)
            try:
                url = f"http://127.0.0.1:{args.port}"
                wrk(url, script, 8, 2)  # warm-up
                for c in args.concurrency:
                    row = {"workers": workers, **wrk(url, script, c, args.seconds)}
                    print(json.dumps(row))
                    result["http"].append(row)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
