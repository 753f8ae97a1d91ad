"""Shared test helpers: build real sources in a temp dir and ingest them with the real code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mapwise.ingest import IngestResult, ingest
from mapwise.mapping.spec import parse_mapping

REPO = Path(__file__).resolve().parents[1]
KEY = b"test-key-0123456789abcdef"

# A small orders export in the shape of a shop's CSV, with its mapping.
ORDERS_HEADER = "order,sku,name,qty,price,when,client,country"
ORDERS_ROWS = [
    "A1,S1,Red mug,2,3.5,2024-01-02 10:00:00,c1,UK",
    "A1,S2,Blue cup,1,4.0,2024-01-02 10:00:00,c1,UK",
    "A2,S1,Red mug,1,3.5,2024-01-03 11:30:00,c2,FR",
]


def orders_mapping(**overrides) -> dict:
    mapping = {
        "name": "orders",
        "read": {"pattern": "orders*.csv*"},
        "casts": {"qty": "int", "price": "float"},
        "timestamps": {"when": {"format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"}},
        "identity": "client",
        "tables": {
            "events": {
                "columns": {
                    "item_id": "sku",
                    "event_type": "'purchase'",
                    "timestamp": "when",
                    "quantity": "qty",
                    "value": "qty * price",
                    "session_id": "order",
                }
            },
            "items": {"columns": {"item_id": "sku", "title": "name", "price": "price"}},
            "customers": {"columns": {"country": "country"}},
        },
    }
    mapping.update(overrides)
    return mapping


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def run(raw_dir: Path, *mappings: dict) -> IngestResult:
    return ingest(raw_dir, [parse_mapping(m, f"{m['name']}.yaml") for m in mappings], KEY)


def assert_balanced(result: IngestResult) -> None:
    """accepted + quarantined = read, for every source and table."""
    for source in result.report["sources"].values():
        for counts in source["tables"].values():
            assert counts["accepted"] + counts["quarantined"] == counts["read"] == source["rows_read"]


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "raw"


def dump_mapping(path: Path, mapping: dict) -> Path:
    return write(path, yaml.safe_dump(mapping, sort_keys=False))
