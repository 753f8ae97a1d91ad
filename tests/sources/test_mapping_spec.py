from pathlib import Path

import pytest

from mapwise.errors import MapwiseError
from mapwise.sources.mapping.load import load_mapping, parse_mapping

from conftest import REPO, dump_mapping, orders_mapping


@pytest.mark.parametrize("path", sorted((REPO / "mappings").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_mappings_are_valid(path: Path):
    mapping = load_mapping(path)
    assert mapping.name == path.stem
    assert mapping.tables


def _fails(mapping: dict, message: str) -> None:
    with pytest.raises(MapwiseError, match=message):
        parse_mapping(mapping, "m.yaml")


def test_unknown_key():
    _fails(orders_mapping(colums={}), r"^m.yaml: colums: unknown key$")
    mapping = orders_mapping()
    mapping["read"]["delimeter"] = ";"
    _fails(mapping, r"^m.yaml: read.delimeter: unknown key \(did you mean 'delimiter'\?\)$")


def test_unknown_table_and_column():
    _fails(orders_mapping(tables={"orderz": {"columns": {}}}), r"unknown table 'orderz'")
    mapping = orders_mapping()
    mapping["tables"]["items"]["columns"]["colour"] = "name"
    _fails(mapping, r"tables: items: unknown column 'colour' \(known: item_id, title")


def test_required_columns_must_be_mapped():
    mapping = orders_mapping()
    del mapping["tables"]["events"]["columns"]["timestamp"]
    _fails(mapping, r"events: required column\(s\) not mapped: timestamp")


def test_customer_id_only_from_identity():
    mapping = orders_mapping()
    mapping["tables"]["events"]["columns"]["customer_id"] = "client"
    _fails(mapping, r"events.customer_id is filled by ingest")
    _fails(orders_mapping(identity=None), r"events needs customer ids: set identity")


def test_bad_expression_is_located():
    mapping = orders_mapping()
    mapping["tables"]["events"]["columns"]["value"] = "qty ** price"
    _fails(mapping, r"^m.yaml: tables.events.columns.value: operator in 'qty \*\* price' is not allowed")


def test_read_options_are_checked():
    mapping = orders_mapping()
    mapping["read"]["delimiter"] = ";;"
    _fails(mapping, r"read.delimiter: .*single one-byte character")
    mapping["read"] = {"pattern": "x", "encoding": "klingon"}
    _fails(mapping, r"unknown encoding 'klingon'")
    mapping["read"] = {"pattern": "x", "header": False}
    _fails(mapping, r"header: false needs names")
    mapping = orders_mapping(timestamps={"when": {"timezone": "UTC"}})
    _fails(mapping, r"give exactly one of format or epoch")


def test_file_errors(tmp_path: Path):
    with pytest.raises(MapwiseError, match="cannot read mapping"):
        load_mapping(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [x\n")
    with pytest.raises(MapwiseError, match=r"invalid YAML at line"):
        load_mapping(broken)
    renamed = dump_mapping(tmp_path / "other.yaml", orders_mapping())
    with pytest.raises(MapwiseError, match=r"name 'orders' must match the file name 'other'"):
        load_mapping(renamed)
