"""The malformed-input corpus: each case ends in a clear one-line error or in quarantined rows."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.sources.mapping.load import parse_mapping

from conftest import ORDERS_HEADER, ORDERS_ROWS, assert_balanced, orders_mapping, run, write

GOOD = ORDERS_ROWS[0]


def _csv(raw_dir, rows, header=ORDERS_HEADER, name="orders.csv", end="\n"):
    return write(raw_dir / name, "\n".join([header, *rows]) + end)


def _reasons(result, table=c.EVENTS):
    q = result.quarantine[table]
    return q.select(c.Q_LINE, c.Q_COLUMN, c.Q_REASON).rows()


def test_truncated_file_quarantines_the_cut_row(raw_dir):
    path = _csv(raw_dir, [GOOD, ORDERS_ROWS[1]])
    path.write_bytes(path.read_bytes() + b"A3,S1,Red m")  # cut mid-row, no final newline
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert result.tables[c.EVENTS].height == 2
    assert _reasons(result) == [(4, None, "expected 8 fields, found 3")]


def test_truncated_compressed_file_is_an_error(raw_dir):
    blob = gzip.compress(("\n".join([ORDERS_HEADER, *ORDERS_ROWS]) + "\n").encode())
    write(raw_dir / "orders.csv.gz", blob[: len(blob) // 2])
    with pytest.raises(MapwiseError, match=r"^/.*/raw/orders.csv.gz: cannot decompress as gzip \(truncated or corrupt"):
        run(raw_dir, orders_mapping())


def test_unterminated_quote_at_the_end(raw_dir):
    path = _csv(raw_dir, [GOOD])
    path.write_bytes(path.read_bytes() + b'A3,S1,"Red mug,1,3.5')
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [(3, None, "unterminated quoted field: a stray quote, or a file cut short")]


def test_wrong_delimiter_is_an_error_with_a_hint(raw_dir):
    _csv(raw_dir, [r.replace(",", ";") for r in ORDERS_ROWS], header=ORDERS_HEADER.replace(",", ";"))
    with pytest.raises(MapwiseError, match=r"^/.*/orders.csv: column\(s\) 'qty', 'price'.*is the delimiter ',' right\?\)$"):
        run(raw_dir, orders_mapping())


def test_latin1_bytes_in_utf8_source_are_quarantined_by_column(raw_dir):
    path = _csv(raw_dir, [GOOD])
    path.write_bytes(path.read_bytes() + "A2,S3,Caf\xe9 mug,1,2.0,2024-01-03 11:30:00,c2,FR\n".encode("latin-1"))
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [(3, "name", "invalid bytes for the encoding")]
    assert result.quarantine[c.EVENTS][c.Q_VALUE].to_list() == ["Caf\\xe9 mug"]
    assert result.tables[c.EVENTS].height == 1


def test_declared_latin1_source_is_decoded(raw_dir):
    path = raw_dir / "orders.csv"
    write(path, (ORDERS_HEADER + "\nA2,S3,Caf\xe9 mug,1,2.0,2024-01-03 11:30:00,c2,FR\n").encode("latin-1"))
    mapping = orders_mapping()
    mapping["read"]["encoding"] = "latin-1"
    result = run(raw_dir, mapping)
    assert result.tables[c.ITEMS][c.TITLE].to_list() == ["Café mug"]


def test_missing_required_column_is_an_error(raw_dir):
    _csv(raw_dir, [",".join(r.split(",")[:-1]) for r in ORDERS_ROWS], header=ORDERS_HEADER.rsplit(",", 1)[0])
    with pytest.raises(MapwiseError, match=r"^/.*/orders.csv: column\(s\) 'country' needed by mapping 'orders' not in"):
        run(raw_dir, orders_mapping())


def test_unparsable_dates_are_quarantined(raw_dir):
    _csv(raw_dir, [GOOD, "A2,S1,Red mug,1,3.5,2024-13-45 10:00:00,c2,FR", "A3,S1,Red mug,1,3.5,yesterday,c2,FR"])
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    reason = "cannot parse as a UTC time (format '%Y-%m-%d %H:%M:%S')"
    assert _reasons(result) == [(3, "when", reason), (4, "when", reason)]
    assert result.quarantine[c.EVENTS][c.Q_VALUE].to_list() == ["2024-13-45 10:00:00", "yesterday"]
    assert result.tables[c.CUSTOMERS].height == 2  # customers does not read the date


def test_negative_missing_and_text_quantities_are_quarantined(raw_dir):
    rows = [GOOD, "A2,S1,Red mug,-3,3.5,2024-01-02 10:00:00,c2,FR", "A3,S1,Red mug,,3.5,2024-01-02 10:00:00,c2,FR",
            "A4,S1,Red mug,two,3.5,2024-01-02 10:00:00,c2,FR"]
    _csv(raw_dir, rows)
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [
        (3, "quantity", "failed check greater_than(0)"),
        (4, "quantity", "missing value"),
        (5, "qty", "cannot parse as int"),
    ]


def test_duplicate_rows_keep_the_first(raw_dir):
    _csv(raw_dir, [GOOD, ORDERS_ROWS[1], GOOD])
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [(4, None, "duplicate row")]
    assert result.quarantine[c.EVENTS][c.Q_VALUE].to_list() == ["first at orders.csv:2"]
    assert result.tables[c.EVENTS].height == 2


def test_a_header_only_file_reads_no_rows(raw_dir):
    write(raw_dir / "orders.csv", ORDERS_HEADER + "\n")
    result = run(raw_dir, orders_mapping())
    assert result.report["sources"]["orders"]["rows_read"] == 0
    assert all(frame.height == 0 for frame in result.tables.values())


def test_extra_columns_are_ignored(raw_dir):
    _csv(raw_dir, [r + ",extra" for r in ORDERS_ROWS], header=ORDERS_HEADER + ",utm_campaign")
    result = run(raw_dir, orders_mapping())
    assert result.tables[c.EVENTS].height == 3


def test_extra_field_in_one_row_is_quarantined(raw_dir):
    _csv(raw_dir, [GOOD, ORDERS_ROWS[1] + ",surprise"])
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [(3, None, "expected 8 fields, found 9")]


def test_one_ten_megabyte_line(raw_dir):
    huge = "x" * (10 * 1024 * 1024)
    _csv(raw_dir, [GOOD, f"A2,S9,{huge},1,1.0,2024-01-02 10:00:00,c2,FR"])
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result, c.ITEMS) == [(3, "title", "failed check str_length(1, 2048)")]
    assert result.quarantine[c.ITEMS][c.Q_VALUE][0] == "x" * 80 + "... (10485760 chars)"
    assert result.tables[c.EVENTS].height == 2  # events do not read the title


def test_blank_lines_and_crlf_keep_line_numbers(raw_dir):
    write(raw_dir / "orders.csv", "\r\n".join([ORDERS_HEADER, GOOD, "", "A2,S1,Red mug,-1,3.5,2024-01-02 10:00:00,c2,FR"]))
    result = run(raw_dir, orders_mapping())
    assert_balanced(result)
    assert _reasons(result) == [(4, "quantity", "failed check greater_than(0)")]


def test_quoted_fields_with_delimiters_and_newlines(raw_dir):
    _csv(raw_dir, ['A1,S1,"Mug, red",1,3.5,2024-01-02 10:00:00,c1,UK', 'A2,S2,"Two\nlines",1,1.0,2024-01-02 10:00:00,c2,UK',
                   "A3,S3,Cup,-1,1.0,2024-01-02 10:00:00,c2,UK"])
    result = run(raw_dir, orders_mapping())
    assert result.tables[c.ITEMS][c.TITLE].to_list() == ["Mug, red", "Two\nlines", "Cup"]
    assert _reasons(result) == [(5, "quantity", "failed check greater_than(0)")]


def test_unmapped_value_is_quarantined(raw_dir):
    _csv(raw_dir, ORDERS_ROWS)
    mapping = orders_mapping(value_maps={"country": {"UK": "United Kingdom"}})
    result = run(raw_dir, mapping)
    assert _reasons(result, c.CUSTOMERS) == [(4, "country", "unmapped value")]


def test_filtered_rows_are_quarantined_with_the_filter(raw_dir):
    _csv(raw_dir, ORDERS_ROWS)
    mapping = orders_mapping()
    mapping["tables"]["events"]["filter"] = "sku != 'S2'"
    result = run(raw_dir, mapping)
    assert_balanced(result)
    assert _reasons(result) == [(3, None, "excluded by filter: sku != 'S2'")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(tables={"events": {"columns": {}, "filters": "x"}}), r"tables.events.filters: unknown key"),
        (lambda m: m["tables"]["events"]["columns"].update(colour="name"), r"unknown column 'colour'"),
    ],
    ids=["unknown-key", "unknown-target-column"],
)
def test_bad_mapping_is_an_error(change, message):
    mapping = orders_mapping()
    change(mapping)
    with pytest.raises(MapwiseError, match=message):
        parse_mapping(mapping, "orders.yaml")


def test_expression_of_the_wrong_type_is_an_error(raw_dir):
    _csv(raw_dir, ORDERS_ROWS)
    mapping = orders_mapping()
    mapping["tables"]["events"]["columns"]["quantity"] = "abs(name)"
    with pytest.raises(MapwiseError, match=r"^orders.yaml: tables.events.columns.quantity: 'abs\(name\)' cannot be evaluated"):
        run(raw_dir, mapping)


def test_no_matching_file_is_an_error(raw_dir):
    raw_dir.mkdir()
    with pytest.raises(MapwiseError, match=r"source 'orders': no file under .* matches orders\*.csv\*"):
        run(raw_dir, orders_mapping())


def test_whitespace_and_jsonl_formats(raw_dir):
    write(raw_dir / "ws" / "orders.txt", "order sku name qty price when client country\n"
          "A1 S1 mug 2 3.5 1704189600 c1 UK\nA2 S2 cup\n")
    mapping = orders_mapping(read={"pattern": "ws/*.txt", "format": "whitespace"},
                             timestamps={"when": {"epoch": "s"}})
    result = run(raw_dir, mapping)
    assert _reasons(result) == [(3, None, "expected 8 fields, found 3")]
    assert result.tables[c.EVENTS][c.TIMESTAMP][0].isoformat() == "2024-01-02T10:00:00+00:00"
    write(raw_dir / "js" / "orders.jsonl", '{"order": "A1", "sku": "S1", "name": "mug", "qty": 2, "price": 3.5, '
          '"when": 1704189600, "client": 17, "country": "UK"}\n{"order": \n[1]\n')
    mapping = orders_mapping(name="orders_json", read={"pattern": "js/*.jsonl", "format": "jsonl"},
                             timestamps={"when": {"epoch": "s"}})
    result = run(raw_dir, mapping)
    assert_balanced(result)
    assert [r[2] for r in _reasons(result)] == ["invalid JSON: Expecting value", "a JSON lines record must be an object"]
    assert result.tables[c.EVENTS][c.QUANTITY].to_list() == [2]


def test_parquet_source_keeps_its_types(raw_dir):
    frame = pl.DataFrame({"order": ["A1"], "sku": ["S1"], "name": ["mug"], "qty": [2], "price": [3.5],
                          "when": ["2024-01-02 10:00:00"], "client": [5], "country": ["UK"]})
    raw_dir.mkdir()
    frame.write_parquet(raw_dir / "orders.parquet")
    result = run(raw_dir, orders_mapping(read={"pattern": "*.parquet", "format": "parquet"}))
    assert result.tables[c.EVENTS][c.VALUE].to_list() == [7.0]


def test_a_value_map_mixing_types_is_refused_at_check():
    with pytest.raises(MapwiseError, match=r"value_maps: country: values of one map must share a type .* found number, str"):
        parse_mapping(orders_mapping(value_maps={"country": {"UK": 1, "FR": "France"}}), "orders.yaml")
