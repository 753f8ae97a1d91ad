"""Shared test helpers: build real sources in a temp dir and ingest them with the real code."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
import yaml

from mapwise.sources.ingest import IngestResult, Limits, ingest
from mapwise.sources.mapping.load import parse_mapping

REPO = Path(__file__).resolve().parents[1]
KEY = b"test-key-0123456789abcdef"

def layers_contract() -> dict:
    """The import contract that orders mapwise's domains (pyproject.toml, [tool.importlinter], id "layers")."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["id"] == "layers")


def modules_of(layer: str) -> list[str]:
    """The modules one layer names (siblings are separated by `|`, or `:` when they may import each other)."""
    return [part.strip() for part in layer.replace("|", ":").split(":")]


# A small orders export in the shape of a shop's CSV, with its mapping.
ORDERS_HEADER = "order,sku,name,qty,price,when,client,country"
ORDERS_ROWS = [
    "A1,S1,Red mug,2,3.5,2024-01-02 10:00:00,c1,UK",
    "A1,S2,Blue cup,1,4.0,2024-01-02 10:00:00,c1,UK",
    "A2,S1,Red mug,1,3.5,2024-01-03 11:30:00,c2,FR",
]


def orders_mapping(**overrides) -> dict:
    mapping = {
        "name": "orders",
        "read": {"pattern": "orders*.csv*"},
        "casts": {"qty": "int", "price": "float"},
        "timestamps": {"when": {"format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"}},
        "identity": "client",
        "tables": {
            "events": {
                "columns": {
                    "item_id": "sku",
                    "event_type": "'purchase'",
                    "timestamp": "when",
                    "quantity": "qty",
                    "value": "qty * price",
                    "session_id": "order",
                }
            },
            "items": {"columns": {"item_id": "sku", "title": "name", "price": "price"}},
            "customers": {"columns": {"country": "country"}},
        },
    }
    mapping.update(overrides)
    return mapping


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def run(raw_dir: Path, *mappings: dict) -> IngestResult:
    return ingest(raw_dir, [parse_mapping(m, f"{m['name']}.yaml") for m in mappings], KEY, Limits.of())


def assert_balanced(result: IngestResult) -> None:
    """accepted + quarantined = read, for every source and table."""
    for source in result.report["sources"].values():
        for counts in source["tables"].values():
            assert counts["accepted"] + counts["quarantined"] == counts["read"] == source["rows_read"]


@pytest.fixture(autouse=True)
def _environment_as_it_was():
    """Each test leaves the process environment as it found it: a variable set in-process (mlflow's
    set_tracking_uri sets $MLFLOW_TRACKING_URI, a CLI command its own) would reach the stages later tests start."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "raw"


def dump_mapping(path: Path, mapping: dict) -> Path:
    return write(path, yaml.safe_dump(mapping, sort_keys=False))


# A tiny shop for the learning stages: each customer walks a cycle of items (i -> i + 1), so a
# sequence model has something real to learn; purchases span the training, validation and test windows.
TINY_CUTOFF = "2024-03-01T00:00:00Z"


def tiny_events(customers: int = 80, items: int = 15, steps: int = 24, seed: int = 0):
    import numpy as np
    import polars as pl

    from mapwise.sources.contracts import CONTRACTS
    from mapwise.privacy.pseudonym import pseudonym

    rng = np.random.default_rng(seed)
    rows = []
    from datetime import datetime, timedelta

    start = datetime(2024, 1, 1)
    for cu in range(customers):
        item = int(rng.integers(items))
        offsets = np.sort(rng.choice(np.arange(0, 90 * 24), size=steps, replace=False))  # hours over 90 days
        for n, hours in enumerate(offsets):
            rows.append((pseudonym(f"c{cu}", KEY), f"i{(item + n) % items}", start + timedelta(hours=int(hours))))
    frame = pl.DataFrame(rows, schema=["customer_id", "item_id", "timestamp"], orient="row")
    contract = CONTRACTS["events"]
    return frame.with_columns(
        pl.format("tiny:{}", pl.int_range(pl.len())).alias("event_id"),
        pl.lit("purchase").alias("event_type"),
        pl.col("timestamp").dt.replace_time_zone("UTC").dt.cast_time_unit("us"),
        pl.lit(1, pl.Int32).alias("quantity"),
        pl.lit(2.5).alias("value"),
        pl.lit(None, pl.String).alias("session_id"),
        pl.lit("web").alias("channel"),
        pl.lit("tiny").alias("source"),
    ).select(list(contract.dtypes))


def tiny_project(root: Path, events: dict | None = None, **train_overrides) -> Path:
    """A project folder with canonical tiny tables and params shrunk for tests (CPU, tiny models)."""
    import polars as pl

    from mapwise.sources.contracts import CONTRACTS

    canonical = root / "data" / "canonical"
    canonical.mkdir(parents=True, exist_ok=True)
    events = tiny_events(**(events or {}))
    events.write_parquet(canonical / "events.parquet")
    items = events.select(pl.col("item_id").unique().sort())
    for name in ("customers", "items"):
        contract = CONTRACTS[name]
        key = events.select(pl.col(contract.key).unique().sort()) if name == "customers" else items
        key.with_columns([pl.lit(None, dt).alias(col) for col, dt in contract.dtypes.items() if col != contract.key]
                         ).select(list(contract.dtypes)).write_parquet(canonical / f"{name}.parquet")
    for name in ("customer_traits", "campaign_exposures", "sessions"):  # no source maps them: the targeting stages skip
        CONTRACTS[name].empty().write_parquet(canonical / f"{name}.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["split"].update(cutoff=TINY_CUTOFF, validation_days=10, horizon_days=30)
    params["train"].update(batch_size=64, max_epochs=2, min_steps=0, patience=2, warmup_steps=0, lr_schedule="constant",
                           accelerator="cpu",
                           devices=1)
    params["train"]["model"].update(max_len=6, embedding_dim=16, caser_window=3, sasrec_layers=1)
    params["train"]["per_model"] = {}  # one lr for all: tests change it
    params["train"].update(train_overrides)
    params["tracking"]["uri"] = "sqlite:///mlflow.db"
    params["evaluate"].update(bootstrap=200, ks=[5, 10])
    fit = {"hidden": [16], "head": [8], "batch_size": 64, "lr": 0.01, "max_epochs": 20, "patience": 3, "accelerator": "cpu",
           "devices": 1}
    params["propensity"].update(bootstrap=20, fit={**params["propensity"]["fit"], **fit},
                                tasks={"shop": {"kind": "next_purchase", "horizon_days": 10, "snapshots": 2},
                                       "trial": {"kind": "campaign_response", "campaign_id": "trial", "outcome": "visit"},
                                       "web": {"kind": "session_purchase"}})
    params["uplift"].update(campaign_id="trial", bootstrap=20, fit={**params["uplift"]["fit"], **fit})
    params["target"].update(outcome="visit", contact_cost=0.1)  # a visit uplift of 0.3 where the e-mail works, 0 elsewhere
    params["synth"]["gan"].update(epochs=3, batch_size=20, pac=2, generator=[32], discriminator=[32], embedding_dim=16,
                                  accelerator="cpu", devices=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


PII_COLUMN = "email"  # in the raw shop CSV, never mapped: it must reach no artifact


def shop_csv(path: Path, **events) -> Path:
    """Tiny purchase events as a shop's raw CSV (customer_id, item_id, timestamp, and the customer's e-mail)."""
    import polars as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    timestamps = pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S")
    email = pl.format("{}@shop.example", pl.col("customer_id").str.slice(0, 10)).alias(PII_COLUMN)
    tiny_events(**events).select("customer_id", "item_id", timestamps, email).write_csv(path)
    return path


def dvc_project(root: Path, baselines: list[str] | None = None, **train_overrides) -> Path:
    """A git + DVC repository with the real dvc.yaml, stages and code, a raw shop CSV and the tiny params, committed.

    Its default DVC remote is the real one, under ~ (tests that push set $HOME to a temporary folder).
    `baselines` replaces evaluate.baselines (a model barely trained loses to them, and a baseline then serves).
    """
    import shutil
    import subprocess

    tiny_project(root, **train_overrides)
    for name in ("dvc.yaml", "pipelines", "src/mapwise"):
        src, dst = REPO / name, root / name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() else shutil.copy(src, dst)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shop_csv(root / "raw" / "shop.csv")
    shutil.copytree(REPO / "data" / "batches", root / "data" / "batches")
    shutil.copytree(REPO / "data" / "privacy", root / "data" / "privacy")
    dump_mapping(root / "mappings" / "shop.yaml", {
        "name": "shop", "read": {"pattern": "shop.csv"}, "identity": "customer_id",
        "timestamps": {"timestamp": {"format": "%Y-%m-%d %H:%M:%S"}},
        "tables": {"events": {"columns": {"item_id": "item_id", "event_type": "'purchase'", "timestamp": "timestamp",
                                          "quantity": "1"}}},
    })
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"].update(raw_dir="raw", sources=["shop"])
    if baselines is not None:
        params["evaluate"]["baselines"] = baselines
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for ignore in (".gitignore", "data/.gitignore"):  # as in a clone: outputs are DVC's, not git's
        shutil.copy(REPO / ignore, root / ignore)
    git = ["git", "-c", "user.name=mapwise tests", "-c", "user.email=tests@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the tiny project"], cwd=root, check=True)
    return root


def stage_env() -> dict[str, str]:
    """The environment stages run in: this repository's code (then any $PYTHONPATH) and this venv's tools."""
    import os
    import sys

    path = os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_stage(root: Path, verb: str, *args: str, timeout: int = 600):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", f"pipelines.{verb}", *args], cwd=root, env=stage_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """One real Prefect server (SQLite in a temp dir) for the session; its URL is in the environment for subprocesses."""
    import os

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=120):
            mp.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
            yield os.environ["PREFECT_API_URL"]


@pytest.fixture(scope="session")
def exported_root(tmp_path_factory) -> Path:
    """A tiny project run through split, train (GRU and SASRec), evaluate and export, once per session."""
    root = tiny_project(tmp_path_factory.mktemp("exported"), {"customers": 150, "items": 60}, models=["gru", "sasrec"],
                        max_epochs=6, lr=0.01)
    for verb in ("split", "train", "evaluate", "export"):
        done = run_stage(root, verb)
        assert done.returncode == 0, f"{verb}: {done.stderr[-3000:]}"
    return root


@pytest.fixture
def project(exported_root, tmp_path, monkeypatch):
    """A private copy of the exported tiny project (with its MLflow store) as the working directory; its params."""
    import shutil

    from mapwise.params import load_params

    root = tmp_path / "project"
    shutil.copytree(exported_root, root, ignore=shutil.ignore_patterns(".mapwise"))
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return load_params(root / "params.yaml")


def worse_bundle(folder: Path, out: Path, seed: int = 1) -> Path:
    """A copy of a bundle whose graph is an untrained network of the same shape: real, exported, parity-checked, worse."""
    import json
    import shutil

    import numpy as np
    import torch

    from mapwise.bundles.format import CUSTOMERS_FILE, METADATA_FILE, MODEL_FILE, RECENT
    from mapwise.bundles.runtime import session
    from mapwise.recommend.models.networks import build_network
    from mapwise.recommend.export.onnx import check_parity, export_onnx
    from mapwise.params import ModelParams

    shutil.copytree(folder, out)
    meta = json.loads((out / METADATA_FILE).read_text())
    torch.manual_seed(seed)
    net = build_network(meta["model"], meta["n_items"], ModelParams(**meta["trained_with"]["model"])).eval()
    export_onnx(net, out / MODEL_FILE, top_k=meta["top_k"])
    import polars as pl

    histories = [np.asarray(h) for h in pl.read_parquet(out / CUSTOMERS_FILE)[RECENT].to_list()]
    meta["parity"] = check_parity(net, session(out / MODEL_FILE), histories, atol=1e-4, min_agreement=0.99).as_dict()
    (out / METADATA_FILE).write_text(json.dumps(meta))
    return out


def tiny_targeting(canonical: Path, customers: int = 2400, seed: int = 0) -> None:
    """Canonical tables for the targeting stages: a randomised e-mail trial whose effect depends on traits,
    the traits themselves, and web sessions whose purchases follow page value. Customers are new pseudonyms."""
    import numpy as np
    import polars as pl

    from mapwise.privacy.pseudonym import pseudonym
    from mapwise.sources.contracts import CONTRACTS, TraitSpec, traits_contract

    rng = np.random.default_rng(seed)
    ids = [pseudonym(f"t{i}", KEY) for i in range(customers)]
    loyalty = rng.normal(size=customers)
    plan = rng.choice(["basic", "plus"], size=customers)
    arm = rng.choice(["control", "mail_a", "mail_b"], size=customers)
    base = 0.15 + 0.05 * (loyalty > 0)
    effect = np.where(arm == "mail_a", 0.3 * (plan == "plus"), np.where(arm == "mail_b", 0.3 * (loyalty > 0.5), 0.0))
    visit = rng.random(customers) < base + effect
    conversion = visit & (rng.random(customers) < 0.4)
    spend = np.where(conversion, rng.gamma(2.0, 20.0, customers), 0.0)
    exposures = pl.DataFrame({
        "exposure_id": [f"trial:{i}" for i in range(customers)], "customer_id": ids, "campaign_id": "trial",
        "arm": arm, "treated": arm != "control", "timestamp": None, "channel": "email", "visit": visit,
        "conversion": conversion, "spend": spend, "source": "trial",
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    exposures.select(list(CONTRACTS["campaign_exposures"].dtypes)).write_parquet(canonical / "campaign_exposures.parquet")
    traits = traits_contract({"loyalty": TraitSpec(type="number"), "plan": TraitSpec(type="category", values=["basic", "plus"])})
    pl.DataFrame({"record_id": [f"trial:{i}" for i in range(customers)], "customer_id": ids, "observed_at": None,
                  "source": "trial", "loyalty": loyalty, "plan": plan}).with_columns(
        pl.col("observed_at").cast(pl.Datetime("us", "UTC"))).select(list(traits.dtypes)).write_parquet(
        canonical / "customer_traits.parquet")
    n = customers // 2
    page_value = rng.exponential(5.0, n) * (rng.random(n) < 0.4)
    sessions = CONTRACTS["sessions"].empty().vstack(pl.DataFrame({
        "session_id": [f"s{i}" for i in range(n)], "page_value": page_value, "product_pages": rng.integers(0, 50, n).astype(np.int32),
        "visitor_type": rng.choice(["new", "returning"], n), "purchased": rng.random(n) < 0.05 + 0.6 * (page_value > 5),
        "source": "web",
    }).with_columns([pl.lit(None, dt).alias(col) for col, dt in CONTRACTS["sessions"].dtypes.items()
                     if col not in ("session_id", "page_value", "product_pages", "visitor_type", "purchased", "source")]
    ).select(list(CONTRACTS["sessions"].dtypes)).cast(CONTRACTS["sessions"].dtypes))
    sessions.write_parquet(canonical / "sessions.parquet")


def keyed_params(folder: Path) -> Path:
    """A params.yaml in `folder` (the tiny project's) whose ingest key file holds KEY: for commands that pseudonymise."""
    key_file = folder / "hmac.key"
    key_file.write_text(KEY.decode() + "\n")
    params = yaml.safe_load((tiny_project(folder / "project") / "params.yaml").read_text())
    params["ingest"]["key_file"] = str(key_file)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder / "params.yaml"
