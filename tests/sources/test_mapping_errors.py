"""Newcomer mistakes in mappings and params (issue 15): each fails with a clear message naming the file, the
key or column and the fix, never a polars or PyYAML traceback; and `mapping preview` counts what ingest counts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mapwise import columns as c
from mapwise.cli import app
from mapwise.errors import MapwiseError
from mapwise.params import load_params
from mapwise.sources.ingest import Limits, ingest
from mapwise.sources.mapping.load import load_mapping

from conftest import KEY, ORDERS_HEADER, REPO, dump_mapping, orders_mapping, write

runner = CliRunner()


def _check(path: Path):
    return runner.invoke(app, ["mapping", "check", str(path)])


def _fails_in_one_line(result) -> str:
    """The error line `mapwise: ...` of a failed command (exit 1, one line, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.rstrip("\n")


# 1. A column the contract types, mapped from text without its parse


def test_a_timestamp_without_a_timestamps_entry_names_file_column_and_fix(tmp_path):
    mapping = orders_mapping()
    del mapping["timestamps"]
    path = dump_mapping(tmp_path / "orders.yaml", mapping)
    line = _fails_in_one_line(_check(path))
    assert line == (
        f"mapwise: {path}: tables.events.columns.timestamp: column 'when' is text, but the contract needs a date and "
        f"time (UTC): declare how to parse it under timestamps:, e.g. timestamps: {{when: {{format: "
        f"\"%Y-%m-%d %H:%M:%S\", timezone: UTC}}}} (strftime codes; or {{epoch: s}} for epoch seconds)"
    )
    assert "casting" not in line and "not supported" not in line  # polars' words are gone
    data = write(tmp_path / "orders.csv", f"{ORDERS_HEADER}\nA1,S1,Mug,2,3.5,2024-01-02 10:00:00,c1,UK\n")
    preview = runner.invoke(app, ["mapping", "preview", str(path), str(data), "--params", str(tmp_path / "none.yaml")])
    assert _fails_in_one_line(preview) == line, "preview fails the same way, before reading the data"


@pytest.mark.parametrize(("column", "expression", "fix"), [
    ("signup_date", "joined", "column 'joined' is text, but the contract needs a date: add casts: {joined: date}"),
    ("consent_email", "opt_in", "column 'opt_in' is text, but the contract needs true/false: add casts: {opt_in: bool}"),
    ("age", "when", "column 'when' gives dates and times (Datetime(time_unit='us', time_zone='UTC')), but the "
                    "contract needs a number"),
])
def test_other_text_columns_the_contract_types_name_the_column_and_the_cast(tmp_path, column, expression, fix):
    mapping = orders_mapping()
    mapping["tables"]["customers"]["columns"][column] = expression
    path = dump_mapping(tmp_path / "orders.yaml", mapping)
    line = _fails_in_one_line(_check(path))
    assert line.startswith(f"mapwise: {path}: tables.customers.columns.{column}: {fix}"), line


def test_a_text_column_used_as_a_number_in_an_expression_names_the_cast(tmp_path):
    path = dump_mapping(tmp_path / "orders.yaml", orders_mapping(casts={"price": "float"}))
    line = _fails_in_one_line(_check(path))
    assert line.startswith(f"mapwise: {path}: tables.events.columns.value: 'qty * price' cannot be evaluated: ")
    assert line.endswith("(qty is read as text: cast first, e.g. casts: {qty: float} (int, bool, date), "
                         "or parse under timestamps:)")


def test_a_number_that_is_not_one_is_quarantined_naming_its_column(tmp_path):
    mapping = orders_mapping(casts={})  # quantity and value read the text as it is: the contract's cast is lenient
    mapping["tables"]["events"]["columns"].update(quantity="qty", value="price")
    raw = tmp_path / "raw"
    write(raw / "orders.csv", f"{ORDERS_HEADER}\nA1,S1,Mug,two,3.5,2024-01-02 10:00:00,c1,UK\n"
                              "A2,S1,Mug,2,3.5,2024-01-02 10:00:00,c1,UK\n")
    path = dump_mapping(tmp_path / "orders.yaml", mapping)
    result = ingest(raw, [load_mapping(path)], KEY, Limits.of())
    assert result.report["sources"]["orders"]["tables"]["events"]["reasons"] == {"quantity: cannot convert to Int32": 1}


def test_parquet_types_are_checked_when_the_file_is_read(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    row = {"order": ["A1"], "sku": ["S1"], "name": ["Mug"], "qty": [2], "price": [3.5], "client": ["c1"], "country": ["UK"]}
    mapping = orders_mapping(read={"pattern": "orders*.parquet", "format": "parquet"})
    pl.DataFrame({**row, "when": ["2024-01-02 10:00:00"]}).write_parquet(raw / "orders.parquet")
    no_parse = {k: v for k, v in mapping.items() if k != "timestamps"}
    with pytest.raises(MapwiseError) as err:
        ingest(raw, [load_mapping(dump_mapping(tmp_path / "orders.yaml", no_parse))], KEY, Limits.of())
    assert str(err.value).startswith(f"{raw / 'orders.parquet'}: mapping 'orders': tables.events.columns.timestamp: "
                                     f"column 'when' is text, but the contract needs a date and time (UTC): declare "
                                     f"how to parse it under timestamps:")
    pl.DataFrame({**row, "when": [1704189600]}).write_parquet(raw / "orders.parquet")
    with pytest.raises(MapwiseError) as err:  # epoch numbers given a strftime format
        ingest(raw, [load_mapping(dump_mapping(tmp_path / "orders.yaml", mapping))], KEY, Limits.of())
    assert str(err.value) == (f"{raw / 'orders.parquet'}: mapping 'orders': timestamps.when: the column holds Int64 "
                              f"values, not text, so format '%Y-%m-%d %H:%M:%S' cannot apply; for epoch numbers use "
                              f"{{epoch: s}} (s, ms, us or ns)")
    epoch = {**mapping, "timestamps": {"when": {"epoch": "s"}}}
    done = ingest(raw, [load_mapping(dump_mapping(tmp_path / "orders.yaml", epoch))], KEY, Limits.of())
    assert done.tables[c.EVENTS][c.TIMESTAMP].dt.to_string("%Y-%m-%d %H:%M").to_list() == ["2024-01-02 10:00"]


# 2. Invalid YAML: the parser's reason, line and column


def test_invalid_mapping_yaml_gives_the_parsers_reason_line_and_column(tmp_path):
    path = write(tmp_path / "orders.yaml", "name: orders\ndescription: Note: exports from the shop\nread: {pattern: x}\n")
    line = _fails_in_one_line(_check(path))
    assert line == (f"mapwise: {path}: invalid YAML at line 2, column 18: mapping values are not allowed here; "
                    "a ': ' inside an unquoted value? quote the whole value, e.g. description: \"Note: ...\"")


def test_invalid_yaml_context_is_told_and_values_are_not_echoed(tmp_path):
    path = write(tmp_path / "orders.yaml", "name: orders\nrename: {Kunde: customer_secret_17850\nread: {pattern: x}\n")
    line = _fails_in_one_line(_check(path))
    assert line == (f"mapwise: {path}: invalid YAML at line 3, column 5: expected ',' or '}}', but got ':' "
                    "(while parsing a flow mapping that starts at line 2, column 9)")
    tabs = write(tmp_path / "tabs.yaml", "name: tabs\nread:\n\tpattern: x\n")
    assert _fails_in_one_line(_check(tabs)).endswith(
        "invalid YAML at line 3, column 1: found character '\\t' that cannot start any token (while scanning for the "
        "next token); indent with spaces: YAML does not allow tabs there")


def test_invalid_params_yaml_gives_the_parsers_reason(tmp_path):
    path = write(tmp_path / "params.yaml", "ingest:\n  raw_dir: data/demo\n  description: Note: 17850 is ours\n")
    line = _fails_in_one_line(runner.invoke(app, ["params", "check", str(path)]))
    assert line.startswith(f"mapwise: {path}: invalid YAML at line 3, column 20: mapping values are not allowed here; ")
    assert "17850" not in line
    with pytest.raises(MapwiseError, match=r"invalid YAML at line 3, column 20: mapping values are not allowed here"):
        load_params(path)


# 3. Every validation problem, one per line, with "did you mean"


def test_every_mapping_problem_is_listed_with_did_you_mean(tmp_path):
    mapping = orders_mapping()
    mapping["read"]["fromat"] = "csv"
    mapping["timestamps"]["when"]["timezon"] = "UTC"
    mapping["casts"]["qty"] = "integer"
    mapping["tables"]["events"]["filtr"] = "qty > 0"
    mapping["tables"]["events"]["duplicate"] = "keep"
    mapping["colour"] = "blue"
    path = dump_mapping(tmp_path / "orders.yaml", mapping)
    result = _check(path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"mapwise: {path}: 6 problems:",
        "  - read.fromat: unknown key (did you mean 'format'?)",
        "  - casts.qty: Input should be 'str', 'int', 'float', 'bool' or 'date'",
        "  - timestamps.when.timezon: unknown key (did you mean 'timezone'?)",
        "  - tables.events.filtr: unknown key (did you mean 'filter'?)",
        "  - tables.events.duplicate: unknown key (did you mean 'duplicates'?)",
        "  - colour: unknown key",
    ]


def test_a_single_problem_stays_one_line_and_union_arms_are_told_once(tmp_path):
    mapping = orders_mapping()
    mapping["read"]["pattern"] = 3
    line = _fails_in_one_line(_check(dump_mapping(tmp_path / "orders.yaml", mapping)))
    assert line.endswith("orders.yaml: read.pattern: Input should be a valid string or a valid list")


def test_every_params_problem_is_listed_with_did_you_mean(tmp_path):
    text = (REPO / "params.yaml").read_text()
    text = text.replace("  raw_dir:", "  raw_dirr:", 1).replace("\ntrain:", "\ntrian: {}\ntrain:", 1)
    path = write(tmp_path / "params.yaml", text)
    result = runner.invoke(app, ["params", "check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"mapwise: {path}: 3 problems:",
        "  - ingest.raw_dir: Field required",
        "  - ingest.raw_dirr: unknown key (did you mean 'raw_dir'?)",
        "  - trian: unknown key (did you mean 'train'?)",
    ]


# 4. Preview applies every rule ingest applies; identical rows may be declared distinct events

HEADER = ORDERS_HEADER
TRANSACTIONS = [
    "A1,S1,Red mug,1,3.5,2024-01-02 10:00:00,c1,UK",
    "A1,S1,Red mug,1,3.5,2024-01-02 10:00:00,c1,UK",  # the same purchase twice: a repeat, or a copy?
    "A1,S1,Red mug,1,3.5,2024-01-02 10:00:00,c1,UK",
    "A1,S2,Blue cup,1,4.0,2024-01-02 10:00:00,c1,UK",
    "A2,S1,Red mug,-1,3.5,2024-01-03 11:30:00,c2,FR",  # quantity must be > 0
    "A3,S3,Plate,x,2.0,2024-01-03 11:30:00,c2,FR",  # qty cannot be parsed
    "A4,S4,Bowl,1,2.0,2024-01-03 11:30:00,,FR",  # no customer
    "A5,S5,Cup,1,2.0,2999-01-03 11:30:00,c3,FR",  # in the future
    'A6,"S6,Jug,1,2.0,2024-01-03 11:30:00,c3,FR',  # a quote never closed
    "A7,POST,Postage,1,5.0,2024-01-03 11:30:00,c3,FR",  # excluded by the filter
]


def _preview_counts(output: str) -> dict[str, dict]:
    """Per table, the accepted / rejected / read counts and the reason lines `mapping preview` printed."""
    tables: dict[str, dict] = {}
    current = None
    for line in output.splitlines():
        head = re.search(r"(\w+): ([\d,]+) accepted, ([\d,]+) rejected of ([\d,]+)", line)
        if head:
            current = head[1]
            accepted, rejected, read = (int(x.replace(",", "")) for x in head.groups()[1:])
            tables[current] = {"accepted": accepted, "quarantined": rejected, "read": read, "reasons": {}}
        elif current and (reason := re.fullmatch(r"\s+([\d,]+)  (.+)", line)):
            tables[current]["reasons"][reason[2]] = int(reason[1].replace(",", ""))
    return tables


def _transactions(tmp_path: Path, duplicates: str | None = None, **events) -> tuple[Path, Path]:
    mapping = orders_mapping()
    mapping["tables"]["events"]["filter"] = "sku != 'POST'"
    mapping["tables"]["events"]["columns"].update(events)
    if duplicates:
        mapping["tables"]["events"]["duplicates"] = duplicates
    path = dump_mapping(tmp_path / "orders.yaml", mapping)
    write(tmp_path / "raw" / "orders.csv", "\n".join([HEADER, *TRANSACTIONS]) + "\n")
    return path, tmp_path / "raw"


def _preview_and_ingest(tmp_path: Path, path: Path, raw: Path) -> tuple[dict, dict, str]:
    """`mapping preview`'s counts per table, ingest's report per table, and what preview printed."""
    shown = runner.invoke(app, ["mapping", "preview", str(path), str(raw / "orders.csv"),
                                "--params", str(tmp_path / "no-params.yaml")])  # ingest's default limits, as below
    assert shown.exit_code == 0, shown.output
    report = ingest(raw, [load_mapping(path)], KEY, Limits.of()).report["sources"]["orders"]["tables"]
    return _preview_counts(shown.output), report, shown.output


def test_preview_counts_exactly_what_ingest_quarantines_and_why(tmp_path):
    path, raw = _transactions(tmp_path)
    preview, report, output = _preview_and_ingest(tmp_path, path, raw)
    for table, counts in report.items():
        assert preview[table] == {k: counts[k] for k in ("accepted", "quarantined", "read", "reasons")}, table
    assert report["events"]["reasons"] == {
        "duplicate row": 2,
        "customer_id: missing value": 1,
        "excluded by filter: sku != 'POST'": 1,
        "qty: cannot parse as int": 1,
        "quantity: failed check greater_than(0)": 1,
        "timestamp: later than the time of ingestion + ingest.future_tolerance_days": 1,
        "unterminated quoted field: a stray quote, or a file cut short": 1,
    }
    assert preview["events"]["accepted"] == 2 and preview["events"]["read"] == 10
    assert "set tables.events.duplicates: keep" in output


def test_duplicates_keep_makes_identical_rows_distinct_events_in_preview_and_ingest(tmp_path):
    path, raw = _transactions(tmp_path, duplicates="keep")
    preview, report, output = _preview_and_ingest(tmp_path, path, raw)
    assert "duplicate row" not in report["events"]["reasons"] and report["events"]["accepted"] == 4
    for table, counts in report.items():
        assert preview[table] == {k: counts[k] for k in ("accepted", "quarantined", "read", "reasons")}, table
    assert "duplicates: keep" not in output
    events = ingest(raw, [load_mapping(path)], KEY, Limits.of()).tables[c.EVENTS]
    assert events.filter(pl.col(c.ITEM_ID) == "S1")[c.EVENT_ID].n_unique() == 3, "each line its own id"


def test_duplicates_keep_still_quarantines_a_repeated_mapped_id(tmp_path):
    path, raw = _transactions(tmp_path, duplicates="keep", event_id="concat(order, '-', sku)")
    preview, report, _ = _preview_and_ingest(tmp_path, path, raw)
    assert report["events"]["reasons"]["event_id: duplicate id"] == 2
    assert preview["events"] == {k: report["events"][k] for k in ("accepted", "quarantined", "read", "reasons")}


def test_duplicates_is_validated(tmp_path):
    mapping = orders_mapping()
    mapping["tables"]["customers"]["duplicates"] = "keep"
    line = _fails_in_one_line(_check(dump_mapping(tmp_path / "orders.yaml", mapping)))
    assert line.endswith("orders.yaml: tables: customers.duplicates: keep applies to fact tables only; customers rows "
                         "merge into one per customer_id")
    mapping = orders_mapping()
    mapping["tables"]["events"]["duplicates"] = "drop"
    line = _fails_in_one_line(_check(dump_mapping(tmp_path / "orders.yaml", mapping)))
    assert line.endswith("orders.yaml: tables.events.duplicates: Input should be 'quarantine' or 'keep'")


def test_the_demo_mappings_still_check(tmp_path):
    for path in sorted((REPO / "mappings").glob("*.yaml")):
        shutil.copy(path, tmp_path / path.name)
    result = runner.invoke(app, ["mapping", "check", *map(str, sorted(tmp_path.glob("*.yaml")))])
    assert result.exit_code == 0, result.output


def test_a_bare_number_or_flag_in_yaml_is_that_literal(tmp_path):
    mapping = orders_mapping()
    mapping["tables"]["events"]["columns"]["quantity"] = 1  # YAML `quantity: 1`, not the text "1"
    mapping["tables"]["events"]["filter"] = True
    dump_mapping(tmp_path / "orders.yaml", mapping)
    spec = load_mapping(tmp_path / "orders.yaml")
    assert spec.tables["events"].columns["quantity"] == "1" and spec.tables["events"].filter == "True"
