"""The synth stage and `mapwise synth` on a tiny project: three generators judged, the GAN saved, exports checked."""

from __future__ import annotations

import json

import polars as pl
import yaml
from typer.testing import CliRunner

from conftest import run_stage, tiny_project


def test_the_stage_judges_three_generators_and_the_cli_writes_contract_valid_profiles(tmp_path, monkeypatch):
    from mapwise.cli import app
    from mapwise.profiles.build import PROFILE_SCHEMA

    root = tiny_project(tmp_path / "p", {"customers": 120})
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["synth"]["categorical"] = ["segment", "top_category"]
    params["synth"]["utility_target"] = "segment"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for verb in ("profile", "synth"):
        done = run_stage(root, verb)
        assert done.returncode == 0, f"{verb}: {done.stderr[-3000:]}"
    report = json.loads((root / "reports/synth.json").read_text())
    assert set(report["generators"]) == {"ctgan", "gaussian_copula", "independent"}
    assert report["real"]["rows"] + report["holdout"]["rows"] == 120
    for r in report["generators"].values():
        assert 0 <= r["shape"] <= 1 and r["rows"] == report["real"]["rows"]
        assert r["privacy"]["synthetic_median"] >= 0 and "tstr" in r["utility"]
    assert len(report["generators"]["ctgan"]["history"]) == params["synth"]["gan"]["epochs"]
    assert (root / "reports/synth.html").read_text().count("<img") >= 3

    monkeypatch.chdir(root)
    runner = CliRunner()
    done = runner.invoke(app, ["synth", "--rows", "40", "--out", "syn.parquet"])
    assert done.exit_code == 0, done.output
    out = pl.read_parquet(root / "syn.parquet")
    PROFILE_SCHEMA.validate(out.select(list(PROFILE_SCHEMA.columns)))
    assert out.height == 40 and out["customer_id"].str.starts_with("s").all()
    real = set(pl.read_parquet(root / "data/profiles/profiles.parquet")["customer_id"])
    assert not real & set(out["customer_id"])

    params["privacy"]["k_anonymity"]["quasi_identifiers"] = ["top_category"]
    params["privacy"]["k_anonymity"]["k"] = 41  # 40 rows: every group is too small
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    refused = runner.invoke(app, ["synth", "--rows", "40", "--out", "refused.parquet"])
    assert refused.exit_code == 1 and "k=41" in refused.output and not (root / "refused.parquet").exists()
