import gzip
import json
import sqlite3
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from mapwise.errors import MapwiseError
from mapwise.params import ConsentParams
from mapwise.privacy import scan as scan_module
from mapwise.privacy.consent import consent_status, withhold
from mapwise.privacy.kanon import enforce_k_anonymity, k_anonymity, with_quasi_identifiers
from mapwise.privacy.scan import Finding, scan

CUSTOMERS = pl.DataFrame(
    {
        "customer_id": ["a", "b", "c", "d", "e"],
        "consent_email": [True, False, None, True, True],
        "consent_sms": [True, True, True, None, False],
    }
)


# consent


def test_consent_status_one_flag_unknown_allowed():
    out = consent_status(CUSTOMERS, ConsentParams(require=["consent_email"], unknown="allow"))
    assert out.columns == ["customer_id", "contactable", "reason"]
    assert out.rows() == [
        ("a", True, None),
        ("b", False, "no consent_email"),
        ("c", True, "consent_email unknown"),
        ("d", True, None),
        ("e", True, None),
    ]


def test_consent_status_two_flags_unknown_denied_refusal_named_first():
    out = consent_status(CUSTOMERS, ConsentParams(require=["consent_email", "consent_sms"], unknown="deny"))
    assert out.rows() == [
        ("a", True, None),
        ("b", False, "no consent_email"),
        ("c", False, "consent_email unknown"),
        ("d", False, "consent_sms unknown"),
        ("e", False, "no consent_sms"),
    ]


def test_consent_flag_no_source_maps_is_unknown():
    customers = CUSTOMERS.select("customer_id", "consent_email")
    out = consent_status(customers, ConsentParams(require=["consent_email", "consent_phone"], unknown="deny"))
    assert out["reason"].to_list() == [
        "consent_phone unknown", "no consent_email", "consent_email unknown", "consent_phone unknown",
        "consent_phone unknown",
    ]
    assert not out["contactable"].any()


FRAME = pl.DataFrame({"customer_id": ["a", "a", "b", "c", "x", None, "d"], "score": [1, 2, 3, 4, 5, 6, 7]})


def test_withhold_unknown_allowed_counts_absent_as_unknown():
    kept, report = withhold(FRAME, CUSTOMERS, ConsentParams(require=["consent_email"], unknown="allow"))
    assert kept.rows() == [("a", 1), ("a", 2), ("c", 4), ("x", 5), (None, 6), ("d", 7)]
    assert report == {
        "require": ["consent_email"],
        "unknown": "allow",
        "rows": 7,
        "customers": 5,
        "kept": {"rows": 6, "customers": 4},
        "withheld": {"no consent_email": {"rows": 1, "customers": 1}},
        "allowed_unknown": {"rows": 3, "customers": 2},
    }


def test_withhold_unknown_denied_several_flags():
    kept, report = withhold(FRAME, CUSTOMERS, ConsentParams(require=["consent_sms", "consent_email"], unknown="deny"))
    assert kept.rows() == [("a", 1), ("a", 2)]
    assert report["kept"] == {"rows": 2, "customers": 1}
    assert report["withheld"] == {
        "consent_email unknown": {"rows": 1, "customers": 1},
        "consent_sms unknown": {"rows": 3, "customers": 2},  # d, x (absent) and the null id
        "no consent_email": {"rows": 1, "customers": 1},
    }
    assert report["allowed_unknown"] == {"rows": 0, "customers": 0}
    assert list(report["withheld"]) == sorted(report["withheld"])


def test_withhold_keeps_frame_columns_even_when_named_like_the_status():
    frame = pl.DataFrame({"reason": ["r1", "r2"], "customer_id": ["b", "a"]})
    kept, _ = withhold(frame, CUSTOMERS, ConsentParams())
    assert kept.columns == ["reason", "customer_id"] and kept.rows() == [("r2", "a")]


# k-anonymity

PEOPLE = pl.DataFrame(
    {
        "customer_id": [f"p{i}" for i in range(8)],
        "country": ["UK", "UK", "UK", "FR", "FR", None, None, "DE"],
        "gender": ["f", "f", "f", "m", "m", "f", "f", "m"],
    }
)


def test_k_anonymity_report():
    report = k_anonymity(PEOPLE, ["country", "age_band", "gender"], 3)
    assert report == {
        "k": 3,
        "quasi_identifiers": ["country", "gender"],
        "skipped": ["age_band"],
        "checked": True,
        "rows": 8,
        "groups": 4,
        "smallest_group": 1,
        "groups_below_k": 3,
        "rows_below_k": 5,
        "smallest": [
            {"country": "DE", "gender": "m", "rows": 1},
            {"country": "FR", "gender": "m", "rows": 2},
            {"country": None, "gender": "f", "rows": 2},
            {"country": "UK", "gender": "f", "rows": 3},
        ],
    }


def test_refuse_names_k_groups_smallest_and_remedies():
    with pytest.raises(MapwiseError) as err:
        enforce_k_anonymity(PEOPLE, ["country", "gender"], 3, "refuse", "audience export")
    assert str(err.value) == (
        "audience export refused: 5 rows in 3 groups share their quasi-identifiers (country, gender) with fewer "
        "than k=3 rows (smallest: country=DE, gender=m, 1 rows); drop or coarsen a quasi-identifier, "
        "or set privacy.k_anonymity.on_fail: suppress"
    )
    assert "\n" not in str(err.value)


def test_suppress_drops_small_groups_nulls_being_a_group():
    kept, report = enforce_k_anonymity(PEOPLE, ["country", "gender"], 2, "suppress", "x")
    assert kept["customer_id"].to_list() == ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]
    assert report["suppressed_rows"] == 1 and report["groups_below_k"] == 1


def test_passes_when_k_met_or_no_quasi_identifier():
    kept, report = enforce_k_anonymity(PEOPLE, ["gender"], 3, "refuse", "x")
    assert kept.equals(PEOPLE) and report["suppressed_rows"] == 0 and report["groups_below_k"] == 0
    kept, report = enforce_k_anonymity(PEOPLE, ["age_band"], 3, "refuse", "x")
    assert kept.equals(PEOPLE)
    assert report["checked"] is False and report["note"] == "no quasi-identifier present"
    assert report["skipped"] == ["age_band"]


def test_with_quasi_identifiers_joins_from_first_source_holding_each():
    frame = pl.DataFrame({"customer_id": ["a", "b", "z", "a"], "score": [1, 2, 3, 4]})
    customers = pl.DataFrame({"customer_id": ["a", "b"], "country": ["UK", None]})
    at = lambda d: datetime(2024, 1, d, tzinfo=timezone.utc)  # noqa: E731
    traits = pl.DataFrame(
        {
            "customer_id": ["a", "a", "b", "a"],
            "observed_at": [at(3), at(1), None, at(2)],
            "country": ["XX", "XX", "XX", "XX"],
            "tier": ["gold", "bronze", "silver", None],
        }
    )
    out = with_quasi_identifiers(frame, [customers, traits], ["country", "tier", "age_band", "score"])
    assert out.rows() == [
        ("a", 1, "UK", "gold"), ("b", 2, None, "silver"), ("z", 3, None, None), ("a", 4, "UK", "gold"),
    ]
    assert with_quasi_identifiers(pl.DataFrame({"x": [1]}), [customers], ["country"]).columns == ["x"]


# scan

RAW = "cust-0042"
EMAIL = "jo@example.com"


def _artifacts(root: Path) -> Path:
    root.mkdir()
    (root / "cache" / "ab").mkdir(parents=True)
    pl.DataFrame({"customer_id": ["h1", "h2"], "recent": [["i1"], ["i2", RAW]], "n": [1, 2]}).write_parquet(
        root / "cache" / "ab" / "cdef0123")  # a DVC cache object: no extension
    pl.DataFrame({"email": ["x"]}).write_parquet(root / "meta.parquet", metadata={"source_ids": f"[{RAW!r}]"})
    db = sqlite3.connect(root / "mlflow.db")
    db.execute("CREATE TABLE params (key TEXT, value TEXT, step INTEGER, data BLOB)")
    db.execute("INSERT INTO params VALUES ('seed', '7', 1, NULL), ('holdout', ?, 2, NULL)", (f"{RAW},c9",))
    db.commit()
    db.close()
    with gzip.open(root / "report.json.gz", "wt") as out:
        json.dump({"rows": 3, "contact": {"email": EMAIL}}, out)
    # protobuf: a string is its length then its bytes, and the next field's tag may be a letter ("r")
    (root / "model.onnx").write_bytes(b"\x08\x07\x12\x04onnx\x3a\x09" + RAW.encode() + b"r\x1a\x00\xff\xfe" * 50)
    (root / "decoy.bin").write_bytes(b"\x0a" + b"x" + RAW.encode() + b"r\x00\x0a" + RAW.encode() + b"7\x00")
    (root / "decoy.log").write_text(f"id x{RAW} and {RAW}7 and {RAW}a; email_count: 3; 'email' is a word\n")
    (root / "clean.json").write_text(json.dumps({"customer_id": "3f2a" * 8, "emails_sent": 4}))
    return root


def test_scan_finds_exactly_the_planted_ids(tmp_path):
    root = _artifacts(tmp_path / "artifacts")
    found = scan([root], [RAW, EMAIL, "never-there"], pii_columns=["email", "phone"])
    assert found == [
        Finding(root / "cache" / "ab" / "cdef0123", "column recent", RAW),
        Finding(root / "meta.parquet", "column name", "email"),
        Finding(root / "meta.parquet", "metadata", RAW),
        Finding(root / "mlflow.db", "table params", RAW),
        Finding(root / "model.onnx", "bytes", RAW),
        Finding(root / "report.json.gz", "gzip", EMAIL),
        Finding(root / "report.json.gz", "gzip, json key", "email"),
    ]


def test_scan_zip_members_and_single_file(tmp_path):
    path = tmp_path / "model.ckpt"  # torch checkpoints are zip files
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02X\x09\x00\x00\x00" + RAW.encode() + b"q\x00.")
        archive.writestr(f"archive/{RAW}.txt", b"nothing")
    assert scan([path], [RAW]) == [
        Finding(path, "zip archive/data.pkl", RAW),
        Finding(path, "zip member names", RAW),
    ]


def test_scan_chunks_never_cut_or_invent_a_match(tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module, "_CHUNK", 1)  # chunks of 4 x overlap: 300 bytes, the next from byte 225
    filler = "0123456789 " * 60
    start, middle, end, left, right = (tmp_path / name for name in ("start", "middle", "end", "left", "right"))
    start.write_text(RAW + " " + filler)
    for offset in range(200, 320):  # the needle crosses, starts or ends at every chunk edge
        middle.write_text(filler[:offset] + " " + RAW + " " + filler)
        end.write_text(filler[:offset] + " " + RAW)
        left.write_text(filler[:offset] + "x" + RAW + " " + filler)
        right.write_text(filler[:offset] + " " + RAW + "9" + filler)
        found = scan([start, middle, end, left, right], [RAW])
        assert found == [Finding(p, "bytes", RAW) for p in (end, middle, start)], offset


def test_scan_whole_tokens_and_refusals(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("c1234 c12345 abc1234 c1234_x")
    assert scan([path], ["c12345", "b1234"]) == [Finding(path, "bytes", "c12345")]
    path.write_text("abc1234 c12345 xc1234")
    assert scan([path], ["c1234"]) == []
    with pytest.raises(ValueError, match=r"1 needle\(s\) shorter than 4"):
        scan([path], ["c12"])
    with pytest.raises(MapwiseError, match=r"missing: no such file or folder"):
        scan([tmp_path / "missing"], [RAW])


def test_scan_corrupt_parquet_falls_back_to_bytes(tmp_path):
    path = tmp_path / "broken"
    path.write_bytes(b"PAR1 not really " + RAW.encode() + b" parquet")
    assert scan([path], [RAW]) == [Finding(path, "bytes", RAW)]
