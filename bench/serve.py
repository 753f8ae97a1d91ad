"""The real HTTP service under load against a bare endpoint, and model time per request.

Starts `mapwise serve` on a bundle (default: the registered model's, models/export/<name>) and, beside
it, a bare FastAPI endpoint of the same route and JSON shape on the same uvicorn settings
(bench/bare_app.py). For each worker count and concurrency, `wrk` drives POST /recommendations (k = 10,
a mix of known and unknown customers) at mapwise, then at the bare endpoint, back to back: the
ratios mapwise / bare of throughput and p99 cancel most of the machine's noise. With several
`--retrieval` methods (exact, ann) each is served and measured in the same run. For bundles with
retrieval files it also reports recall@10 of the ann path against exact scoring, and times one
history at batch 1 through onnxruntime and through the torch network it was exported from.

    python bench/serve.py                               # the demo bundle; bench/results/serve.json
    python bench/catalogue.py --out /tmp/c100k          # a synthetic 100k-item shop, then:
    python bench/serve.py --bundle /tmp/c100k/bundle --key-file /tmp/c100k/hmac.key \
        --requests /tmp/c100k/requests.json --network /tmp/c100k/sasrec.pt --retrieval exact ann \
        --out bench/results/serve_100k.json

Needs `wrk` (apt install wrk) and a bundle (a finished `dvc repro`, or bench/catalogue.py).
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

import yaml

from mapwise.bundles.format import load_bundle
from mapwise.bundles.runtime import INPUT, SCORES
from mapwise.recommend.network_file import load_network
from mapwise.recommend.export.onnx import ScoringGraph
from mapwise.params import RetrievalParams, load_params
from mapwise.privacy.pseudonym import KEY_ENV
from mapwise.serving.recommendations import Recommender
from mapwise.serving.retrieval import recall_at

ROOT = Path(__file__).resolve().parents[1]
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def raw_customer_ids(params, limit: int, root: Path = ROOT) -> list[str]:
    """Customer ids as the shop knows them (the raw demo file), for realistic requests."""
    path = sorted((root / params.ingest.raw_dir / "online-retail").glob("online_retail_I.csv*"))[0]
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
    # a 10 s timeout: slow answers are measured, not dropped as errors
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s",
                          str(script), url], capture_output=True, text=True, check=True).stdout
    latency = {p: float(v) * _UNIT[u] for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    return {
        "concurrency": connections,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        **{f"p{p}_ms": round(latency[p], 3) if p in latency else None for p in ("50", "90", "99")},
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": bool(re.search(r"Socket errors", out)),
        "timeouts": int(timeouts.group(1)) if timeouts else 0,
    }


def serve(bundle: Path, port: int, workers: int, params_file: Path, key: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "mapwise"), "serve", "--params", str(params_file), "--model", str(bundle),
               "--port", str(port), "--workers", str(workers)]
    return _ready(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True, env={**os.environ, KEY_ENV: key}), port)


def serve_bare(port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "bench/bare_app.py"), "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return _ready(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True, env=env), port)


def _ready(proc: subprocess.Popen, port: int) -> subprocess.Popen:
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


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def retrieval_quality(bundle: Path, r: RetrievalParams, customers: int) -> dict:
    """recall@10 of the ann path against exact full scoring, on known customers' histories, and ms per history."""
    b = load_bundle(bundle)
    exact, ann = Recommender(b, r.model_copy(update={"method": "exact"})), Recommender(b, r.model_copy(update={"method": "ann"}))
    if ann.ann is None:
        return {"ann": "not available (not a dot-product model, or no retrieval files)"}
    histories = [h for h, _ in list(exact.customers.values())[:customers]]
    times = {}
    tops = {}
    for label, rec in (("exact", exact), ("ann", ann)):
        start, rows = time.perf_counter(), []
        for h in histories:
            rows.append(rec.top(rec.infer([h])[0], rec.everything, 10)[0])
        times[f"{label}_ms_per_history"] = round((time.perf_counter() - start) / len(histories) * 1e3, 3)
        tops[label] = np.stack(rows)
    return {"recall@10": round(recall_at(tops["exact"], tops["ann"]), 4), "customers": len(histories),
            "distinct_items_in_exact_top10": len(np.unique(tops["exact"])),  # few: the ranking is mostly popularity
            "candidates": r.candidates, "nprobe": ann.ann.nprobe, "nlist": ann.ann.nlist, **times}


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
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: export.out_dir/<model>)")
    parser.add_argument("--key-file", type=Path, default=None, help="pseudonymisation key (default: ingest.key_file)")
    parser.add_argument("--requests", type=Path, default=None,
                        help='JSON {"customers": raw ids, "items": item ids} (default: the raw demo file)')
    parser.add_argument("--data-root", type=Path, default=ROOT, help="where the demo's raw data and key are")
    parser.add_argument("--network", type=Path, default=None, help="the torch network, for model time (optional)")
    parser.add_argument("--retrieval", nargs="+", default=["auto"], choices=["auto", "exact", "ann"])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--recall-customers", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3000, help="histories timed at batch 1 (model time)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/serve.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: apt install wrk")
    os.chdir(ROOT)
    params = load_params(args.params)
    name = args.model or (load_bundle(args.bundle).name if args.bundle else json.loads(params.register.report.read_text())["model"])
    bundle = args.bundle or params.export.out_dir / name
    key = (args.key_file or args.data_root / params.ingest.key_file).read_text().strip()
    if args.requests:
        wanted = json.loads(args.requests.read_text())
        known, recent = wanted["customers"][:150], wanted["items"][:2]
    else:
        known, recent = raw_customer_ids(params, 150, args.data_root), ["85123A", "22423"]
    bodies = [json.dumps({"customer_id": cu, "k": 10}) for cu in known]
    bodies += [json.dumps({"customer_id": f"new-{n}", "k": 10, "recent_items": recent}) for n in range(30)]
    bodies += [json.dumps({"customer_id": f"anon-{n}", "k": 10}) for n in range(20)]
    network = args.network or params.train.out_dir / f"{name}.pt"
    retrieval = params.serve.retrieval
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": name, "k": 10, "catalogue": load_bundle(bundle).n_items, "requests_mix": {
            "known_customers": len(known), "unknown_with_recent_items": 30, "unknown_cold_start": 20},
        "wrk": {"seconds": args.seconds, "threads": 1},
        "retrieval_params": retrieval.model_dump(),
        "retrieval_quality": retrieval_quality(bundle, retrieval, args.recall_customers),
        "model_time_batch1": model_time(bundle, network, repeats=args.repeats) if network.is_file() else None,
        "http": [],
    }
    print(json.dumps({k: result[k] for k in ("retrieval_quality", "model_time_batch1")}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        script = lua_script(bodies, Path(tmp) / "post.lua")
        raw = yaml.safe_load(args.params.read_text())
        for workers in args.workers:
            bare = serve_bare(args.port + 1, workers)
            try:
                for method in args.retrieval:
                    raw["serve"]["retrieval"] = {**raw["serve"].get("retrieval", {}), "method": method}
                    params_file = Path(tmp) / f"params-{method}.yaml"
                    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
                    proc = serve(bundle, args.port, workers, params_file, key)
                    try:
                        urls = {"mapwise": f"http://127.0.0.1:{args.port}", "bare": f"http://127.0.0.1:{args.port + 1}"}
                        for url in urls.values():
                            wrk(url, script, 8, 2)  # warm-up
                        for c in args.concurrency:
                            runs = {label: wrk(url, script, c, args.seconds) for label, url in urls.items()}
                            m, b = runs["mapwise"], runs["bare"]
                            row = {"workers": workers, "concurrency": c, "retrieval": method, "mapwise": m, "bare": b,
                                   "throughput_ratio": round(m["requests_per_s"] / b["requests_per_s"], 3),
                                   "p99_ratio": round(m["p99_ms"] / b["p99_ms"], 3) if m["p99_ms"] and b["p99_ms"] else None}
                            print(json.dumps(row), flush=True)
                            result["http"].append(row)
                    finally:
                        stop(proc)
            finally:
                stop(bare)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
