"""Batches from the drop folder: staged, checked whole, accepted or rejected whole; the ledger; the watcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import KEY, ORDERS_HEADER, ORDERS_ROWS, orders_mapping, write

from mapwise.sources.batches import accept, check, reject, stage
from mapwise.errors import MapwiseError
from mapwise.sources.incoming import Watcher, source_of
from mapwise.sources.ingest import Limits, ingest
from mapwise.sources.ledger import Ledger
from mapwise.sources.mapping.load import parse_mapping
from mapwise.params import OrchestrateParams

MAPPING = parse_mapping(orders_mapping(), "orders.yaml")
LIMITS = Limits.of()


def rules(max_bad_share: float) -> OrchestrateParams:
    return OrchestrateParams(max_bad_share=max_bad_share)


def _drop(folder, name, rows, header=ORDERS_HEADER):
    return write(folder / "orders" / name, "\n".join([header, *rows]) + "\n")


def test_a_good_batch_is_staged_checked_and_accepted_without_touching_the_original(tmp_path):
    dropped = _drop(tmp_path / "incoming", "jan.csv", ORDERS_ROWS)
    before = dropped.read_bytes()
    batch = stage(str(dropped), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"))
    assert (batch.source, batch.path.name) == ("orders", f"{batch.sha256[:12]}-jan.csv")
    result = check(batch, MAPPING, KEY, LIMITS, rules(0.05))
    assert result.ok and result.report["tables"]["events"] == {"read": 3, "accepted": 3, "quarantined": 0, "forgotten": 0, "reasons": {}}
    stored = accept(batch, tmp_path / "batches")
    assert stored == tmp_path / "batches" / "orders" / batch.path.name and stored.read_bytes() == before
    assert dropped.read_bytes() == before


def test_a_batch_with_too_many_bad_rows_is_rejected_whole_with_its_reason(tmp_path):
    bad = [row.replace("2024-01-02", "someday") for row in ORDERS_ROWS[:2]] + ORDERS_ROWS[2:]
    batch = stage(str(_drop(tmp_path / "incoming", "feb.csv", bad)), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"))
    result = check(batch, MAPPING, KEY, LIMITS, rules(0.5))
    assert not result.ok
    assert result.reason.startswith("2 of 3 rows for events fail the contract (67% > orchestrate.max_bad_share 50%): when: cannot parse")
    stored = reject(batch, tmp_path / "rejected", result)
    reason = json.loads(stored.with_name(stored.name + ".reason.json").read_text())
    assert reason["reason"] == result.reason and reason["sha256"] == batch.sha256
    assert check(stage(str(_drop(tmp_path / "incoming", "feb.csv", bad)), tmp_path / "s", ["orders"], str(tmp_path / "incoming")), MAPPING, KEY, LIMITS, rules(0.7)).ok


def test_unreadable_and_misplaced_batches(tmp_path):
    missing_column = _drop(tmp_path / "incoming", "mar.csv", ["A1,S1"], header="order,sku")
    result = check(stage(str(missing_column), tmp_path / "staging", ["orders"], str(tmp_path / "incoming")), MAPPING, KEY, LIMITS, rules(0.05))
    assert not result.ok and result.reason.startswith("column(s) 'qty', 'price'")
    empty = _drop(tmp_path / "incoming", "apr.csv", [])
    assert check(stage(str(empty), tmp_path / "staging", ["orders"], str(tmp_path / "incoming")), MAPPING, KEY, LIMITS, rules(0.05)).reason == "no rows"
    stray = write(tmp_path / "incoming" / "misc" / "x.csv", "a\n1\n")
    with pytest.raises(MapwiseError, match=r"'misc' is not a source \(orders\); drop files into <incoming>/<source>/"):
        stage(str(stray), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"))
    assert stage(str(stray), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"), source="orders").source == "orders"
    with pytest.raises(MapwiseError, match="cannot read"):
        stage(str(tmp_path / "incoming" / "orders" / "gone.csv"), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"))


def test_ingest_reads_accepted_batches_after_the_raw_files(tmp_path):
    write(tmp_path / "raw" / "orders.csv", "\n".join([ORDERS_HEADER, *ORDERS_ROWS[:2]]) + "\n")
    _drop(tmp_path / "batches", "aa-more.csv", ORDERS_ROWS[2:])
    write(tmp_path / "batches" / "orders" / "aa-more.csv.dvc", "outs: []\n")
    write(tmp_path / "batches" / "orders" / ".gitignore", "/aa-more.csv\n")
    result = ingest(tmp_path / "raw", [MAPPING], KEY, Limits.of(), tmp_path / "batches")
    files = result.report["sources"]["orders"]["files"]
    assert [f["path"] for f in files] == ["orders.csv", "batches/orders/aa-more.csv"]
    assert result.tables["events"].height == 3
    assert ingest(tmp_path / "raw", [MAPPING], KEY, Limits.of()).tables["events"].height == 2


def test_ledger_finds_content_by_hash_while_the_data_holds_it(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.find("abc") is None
    batch = write(tmp_path / "batches" / "y.csv", "a\n")
    write(tmp_path / "batches" / "y.csv.dvc", "outs: []\n")
    ledger.record(sha256="abc", status="rejected", stored=str(tmp_path / "x"))
    ledger.record(sha256="def", status="accepted", stored=str(batch))
    assert ledger.find("abc")["status"] == "rejected" and ledger.find("def")["stored"] == str(batch)
    assert [e["sha256"] for e in Ledger(tmp_path / "ledger.jsonl").entries()] == ["abc", "def"]
    Path(f"{batch}.dvc").unlink()  # a rollback to a data version without the batch
    assert ledger.find("def") is None, "the same content arriving again is processed again"


def test_watcher_reports_a_file_once_it_stopped_changing_and_only_once(tmp_path):
    incoming, state = tmp_path / "incoming", tmp_path / "state.json"
    watcher = Watcher(str(incoming), state)
    assert watcher.poll() == []  # no folder yet
    growing = write(incoming / "orders" / "a.csv", "order\n")
    write(incoming / "orders" / "b.csv.part", "x")  # still being written by its producer
    write(incoming / "orders" / ".hidden", "x")
    assert watcher.poll() == []  # seen once: not yet known to be complete
    with growing.open("a") as out:
        out.write("A1\n")
    os.utime(growing, (1, 1))
    assert watcher.poll() == []  # changed since: wait again
    assert watcher.poll() == [str(growing)]
    assert watcher.poll() == []
    assert Watcher(str(incoming), state).poll() == [], "a restarted watcher remembers what it reported"
    assert source_of(str(growing)) == "orders" and source_of("s3://bucket/in/orders/x.csv") == "orders"


def test_a_dropped_link_out_of_the_drop_folder_or_an_oversized_file_is_refused_before_any_copy(tmp_path):
    secret = write(tmp_path / "elsewhere" / "passwd", "root:x:0:0:secret-first-line\n")
    link = tmp_path / "incoming" / "orders" / "x.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    with pytest.raises(MapwiseError, match=r"x.csv: refused: it resolves to a file outside the drop folder") as refused:
        stage(str(link), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"))
    assert "secret" not in str(refused.value) and not (tmp_path / "staging").exists()
    big = _drop(tmp_path / "incoming", "big.csv", ORDERS_ROWS * 1000)
    with pytest.raises(MapwiseError, match=r"big.csv: 0 MiB, over the limit of 0 MiB"):
        stage(str(big), tmp_path / "staging", ["orders"], str(tmp_path / "incoming"), max_bytes=1024)
    assert not list((tmp_path / "staging").glob("*"))
