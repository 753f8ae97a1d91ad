"""A synthetic shop at real catalogue size (default 100,000 items), trained briefly and exported for serving.

Purchase sequences come from topics (groups of items): each customer buys mostly within one or two
topics, more often the topic's popular items. Every item is bought at least once in training (not only in a customer's last two), so the
model's catalogue is the whole one. One sequence model (default SASRec, sampled softmax: a full softmax
over 10^5 items does not fit a short CPU run) is trained for a few hundred steps with the project's own
training code (`train_model`, Lightning) and exported with the project's own exporter (`export_graphs`:
scoring graph with parity check, query graph and item vectors), with the item and customer tables the
export stage builds. The customers are pseudonymised with a bench key written beside the bundle.

Writes <out>/bundle (a model bundle), <out>/<model>.pt (the network), <out>/hmac.key and
<out>/requests.json (raw customer ids and item ids for bench/serve.py). About 2-4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.params import load_params
from mapwise.privacy.pseudonym import pseudonyms
from mapwise.recommend.models.training import train_model
from mapwise.recommend.models.files import export_network, network_hparams
from mapwise.recommend.network_file import load_network
from mapwise.recommend.split import leave_last_out_split
from mapwise.bundles.format import write_bundle
from mapwise.recommend.export.tables import customer_table, item_table
from pipelines.export import bundle_metadata, export_graphs

ROOT = Path(__file__).resolve().parents[1]


def synthetic_shop(n_items: int, customers: int, per_customer: int, topic_size: int, seed: int,
                   key: bytes) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Purchase events (canonical columns), the items table and the raw customer ids."""
    rng = np.random.default_rng(seed)
    topics = max(1, n_items // topic_size)
    topic_of = np.arange(n_items) % topics  # item i belongs to topic i % topics
    members = [np.flatnonzero(topic_of == t) for t in range(topics)]
    rows_customer, rows_item = [], []
    for cu in range(customers):
        chosen = rng.choice(topics, size=2, replace=False) if topics > 1 else np.zeros(2, dtype=int)
        picks = []
        for _ in range(per_customer):
            items = members[chosen[0] if rng.random() < 0.75 else chosen[1]]
            rank = min(int(rng.zipf(1.3)) - 1, len(items) - 1)  # a topic's first items are its popular ones
            picks.append(items[rank] if rng.random() < 0.6 else items[rng.integers(len(items))])
        rows_customer += [cu] * per_customer
        rows_item += picks
    seen = np.zeros(n_items, dtype=bool)
    training = np.tile(np.arange(per_customer), customers) < per_customer - 2  # the last two: validation, test
    seen[np.asarray(rows_item)[training]] = True
    unseen = np.flatnonzero(~seen)  # bought once each, early on (in training), by a random customer
    first = rng.integers(customers, size=len(unseen))
    customer = np.concatenate([first, np.asarray(rows_customer)])
    item = np.concatenate([unseen, np.asarray(rows_item)])
    order = np.concatenate([np.full(len(unseen), -1), np.tile(np.arange(per_customer), customers)])
    raw = [f"shop-{n}" for n in range(customers)]
    ids = np.asarray(pseudonyms(raw, key), dtype=object)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = pl.DataFrame({
        c.CUSTOMER_ID: ids[customer].tolist(),
        c.ITEM_ID: [f"SKU{i:06d}" for i in item],
        c.TIMESTAMP: [start + timedelta(days=int(o) + 1) for o in order],
        c.EVENT_TYPE: "purchase",
    }).sort(c.TIMESTAMP, maintain_order=True)
    items = pl.DataFrame({
        c.ITEM_ID: [f"SKU{i:06d}" for i in range(n_items)],
        c.TITLE: [f"item {i} of topic {t}" for i, t in enumerate(topic_of)],
        c.CATEGORY: [f"topic-{t % 50}" for t in topic_of],
        c.PRICE: np.round(rng.uniform(1, 100, n_items), 2),
    })
    return events, items, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--per-customer", type=int, default=8)
    parser.add_argument("--topic-size", type=int, default=100)
    parser.add_argument("--model", default="sasrec", choices=["gru", "caser", "sasrec"])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (a brief training)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mapwise-catalogue")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    args.out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    (args.out / "hmac.key").write_text(key + "\n")
    start = time.perf_counter()
    events, shop_items, raw = synthetic_shop(args.items, args.customers, args.per_customer, args.topic_size,
                                             args.seed, key.encode())
    split = leave_last_out_split(events, min_history=1)
    print(f"{events.height:,} purchases, {split.n_items:,} items, {args.customers:,} customers "
          f"({time.perf_counter() - start:.0f}s)", flush=True)
    model = params.train.model.model_copy(update={"max_len": 20})
    p = params.train.for_model(args.model).model_copy(update={
        "model": model, "loss": "sampled_softmax", "negatives": 512, "batch_size": 128, "max_steps": args.steps,
        "min_steps": 0, "max_epochs": 1, "val_every_steps": args.steps, "val_customers": 500, "warmup_steps": 20,
        "accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"})
    result = train_model(args.model, split, p, work_dir=args.out / "checkpoints", progress=False)
    network = args.out / f"{args.model}.pt"
    export_network(result.checkpoint, network)
    net = load_network(network)
    print(f"trained {result.steps} steps in {result.seconds:.0f}s, validation NDCG@10 {result.best_score:.4f}", flush=True)
    folder = args.out / "bundle"
    folder.mkdir(parents=True, exist_ok=True)
    sample = [np.asarray(h) for h in split.test.head(500)["history"].to_list()]
    export = params.export
    parity, query_diff = export_graphs(net, folder, sample, export, top_k=export.top_k)
    if not parity.passed or query_diff is None:
        raise SystemExit(f"export failed: parity {parity.as_dict()}, query diff {query_diff}")
    items = item_table(split.items, shop_items, events, category_tokens=params.profile.category_tokens,
                       window_days=export.cold_start_window_days)
    metadata = {**bundle_metadata(args.model, net, export.top_k, parity, query_diff),
                "trained_with": network_hparams(network), "lineage": {"data_version": "synthetic"},
                "metrics": {"validation": {"ndcg@10": result.best_score}}}
    write_bundle(folder, metadata, items, customer_table(events, split.items, net.max_len))
    popular = split.items.head(200)[c.ITEM_ID].to_list()
    (args.out / "requests.json").write_text(json.dumps({"customers": raw[:1000], "items": popular}))
    print(f"bundle {folder}: {net.n_items:,} items, parity max |diff| {parity.max_abs_diff:.2g}, query max |diff| "
          f"{query_diff:.2g} ({time.perf_counter() - start:.0f}s in all)")


if __name__ == "__main__":
    main()
