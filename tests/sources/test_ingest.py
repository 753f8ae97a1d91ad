"""Ingest end to end on real files in a temp dir."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.sources.ingest import Limits
from mapwise.sources.mapping.load import load_mapping
from mapwise.privacy.pseudonym import pseudonym

from conftest import KEY, ORDERS_HEADER, ORDERS_ROWS, REPO, assert_balanced, dump_mapping, orders_mapping, run, write


def _orders(raw_dir: Path, rows=ORDERS_ROWS, name="orders.csv") -> Path:
    return write(raw_dir / name, "\n".join([ORDERS_HEADER, *rows]) + "\n")


def test_orders_become_canonical_tables(raw_dir):
    _orders(raw_dir)
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    events = result.tables[c.EVENTS]
    assert events.height == 3
    assert events[c.VALUE].to_list() == [7.0, 4.0, 3.5]
    assert events[c.TIMESTAMP][2].isoformat() == "2024-01-03T11:30:00+00:00"
    assert events[c.CUSTOMER_ID].to_list() == [pseudonym(x, KEY) for x in ("c1", "c1", "c2")]
    assert events[c.EVENT_ID].n_unique() == 3
    assert events[c.SOURCE].unique().to_list() == ["orders"]
    items = result.tables[c.ITEMS]
    assert items.select(c.ITEM_ID, c.TITLE).rows() == [("S1", "Red mug"), ("S2", "Blue cup")]
    customers = result.tables[c.CUSTOMERS]
    assert sorted(customers[c.COUNTRY].to_list()) == ["FR", "UK"]
    assert result.quarantine[c.EVENTS].height == 0


def test_unseen_source_needs_only_a_yaml_file(tmp_path):
    """A CRM export never seen before: ';' delimited, day-first dates, other names, epoch times."""
    raw_dir = tmp_path / "drop"
    write(
        raw_dir / "crm" / "export-2024-03.txt.gz",
        gzip.compress(
            "Kunde;Artikel;Aktion;Menge;Betrag;Datum\n"
            "k-1;A-9;Kauf;2;19,90;05/03/2024 14.05\n"
            "k-2;A-7;Ansicht;1;;06/03/2024 09.00\n"
            "k-1;A-9;Retoure;1;9,95;07/03/2024 18.30\n".encode()
        ),
    )
    mapping_file = dump_mapping(
        tmp_path / "mappings" / "crm_export.yaml",
        {
            "name": "crm_export",
            "read": {"pattern": "crm/export-*.txt.gz", "delimiter": ";", "compression": "gzip"},
            "rename": {"Kunde": "customer", "Artikel": "article", "Menge": "units"},
            "value_maps": {"Aktion": {"Kauf": "purchase", "Ansicht": "view", "Retoure": "return"}},
            "casts": {"units": "int"},
            "timestamps": {"Datum": {"format": "%d/%m/%Y %H.%M", "timezone": "Europe/Berlin"}},
            "identity": "customer",
            "derive": {"amount": "float(replace(Betrag, ',', '.'))"},
            "tables": {
                "events": {
                    "columns": {
                        "item_id": "article",
                        "event_type": "Aktion",
                        "timestamp": "Datum",
                        "quantity": "units",
                        "value": "amount",
                        "channel": "'crm'",
                    }
                }
            },
        },
    )
    from mapwise.sources.ingest import ingest

    result = ingest(raw_dir, [load_mapping(mapping_file)], KEY, Limits.of())
    assert_balanced(result)
    events = result.tables[c.EVENTS]
    assert events[c.EVENT_TYPE].to_list() == ["purchase", "view", "return"]
    assert events[c.VALUE].to_list() == [19.9, None, 9.95]
    assert [t.isoformat() for t in events[c.TIMESTAMP]] == [
        "2024-03-05T13:05:00+00:00",
        "2024-03-06T08:00:00+00:00",
        "2024-03-07T17:30:00+00:00",
    ]
    assert events[c.CUSTOMER_ID].to_list() == [pseudonym(x, KEY) for x in ("k-1", "k-2", "k-1")]


def test_rerun_gives_identical_files(raw_dir, tmp_path):
    _orders(raw_dir, [*ORDERS_ROWS, "A3,S3,Bad,x,1.0,2024-01-04 00:00:00,c3,DE"])
    digests = []
    for attempt in range(2):
        result = run(raw_dir, orders_mapping())
        out = tmp_path / f"out{attempt}"
        out.mkdir()
        for name, frame in [*result.tables.items(), *((f"q_{k}", v) for k, v in result.quarantine.items())]:
            frame.write_parquet(out / f"{name}.parquet")
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 12  # six canonical tables and their quarantines


def test_same_content_is_not_counted_twice(raw_dir):
    _orders(raw_dir)
    _orders(raw_dir, name="orders-copy.csv")
    result = run(raw_dir, orders_mapping())
    files = result.report["sources"]["orders"]["files"]
    assert [(f["path"], f["status"]) for f in files] == [
        ("orders-copy.csv", "ingested"),
        ("orders.csv", "skipped: same content as orders-copy.csv"),
    ]
    assert result.report["sources"]["orders"]["rows_read"] == 3
    assert result.tables[c.EVENTS].height == 3


def test_several_files_of_one_source_are_all_read(raw_dir):
    _orders(raw_dir, ORDERS_ROWS[:2], name="orders-1.csv")
    _orders(raw_dir, ORDERS_ROWS[2:], name="orders-2.csv")
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert result.tables[c.EVENTS].height == 3
    assert result.tables[c.EVENTS][c.EVENT_ID].n_unique() == 3


def test_no_raw_id_leaves_ingest(raw_dir):
    rows = [*ORDERS_ROWS, "A9,S1,Red mug,-1,3.5,2024-01-05 10:00:00,secret-client-77,UK"]
    _orders(raw_dir, rows)
    result = run(raw_dir, orders_mapping())
    assert result.quarantine[c.EVENTS].height == 1
    dumped = " ".join(
        str(frame.rows()) for frame in [*result.tables.values(), *result.quarantine.values()]
    ) + str(result.report)
    for raw_id in ("c1", "c2", "secret-client-77"):
        assert f"'{raw_id}'" not in dumped
    assert "secret-client" not in dumped


def test_dimension_rows_merge_latest_non_null(raw_dir):
    rows = [
        "A1,S1,Red mug,1,3.5,2024-01-02 10:00:00,c1,UK",
        "A2,S1,,1,3.9,2024-01-03 10:00:00,c1,",
    ]
    _orders(raw_dir, rows)
    result = run(raw_dir, orders_mapping())
    items = result.tables[c.ITEMS]
    assert items.select(c.TITLE, c.PRICE).rows() == [("Red mug", 3.9)]
    assert result.tables[c.CUSTOMERS][c.COUNTRY].to_list() == ["UK"]


def test_demo_data_ingests_with_expected_counts():
    """The committed demo data, through the shipped mappings (the figures `make demo` prints)."""
    from mapwise.sources.ingest import ingest
    from mapwise.params import load_params

    params = load_params(REPO / "params.yaml").ingest
    mappings = [load_mapping(REPO / params.mappings_dir / f"{s}.yaml") for s in params.sources]
    result = ingest(REPO / params.raw_dir, mappings, KEY, Limits.of())
    assert_balanced(result)
    sources = result.report["sources"]
    assert sources["online_retail"]["rows_read"] == 541_909
    assert sources["hillstrom"]["rows_read"] == 64_000
    assert sources["bank_marketing"]["rows_read"] == 45_211
    assert sources["online_shoppers"]["rows_read"] == 12_330
    retail = sources["online_retail"]["tables"]
    assert retail["customers"]["reasons"] == {"customer_id: missing value": 135_080}
    assert result.tables[c.CUSTOMERS].height == 4_372 + 64_000 + 45_211
    assert {t: v["rows"] for t, v in result.report["tables"].items()} == {
        name: frame.height for name, frame in result.tables.items()
    }
    exposures = result.tables[c.CAMPAIGN_EXPOSURES]
    visit_rate = exposures.filter(pl.col(c.SOURCE) == "hillstrom").group_by(c.ARM).agg(pl.col(c.VISIT).mean())
    rates = dict(visit_rate.rows())
    assert round(rates["control"], 4) == 0.1062 and round(rates["mens_email"], 4) == 0.1828
    returns = result.tables[c.EVENTS].filter(pl.col(c.EVENT_TYPE) == "return")
    assert returns.height > 0 and returns[c.QUANTITY].min() > 0
    assert result.tables[c.SESSIONS][c.PURCHASED].sum() > 1_800


def test_identity_columns_are_overwritten_before_any_other_use(raw_dir):
    _orders(raw_dir)
    mapping = orders_mapping(derive={"copy": "concat('id-', client)"})
    mapping["tables"]["events"]["columns"]["session_id"] = "copy"
    result = run(raw_dir, mapping)
    sessions = result.tables[c.EVENTS][c.SESSION_ID].to_list()
    assert sessions == [f"id-{pseudonym(x, KEY)}" for x in ("c1", "c1", "c2")]


def test_ids_repeated_across_sources_are_an_error(raw_dir):
    import pytest

    from mapwise.errors import MapwiseError

    write(raw_dir / "a.csv", "sid,pages\ns-1,3\ns-2,4\n")
    write(raw_dir / "b.csv", "sid,pages\ns-2,5\n")

    def sessions(name: str, pattern: str) -> dict:
        return {"name": name, "read": {"pattern": pattern}, "casts": {"pages": "int"},
                "tables": {"sessions": {"columns": {"session_id": "sid", "product_pages": "pages"}}}}

    with pytest.raises(MapwiseError, match=r"sessions: id 's-2' comes from more than one of web_a, web_b"):
        run(raw_dir, sessions("web_a", "a.csv"), sessions("web_b", "b.csv"))
    write(raw_dir / "b.csv", "sid,pages\ns-3,5\ns-3,6\n")
    result = run(raw_dir, sessions("web_a", "a.csv"), sessions("web_b", "b.csv"))
    assert result.tables[c.SESSIONS][c.SESSION_ID].to_list() == ["s-1", "s-2", "s-3"]
    q = result.quarantine[c.SESSIONS]
    assert q.select(c.Q_LINE, c.Q_COLUMN, c.Q_REASON, c.Q_VALUE).rows() == [(3, "session_id", "duplicate id", "first at b.csv:2")]
