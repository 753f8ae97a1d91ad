"""Forgetting, end to end, on a real git + DVC project: after a full pipeline run a customer asks to be forgotten;
the service stops knowing them at once, the next `dvc repro` rebuilds and retrains without them (the gate replaces
the champion trained on them), and after `--purge-history` neither an output, a served answer, the MLflow store nor
a stored DVC version holds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from conftest import dvc_project, stage_env


def _answer(root: Path, raw_id: str) -> dict:
    from mapwise.params import load_params
    from mapwise.serving.app import build

    with TestClient(build(load_params(root / "params.yaml"), follow=False)) as client:
        done = client.post("/recommendations", json={"customer_id": raw_id, "k": 3})
    assert done.status_code == 200, done.text
    return done.json()


@pytest.mark.slow  # two full pipeline runs (~3 min on 2 cores)
def test_a_forgotten_customer_leaves_every_output_answer_and_stored_version(tmp_path, monkeypatch):
    from mapwise.privacy.pseudonym import load_key, pseudonym
    from mapwise.privacy.scan import scan

    root = dvc_project(tmp_path / "project", models=["gru"], max_epochs=1)
    env = {**stage_env(), "HOME": str(tmp_path / "home"), "PYTHONPATH": f"{root / 'src'}:{root}"}
    monkeypatch.setenv("HOME", env["HOME"])  # the default DVC remote lives under ~
    monkeypatch.chdir(root)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done

    run("dvc", "repro")
    run("dvc", "push")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run("git", "add", "-A")
    run(*git, "commit", "-q", "-m", "first run")
    raw = pl.read_csv(root / "raw" / "shop.csv")["customer_id"]
    who = raw.value_counts(sort=True)["customer_id"][0]  # the most active customer
    gone = pseudonym(who, load_key(root / ".mapwise" / "hmac.key", create=False))
    assert gone in pl.read_parquet(root / "data/canonical/events.parquet")["customer_id"].to_list()
    assert _answer(root, who)["customer_known"] is True

    done = run(sys.executable, "-m", "mapwise", "forget", who)
    assert "1 request(s) logged" in done.stdout and "row(s) removed" in done.stdout
    assert who not in (root / "data/privacy/forget.jsonl").read_text()  # the log holds the pseudonym only
    assert _answer(root, who)["customer_known"] is False  # at once, from the champion trained on them

    run("dvc", "repro")
    ingest = json.loads((root / "reports/ingest.json").read_text())
    assert ingest["tables"]["events"]["forgotten"] > 0
    promote = json.loads((root / "reports/promote.json").read_text())
    assert promote["action"] == "promote" and "forgotten" in promote["reason"], promote
    assert _answer(root, who)["customer_known"] is False  # from the retrained champion

    outputs = [root / p for p in ("data/canonical", "data/quarantine", "data/profiles", "data/split", "data/audience",
                                  "models", "reports", "mlflow.db", "mlartifacts", ".mapwise/serving")]
    assert scan([p for p in outputs if p.exists()], [gone, who]) == []
    run("git", "add", "-A")
    run(*git, "commit", "-q", "-m", "forgotten")
    run("dvc", "push")
    stored = [root / ".dvc" / "cache", tmp_path / "home" / ".local/share/mapwise/dvc-remote"]
    assert scan(stored, [gone]), "the first run's stored versions hold the customer: the test could not fail"

    done = run(sys.executable, "-m", "mapwise", "forget", who, "--purge-history", "--yes")
    assert "WARNING" in done.stdout and "unreproducible" in done.stdout
    assert scan(stored, [gone]) == []
    run("dvc", "checkout")  # the current version is whole
