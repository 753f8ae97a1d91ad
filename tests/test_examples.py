"""The docs' "Bring your own data" walk-through (docs/mapping.md), command by command, on the committed examples."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mapwise.cli import app

from conftest import REPO

EXAMPLE = REPO / "examples" / "own-data"
runner = CliRunner()


def _stage(name: str, root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
           "MAPWISE_HMAC_KEY": "an-example-key-of-some-length"}
    done = subprocess.run([sys.executable, "-m", f"pipelines.{name}"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_the_example_mappings_check_and_preview_what_ingest_accepts(tmp_path, monkeypatch):
    mappings = sorted((EXAMPLE / "mappings").glob("*.yaml"))
    checked = runner.invoke(app, ["mapping", "check", *map(str, mappings)])
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(": ok (") == len(mappings) == 3

    shown = runner.invoke(app, ["mapping", "preview", str(EXAMPLE / "mappings/shop_orders.yaml"),
                                str(EXAMPLE / "data/shop/orders.csv.gz"), "--params", str(tmp_path / "none.yaml")])
    assert shown.exit_code == 0, shown.output
    with gzip.open(EXAMPLE / "data/shop/orders.csv.gz", "rt") as f:
        lines = sum(1 for _ in f) - 1
    assert f"events: {lines:,} accepted, 0 rejected of {lines:,}" in shown.output  # identical lines kept

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(raw_dir=str(EXAMPLE / "data"), mappings_dir=str(EXAMPLE / "mappings"),
                            sources=["shop_orders", "ratings", "movies"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _stage("ingest", tmp_path)
    report = json.loads((tmp_path / "reports/ingest.json").read_text())
    counts = {s: {t: (v["read"], v["accepted"]) for t, v in d["tables"].items()} for s, d in report["sources"].items()}
    with open(EXAMPLE / "data/ratings/ratings.csv") as f:
        ratings = sum(1 for _ in f) - 1
    assert counts == {"shop_orders": {"events": (lines, lines), "items": (lines, lines)},
                      "ratings": {"events": (ratings, ratings)}, "movies": {"items": (150, 150)}}

    _stage("profile", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAPWISE_HMAC_KEY", "an-example-key-of-some-length")
    found = runner.invoke(app, ["profile", "show", "K00216"])  # the shop's own customer number
    assert found.exit_code == 0, found.output
    assert "found by your own id" in found.output and "K00216" not in found.output  # never echoed
