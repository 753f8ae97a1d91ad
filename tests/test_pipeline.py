"""The ingest stage as DVC runs it: the real entry point, `dvc repro` and `dvc push` in a temp repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from conftest import ORDERS_HEADER, ORDERS_ROWS, REPO, dump_mapping, orders_mapping, write

BIN = Path(sys.executable).parent


def _project(tmp_path: Path, params_change=None) -> Path:
    """A copy of the project's pipeline files with a small source of its own."""
    root = tmp_path / "project"
    for name in ("dvc.yaml", "pipelines", "src/mapwise"):
        src, dst = REPO / name, root / name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() else (
            dst.parent.mkdir(parents=True, exist_ok=True), shutil.copy(src, dst))
    shutil.copytree(REPO / "data" / "batches", root / "data" / "batches")
    shutil.copytree(REPO / "data" / "privacy", root / "data" / "privacy")
    write(root / "raw" / "orders.csv", "\n".join([ORDERS_HEADER, *ORDERS_ROWS, "A9,S1,Mug,-1,1.0,2024-01-02 10:00:00,c9,UK"]) + "\n")
    dump_mapping(root / "mappings" / "orders.yaml", orders_mapping())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(raw_dir="raw", sources=["orders"])
    if params_change:
        params_change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _env(root: Path) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "MAPWISE_HMAC_KEY": "a-test-key-of-some-length", "PYTHONPATH": str(root / "src")}


def _run(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=300)


def test_stage_writes_tables_quarantine_and_report(tmp_path):
    root = _project(tmp_path)
    done = _run([sys.executable, "-m", "pipelines.ingest"], root)
    assert done.returncode == 0, done.stderr
    assert "canonical rows" in done.stdout
    events = pl.read_parquet(root / "data/canonical/events.parquet")
    quarantine = pl.read_parquet(root / "data/quarantine/events.parquet")
    assert (events.height, quarantine.height) == (3, 1)
    report = json.loads((root / "reports/ingest.json").read_text())
    assert report["sources"]["orders"]["tables"]["events"] == {
        "read": 4, "accepted": 3, "quarantined": 1, "forgotten": 0, "reasons": {"quantity: failed check greater_than(0)": 1}
    }


def test_stage_user_errors_are_one_line(tmp_path):
    root = _project(tmp_path, lambda p: p["ingest"].update(sources=["nope"]))
    done = _run([sys.executable, "-m", "pipelines.ingest"], root)
    assert done.returncode == 2
    assert done.stderr == "ingest: mappings/nope.yaml: cannot read mapping (No such file or directory)\n"
    root = _project(tmp_path / "2", lambda p: p["ingest"].update(raw_dirr="x"))
    done = _run([sys.executable, "-m", "pipelines.ingest"], root)
    assert done.returncode == 2 and done.stderr == "ingest: params.yaml: ingest.raw_dirr: unknown key (did you mean 'raw_dir'?)\n"
    assert _run([sys.executable, "-m", "pipelines.ingest", "--help"], root).returncode == 0


def test_dvc_repro_and_push_to_the_default_remote_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = _project(tmp_path)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    for cmd in (["git", "init", "-q"], ["dvc", "repro", "ingest"], ["dvc", "push"], ["dvc", "status", "ingest"]):
        done = _run(cmd, root)
        assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
    assert "up to date" in done.stdout
    assert (root / "dvc.lock").exists()
    remote = tmp_path / "home" / ".local" / "share" / "mapwise" / "dvc-remote"
    assert any(remote.rglob("*")), "dvc push stored nothing in the default remote, a per-user folder"
    again = _run(["dvc", "repro", "ingest"], root)
    assert "didn't change, skipping" in again.stdout


def test_whole_pipeline_then_a_train_param_reruns_only_what_follows_train(tmp_path):
    from conftest import dvc_project

    # no baselines: the barely trained GRU is what registers, so a new seed makes a new version for the gate
    root = dvc_project(tmp_path / "project", baselines=[], models=["gru"], max_epochs=1)
    params = yaml.safe_load((root / "params.yaml").read_text())
    env = {**_env(root), "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    done = run("dvc", "repro")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Data and pipelines are up to date" in run("dvc", "status").stdout
    assert json.loads((root / "reports/evaluate.json").read_text())["all_items"]["recommenders"]["gru"]
    first = json.loads((root / "reports/promote.json").read_text())
    assert (first["action"], first["champion_after"], first["reason"]) == ("promote", "1", "no champion yet")
    params["train"]["seed"] = 43  # (not lr: the GRU has its own, in train.per_model)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run("dvc", "status", "--json")
    assert set(json.loads(status.stdout)) == {"train"}, status.stdout
    again = run("dvc", "repro").stdout
    for stage in ("ingest", "profile", "split"):
        assert f"Stage '{stage}' didn't change, skipping" in again
    for stage in ("train", "evaluate", "export", "register", "promote"):
        assert f"Running stage '{stage}'" in again
    second = json.loads((root / "reports/promote.json").read_text())  # a new version, judged by the gate
    assert second["challenger"] == "2" and second["action"] in ("promote", "refuse") and second["figures"]["customers"]
