"""Newcomer rough edges (issue 15): tiny catalogues, profile look-up by one's own id, 80-column reports, what a
split records. Small hand-built data, real files in tmp_path, real stages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import polars as pl
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from mapwise import columns as c
from mapwise.cli import app
from mapwise.errors import MapwiseError
from mapwise.recommend.gate import judge
from mapwise.params import PromoteParams, SplitParams
from mapwise.privacy.pseudonym import pseudonym
from mapwise.recommend.baselines import build_baseline
from mapwise.recommend.evaluate import evaluate
from mapwise.recommend.split import (
    describe_split,
    leave_last_out_split,
    require_trainable,
    small_data_warnings,
    temporal_split,
)
from mapwise.report import print_evaluate_report, print_ingest_report
from mapwise.sources.contracts import UTC_TIMESTAMP

from conftest import KEY, keyed_params, run_stage, tiny_project

T = datetime(2024, 3, 1, tzinfo=UTC)
runner = CliRunner()


def _events(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """Purchases: (customer, item, days relative to T)."""
    return pl.DataFrame(
        {c.CUSTOMER_ID: [r[0] for r in rows], c.ITEM_ID: [r[1] for r in rows],
         c.TIMESTAMP: [T + timedelta(days=r[2]) for r in rows], c.EVENT_TYPE: ["purchase"] * len(rows)},
        schema_overrides={c.TIMESTAMP: UTC_TIMESTAMP},
    )


def _split(rows):
    return temporal_split(_events(rows), cutoff=T, validation_days=10, horizon_days=30, min_history=1)


# -- 5. a catalogue smaller than the models and metrics need ---------------------------------------------------


def test_split_warns_and_the_train_code_refuses_a_one_item_catalogue():
    one_item = _split([(cu, "x", d) for cu in "abc" for d in (-30, -20, -5, 3)])
    assert one_item.n_items == 1
    (warning,) = small_data_warnings(one_item, ks=[5, 10])
    assert "1 item" in warning and "train will refuse" in warning and "propensity/uplift" in warning
    with pytest.raises(MapwiseError) as refused:
        require_trainable(one_item)
    message = str(refused.value)
    assert "\n" not in message and "the split has 1 item" in message and "need at least 2 items" in message
    assert "profile (RFM and segments)" in message and "propensity/uplift" in message


def test_split_warns_on_few_items_and_sequences_and_refuses_no_sequence():
    few = _split([("a", "x", -30), ("a", "y", -25), ("a", "z", -20), ("a", "x", -5), ("a", "y", 3)])
    warnings = small_data_warnings(few, ks=[5, 10, 20])
    assert any("3 items, fewer than the top 20" in w and "whole catalogue" in w for w in warnings)
    assert any("only 1 training sequence" in w for w in warnings)
    require_trainable(few)  # small, but something to learn from: warned, not refused
    lonely = _split([(cu, item, -30) for cu, item in zip("abc", "xyz", strict=True)]
                    + [(cu, "x", -5) for cu in "abc"] + [(cu, "y", 3) for cu in "abc"])
    with pytest.raises(MapwiseError, match="no customer with 2\\+ training purchases"):
        require_trainable(lonely)
    assert any("train will refuse" in w for w in small_data_warnings(lonely, ks=[10]))


def test_evaluation_clamps_k_to_the_catalogue_for_every_baseline():
    split = _split([("a", "x", -30), ("a", "y", -25), ("b", "y", -20), ("b", "x", -18), ("a", "x", -5),
                    ("a", "y", 3), ("b", "x", 5)])
    assert split.n_items == 2
    scorers = {name: build_baseline(name, popularity_window_days=30, knn_neighbours=5).fit(split.refit, split.n_items).score
               for name in ("popularity", "personal_popularity", "recency_frequency", "item_knn", "ease")}
    report = evaluate(split, scorers, ks=[1, 5, 10], slices={}, baselines=list(scorers), bootstrap=20, seed=0)
    for name in scorers:
        m = report["all_items"]["recommenders"][name]
        assert m["hr@10"] == m["hr@5"] == 1.0 and m["recall@10"] == 1.0  # both items ranked: every target is found
        assert m["ndcg@10"] == m["ndcg@5"]
    assert "2 items, fewer than K=10" in report["catalogue"]["note"]
    assert report["new_items"] == {"customers": 0, "recommenders": {}, "note": "no test customer: nothing to score"}
    empty = {"customers": 0, "recommenders": {}}
    assert judge(empty, PromoteParams(variant="new_items"), 10)[:2] == (
        False, "no test customer in the new_items variant: nothing to compare on")


def test_one_item_catalogue_split_warns_and_train_refuses_in_one_line(tmp_path):
    root = tiny_project(tmp_path, {"customers": 20, "items": 1, "steps": 6}, models=["gru"], max_epochs=1)
    split = run_stage(root, "split")
    assert split.returncode == 0, split.stderr[-2000:]
    assert "split: warning: the split has 1 item" in split.stderr
    report = json.loads((root / "reports/split.json").read_text())
    assert report["items"] == 1 and any("train will refuse" in w for w in report["warnings"])
    train = run_stage(root, "train")
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert train.stderr.count("\n") == 1 and train.stderr.startswith("train: the split has 1 item")
    assert "need at least 2 items" in train.stderr and "propensity/uplift" in train.stderr
    assert not (root / "models/trained/gru.pt").exists()


def test_three_item_catalogue_trains_evaluates_exports_and_serves_leave_last_out(tmp_path):
    from mapwise.bundles.format import load_bundle
    from mapwise.serving.recommendations import Recommender

    root = tiny_project(tmp_path, {"customers": 30, "items": 3, "steps": 8}, models=["gru"], max_epochs=1)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["split"]["method"] = "leave_last_out"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for verb in ("split", "train", "evaluate", "export"):
        done = run_stage(root, verb)
        assert done.returncode == 0, f"{verb}: {done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
    split = json.loads((root / "reports/split.json").read_text())
    assert split["items"] == 3 and any("3 items, fewer than the top 10" in w for w in split["warnings"])
    # 8. leave-last-out records its method and what it used, never the temporal cutoff or horizon
    assert split["method"] == "leave_last_out" and not {"cutoff", "horizon_end", "validation_start"} & set(split)
    evaluation = json.loads((root / "reports/evaluate.json").read_text())
    assert evaluation["split"]["method"] == "leave_last_out"
    assert not {"cutoff", "horizon_end", "validation_start"} & set(evaluation["split"])
    gru = evaluation["all_items"]["recommenders"]["gru"]
    assert gru["hr@10"] == gru["hr@5"] == 1.0  # the whole catalogue of 3 is every list
    meta = json.loads((root / "models/export/gru/metadata.json").read_text())
    assert meta["top_k"] == 3 and meta["metrics"]["test_window"] == evaluation["split"]
    rec = Recommender(load_bundle(root / "models/export/gru"))
    known = next(iter(rec.customers))
    answer = rec.recommend(known, 10)
    assert len(answer.items) == 3 and answer.notes == ["the catalogue has only 3 items"]
    assert len(rec.recommend(None, 10).items) == 3


def test_split_descriptions_carry_only_what_the_method_used():
    p = SplitParams(cutoff=T, validation_days=10, horizon_days=30)
    temporal = describe_split(p)
    assert temporal["method"] == "temporal" and temporal["cutoff"] == T.isoformat()
    assert temporal["horizon_end"] == (T + timedelta(days=30)).isoformat()
    llo = describe_split(p.model_copy(update={"method": "leave_last_out"}))
    assert set(llo) == {"method", "held_out", "min_history"}
    events = _events([(cu, item, d) for cu in "ab" for item, d in (("x", -3), ("y", -2), ("x", -1), ("y", 0))])
    assert leave_last_out_split(events, min_history=1).test.height == 2


# -- 6. profile show by the customer's own id ---------------------------------------------------------------


@pytest.fixture
def looked_up(tmp_path, monkeypatch):
    """A profiles table of two customers (one is raw id '196' pseudonymised), the key in a key file, params."""
    monkeypatch.delenv("MAPWISE_HMAC_KEY", raising=False)
    keyed_params(tmp_path)
    profiles = tmp_path / "profiles.parquet"
    pl.DataFrame({c.CUSTOMER_ID: [pseudonym("196", KEY), "f" * 32], c.SEGMENT: ["loyal", "new"],
                  c.FREQUENCY: [4, 1], c.RECENT_ITEMS: [["I1", "I2"], ["I3"]]}).write_parquet(profiles)
    return tmp_path


def _show(folder, customer, params="params.yaml"):
    return runner.invoke(app, ["profile", "show", customer, "--profiles", str(folder / "profiles.parquet"),
                               "--params", str(folder / params)], env={"COLUMNS": "80"})


def test_profile_show_by_own_id_then_by_pseudonym(looked_up):
    before = sorted(p.name for p in looked_up.rglob("*"))
    mine = _show(looked_up, "196")
    assert mine.exit_code == 0, mine.output
    assert "found by your own id" in mine.output and "loyal" in mine.output and "I1, I2" in mine.output
    assert "196" not in mine.output.replace(pseudonym("196", KEY), "")  # the raw id is never printed
    assert sorted(p.name for p in looked_up.rglob("*")) == before  # ... nor stored
    direct = _show(looked_up, "f" * 32)
    assert direct.exit_code == 0 and "new" in direct.output and "found by your own id" not in direct.output


def test_profile_show_says_both_were_tried(looked_up):
    missing = _show(looked_up, "999")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1
    assert "no profile for customer '999' (tried as your own id" in missing.stderr and "and as a pseudonym" in missing.stderr
    assert pseudonym("999", KEY) not in missing.output


def test_profile_show_without_the_key_looks_up_pseudonyms_only(looked_up):
    params = yaml.safe_load((looked_up / "params.yaml").read_text())
    params["ingest"]["key_file"] = str(looked_up / "no.key")
    (looked_up / "keyless.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    keyless = _show(looked_up, "196", "keyless.yaml")
    assert keyless.exit_code == 1 and "tried as a pseudonym only" in keyless.stderr
    assert "no pseudonymisation key" in keyless.stderr and not (looked_up / "no.key").exists()
    assert _show(looked_up, "f" * 32, "keyless.yaml").exit_code == 0


# -- 7. reports at 80 columns (logs, CI) ---------------------------------------------------------------------

NAMES = ["personal_popularity", "recency_frequency", "popularity", "item_knn", "ease", "repeatnet", "sasrec", "gru"]


def _metrics(score: float, vs: dict | None = None) -> dict:
    m = {f"{kind}@10": score for kind in ("ndcg", "recall", "hr", "mrr")}
    m.update({"ndcg@10_ci": [score - 0.01, score + 0.01], "coverage@10": 0.5})
    return {**m, "ndcg@10_vs_best_baseline": vs} if vs else m


def _evaluation() -> dict:
    better = {"baseline": "personal_popularity", "diff": 0.0123, "ci": [0.0011, 0.0234], "better": True}
    worse = {"baseline": "personal_popularity", "diff": -0.2305, "ci": [-0.2444, -0.2170], "better": False}
    recs = {name: _metrics(0.3 - n / 100, better if name == "repeatnet" else worse if name in ("sasrec", "gru") else None)
            for n, name in enumerate(NAMES)}
    return {"all_items": {"customers": 1335, "recommenders": recs},
            "new_items": {"customers": 1223, "recommenders": recs},
            "before_refit": {"all_items": {n: {"ndcg@10": 0.1} for n in ("repeatnet", "sasrec", "gru")}}}


def _render(print_report, report: dict, width: int, **kw) -> str:
    out = StringIO()
    print_report(report, console=Console(file=out, width=width), **kw)
    return out.getvalue()


def test_evaluate_report_reads_whole_at_80_columns():
    text = _render(print_evaluate_report, _evaluation(), 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for name in NAMES:
        assert len(re.findall(rf"│ {name} +│", text)) == 4  # whole, in both parts of both variants
    assert "better" in text and "-0.2305 [-0.2444, -0.2170]" in text
    wide = _render(print_evaluate_report, _evaluation(), 200)
    assert re.search(r"NDCG@10 \[95% CI\] ┃ Recall@10 ┃", wide) and "other metrics" not in wide  # one table where it fits


def test_ingest_report_reads_whole_at_80_columns():
    tables = {"campaign_exposures": 109211, "customer_traits": 109211, "sessions": 12178, "events": 399687}
    counts = {"read": 541909, "accepted": 399687, "quarantined": 142222, "forgotten": 12,
              "reasons": {"admin_duration: failed check greater_than_or_equal_to(0)": 33}}
    report = {"sources": {"online_shoppers_sessions": {"tables": {t: counts for t in tables}, "files": []}},
              "tables": {t: {"rows": n} for t, n in tables.items()}}
    text = _render(print_ingest_report, report, 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "│ online_shoppers_sessions " in text and "│   campaign_exposures " in text  # each source heads its tables
    assert "541,909" in text and "greater_than_or_equal_to(0)" in text
    assert "campaign_exposures 109,211" in text.replace("\n", " ")  # a name is never split from its count
    wide = _render(print_ingest_report, report, 160)
    assert "│ online_shoppers_sessions │ campaign_exposures │" in wide  # side by side where they fit


def test_cli_tables_fit_80_columns():
    done = runner.invoke(app, ["contracts"], env={"COLUMNS": "80"})
    assert done.exit_code == 0 and "…" not in done.output
    assert max(len(line) for line in done.output.splitlines()) <= 80
    assert "campaign_exposures" in done.output and "customer_traits" in done.output
