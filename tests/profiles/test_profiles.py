"""Customer profiles: hand-computed RFM, point-in-time correctness, categories, segments, report, stage and CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from mapwise import columns as c
from mapwise.cli import app
from mapwise.sources.contracts import CONTRACTS
from mapwise.profiles.report import write_profile_report
from mapwise.profiles.build import OTHER, PROFILE_SCHEMA, SEGMENT_OF_RF, build_profiles, default_as_of, derive_categories

from conftest import REPO

A, B, E, C, D = ("a" * 32, "b" * 32, "e" * 32, "c" * 32, "d" * 32)
AS_OF = datetime(2024, 3, 1, tzinfo=timezone.utc)
SETTINGS = {"sequence_length": 3, "category_tokens": 2}


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def _table(name: str, rows: list[dict]) -> pl.DataFrame:
    """A canonical table from partial rows (missing columns null), checked against its contract."""
    contract = CONTRACTS[name]
    frame = pl.DataFrame([{col: row.get(col) for col in contract.dtypes} for row in rows], schema=contract.dtypes)
    return contract.schema.validate(frame)


def _event(eid: str, customer: str, item: str, kind: str, ts: datetime, value: float | None, session: str | None = None,
           channel: str = "web", quantity: int = 1) -> dict:
    return {c.EVENT_ID: eid, c.CUSTOMER_ID: customer, c.ITEM_ID: item, c.EVENT_TYPE: kind, c.TIMESTAMP: ts,
            c.QUANTITY: quantity, c.VALUE: value, c.SESSION_ID: session, c.CHANNEL: channel, c.SOURCE: "test"}


EVENTS = _table(c.EVENTS, [
    _event("e0", A, "I3", "view", _utc(2023, 12, 1), None, channel="app"),
    _event("e1", A, "I1", "purchase", _utc(2024, 1, 1, 10), 10.0, "S1", quantity=2),
    _event("e2", A, "I2", "purchase", _utc(2024, 1, 1, 10), 5.0, "S1"),
    _event("e3", A, "I1", "purchase", _utc(2024, 2, 20, 12), 5.0, channel="email"),  # no session: basket = day
    _event("e4", A, "I3", "purchase", _utc(2024, 2, 20, 15), None),  # no value: quantity x price = 8
    _event("e5", A, "I2", "return", _utc(2024, 2, 25), 5.0, "R1"),
    _event("e6", B, "I4", "purchase", _utc(2024, 2, 29), 3.0, "S2"),
    _event("e7", E, "I5", "purchase", _utc(2024, 1, 15, 10), 100.0, "S3"),
    _event("e8", E, "I6", "purchase", _utc(2024, 2, 10), 50.0, "S4"),
    _event("e9", C, "I1", "view", _utc(2024, 2, 1), None),  # never bought: no profile
])
FUTURE = _table(c.EVENTS, [
    _event("f1", A, "I4", "purchase", AS_OF, 99.0, "S9"),  # at the cutoff: already the future
    _event("f2", B, "I1", "return", _utc(2024, 3, 2), 3.0, "R2"),
    _event("f3", D, "I2", "purchase", _utc(2024, 3, 5), 7.0, "S8"),
    _event("f4", E, "I7", "view", _utc(2025, 1, 1), None, channel="app"),
])
ITEMS = _table(c.ITEMS, [
    {c.ITEM_ID: "I1", c.TITLE: "Red Ceramic Mug", c.PRICE: 5.0},
    {c.ITEM_ID: "I2", c.TITLE: "blue mugs", c.PRICE: 5.0},
    {c.ITEM_ID: "I3", c.TITLE: "Scented Candle", c.CATEGORY: "HOME", c.PRICE: 8.0},
    {c.ITEM_ID: "I4", c.TITLE: "Paper Bag", c.PRICE: 3.0},
    {c.ITEM_ID: "I5", c.TITLE: "Garden Lantern", c.PRICE: 100.0},
    {c.ITEM_ID: "I6", c.TITLE: "SET OF 3 BAGS", c.PRICE: 50.0},
    {c.ITEM_ID: "I7", c.PRICE: 1.0},
])
CUSTOMERS = _table(c.CUSTOMERS, [{c.CUSTOMER_ID: A, c.COUNTRY: "France"}, {c.CUSTOMER_ID: B, c.COUNTRY: "Spain"}])


def _profiles(events: pl.DataFrame = EVENTS, as_of: datetime = AS_OF) -> pl.DataFrame:
    return build_profiles(events, CUSTOMERS, ITEMS, as_of=as_of, **SETTINGS)


@pytest.fixture(scope="module")
def profiles() -> pl.DataFrame:
    return _profiles()


def test_hand_computed_customer(profiles):
    assert profiles[c.CUSTOMER_ID].to_list() == [A, B, E]
    a = profiles.row(0, named=True)
    assert a == {
        c.CUSTOMER_ID: A,
        c.AS_OF: AS_OF,
        c.RECENCY_DAYS: 9.375,  # last purchase 2024-02-20 15:00
        c.FREQUENCY: 2,  # session S1, and the day 2024-02-20 (two purchases without a session)
        c.MONETARY: 23.0,  # 10 + 5 + 5 + 8 purchased - 5 returned
        c.TENURE_DAYS: 91.0,  # first event (a view) 2023-12-01
        c.AVG_BASKET_VALUE: 14.0,  # 28 over 2 baskets
        c.DISTINCT_ITEMS: 3,
        c.PURCHASES: 4,
        c.RETURNS: 1,
        c.RETURN_RATE: 0.2,
        c.TOP_CATEGORY: "MUG",
        c.INTERESTS: "MUG:0.75,HOME:0.25",
        c.PREFERRED_CHANNEL: "web",
        c.COUNTRY: "France",
        c.RECENT_ITEMS: ["I2", "I1", "I3"],  # the last 3 purchases, oldest first (ties by event id)
        c.R_SCORE: 3,
        c.F_SCORE: 3,
        c.M_SCORE: 3,
        c.SEGMENT: "need_attention",
    }


def test_scores_and_segments_of_all(profiles):
    # recency B 1.0 < A 9.375 < E 20.0; frequency B 1 < A = E 2 (tie: lower score); monetary B 3 < A 23 < E 150
    assert profiles.select(c.RECENCY_DAYS, c.FREQUENCY, c.MONETARY, c.R_SCORE, c.F_SCORE, c.M_SCORE,
                           c.SEGMENT, c.COUNTRY, c.RETURNS).rows() == [
        (9.375, 2, 23.0, 3, 3, 3, "need_attention", "France", 1),
        (1.0, 1, 3.0, 5, 1, 1, "new", "Spain", 0),
        (20.0, 2, 150.0, 1, 3, 5, "at_risk", None, 0),
    ]
    assert profiles[c.INTERESTS].to_list()[1:] == ["BAG:1.00", "BAG:0.50,OTHER:0.50"]


def test_point_in_time(profiles):
    later = pl.concat([EVENTS, FUTURE])
    assert_frame_equal(_profiles(later), profiles)
    assert _profiles(later, as_of=_utc(2024, 4, 1))[c.CUSTOMER_ID].to_list() == [A, B, D, E]
    assert _profiles(later, as_of=_utc(2024, 1, 1, 11))[c.CUSTOMER_ID].to_list() == [A]
    assert _profiles(later, as_of=datetime(2024, 3, 1)).equals(profiles)  # naive = UTC


def test_default_as_of_is_just_after_the_last_event():
    assert default_as_of(EVENTS) == _utc(2024, 2, 29) + timedelta(microseconds=1)
    assert _profiles(as_of=default_as_of(EVENTS)).filter(pl.col(c.CUSTOMER_ID) == B)[c.RECENCY_DAYS].item() > 0


def test_returns_lower_monetary_and_can_make_it_negative():
    refund = _table(c.EVENTS, [_event("r9", B, "I4", "return", _utc(2024, 2, 29, 12), 10.0, "R9")])
    b = _profiles(pl.concat([EVENTS, refund])).filter(pl.col(c.CUSTOMER_ID) == B).row(0, named=True)
    assert (b[c.MONETARY], b[c.RETURNS], b[c.RETURN_RATE], b[c.AVG_BASKET_VALUE]) == (-7.0, 1, 0.5, 3.0)


def test_categories_from_titles():
    categories = dict(derive_categories(ITEMS, n_tokens=2).iter_rows())
    # last words: MUG, MUG (plural, colour skipped), BAG, LANTERN, BAG (SET, OF, 3 skipped); the 2 most common win
    assert categories == {"I1": "MUG", "I2": "MUG", "I3": "HOME", "I4": "BAG", "I5": OTHER, "I6": "BAG", "I7": OTHER}
    assert dict(derive_categories(ITEMS, n_tokens=3).iter_rows())["I5"] == "LANTERN"
    assert derive_categories(ITEMS, 2).equals(derive_categories(ITEMS.reverse(), 2))


def test_segment_grid_and_quintiles():
    assert set(SEGMENT_OF_RF) == {r * 10 + f for r in range(1, 6) for f in range(1, 6)}
    assert set(SEGMENT_OF_RF.values()) == set(c.SEGMENTS)
    assert [SEGMENT_OF_RF[k] for k in (55, 51, 41, 33, 15, 11, 21, 44)] == [
        "champions", "new", "promising", "need_attention", "cant_lose", "lost", "hibernating", "loyal"]
    # 100 customers with distinct values: 20 per score, and the best scores 5
    many = [f"{i:032d}" for i in range(100)]
    events = _table(c.EVENTS, [_event(f"m{i}", cid, "I1", "purchase", _utc(2024, 1, 1) + timedelta(hours=i), i + 1.0,
                                      f"S{i}") for i, cid in enumerate(many)])
    scored = build_profiles(events, CUSTOMERS, ITEMS, as_of=AS_OF, **SETTINGS)
    assert scored[c.M_SCORE].value_counts().sort(c.M_SCORE)["count"].to_list() == [20] * 5
    assert scored.sort(c.MONETARY)[c.M_SCORE][-1] == 5 and scored.sort(c.RECENCY_DAYS)[c.R_SCORE][0] == 5
    assert scored[c.F_SCORE].unique().to_list() == [1]  # all tied


def test_schema(profiles):
    PROFILE_SCHEMA.validate(profiles)
    assert profiles.schema[c.RECENT_ITEMS] == pl.List(pl.String)
    assert profiles.schema[c.AS_OF] == pl.Datetime("us", "UTC")
    assert list(profiles.columns) == list(PROFILE_SCHEMA.columns)
    with pytest.raises(Exception, match="segment"):
        PROFILE_SCHEMA.validate(profiles.with_columns(pl.lit("vip").alias(c.SEGMENT)))


def test_report_is_self_contained(profiles, tmp_path):
    path = tmp_path / "reports" / "profile.html"
    write_profile_report(profiles, path)
    page = path.read_text()
    assert page.count("<img") == 3 and "data:image/png;base64," in page
    assert "need_attention" in page and "src=\"http" not in page and "<link" not in page and "<script" not in page
    write_profile_report(profiles.clear(), tmp_path / "empty.html")  # no customers: still a page


def _write_inputs(root: Path, events: pl.DataFrame) -> Path:
    canonical = root / "canonical"
    canonical.mkdir(parents=True)
    for name, frame in ((c.EVENTS, events), (c.CUSTOMERS, CUSTOMERS), (c.ITEMS, ITEMS)):
        frame.write_parquet(canonical / f"{name}.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["canonical_dir"] = str(canonical)
    params["profile"].update(as_of="2024-03-01T00:00:00Z", out="out/profiles.parquet", report="out/profile.html",
                             **SETTINGS)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _stage(root: Path, params: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "pipelines.profile", "--params", str(params)]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_stage(tmp_path, profiles):
    params = _write_inputs(tmp_path, pl.concat([EVENTS, FUTURE]))
    done = _stage(tmp_path, params)
    assert done.returncode == 0, done.stderr
    assert "3 customers as of 2024-03-01" in done.stdout and "need_attention" in done.stdout
    assert_frame_equal(pl.read_parquet(tmp_path / "out" / "profiles.parquet"), profiles)
    assert "<img" in (tmp_path / "out" / "profile.html").read_text()


def test_stage_errors_are_one_line(tmp_path):
    params = _write_inputs(tmp_path, EVENTS)
    (tmp_path / "canonical" / "items.parquet").unlink()
    done = _stage(tmp_path, params)
    assert done.returncode == 2 and done.stderr.startswith("profile: ") and done.stderr.count("\n") == 1
    assert "items.parquet: cannot read" in done.stderr
    early = _write_inputs(tmp_path / "2", EVENTS)
    early.write_text(early.read_text().replace("2024-03-01T00:00:00Z", "2020-01-01T00:00:00Z"))
    done = _stage(tmp_path / "2", early)
    assert done.returncode == 2 and "nothing to profile" in done.stderr and done.stderr.count("\n") == 1


def test_cli_profile_show(profiles, tmp_path):
    path = tmp_path / "profiles.parquet"
    profiles.write_parquet(path)
    runner = CliRunner()
    assert runner.invoke(app, ["profile", "show", "--help"]).exit_code == 0
    shown = runner.invoke(app, ["profile", "show", A, "--profiles", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "need_attention" in shown.output and "MUG:0.75,HOME:0.25" in shown.output and "I2, I1, I3" in shown.output
    missing = runner.invoke(app, ["profile", "show", D, "--profiles", str(path)])
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"mapwise: {path}: no profile for customer '{D}' (tried as ")
    assert missing.stderr.count("\n") == 1  # also tried as a raw id where there is a key: tests/test_small_data_edges.py
