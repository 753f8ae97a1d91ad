"""Files read in chunks (ingest.chunk_mb): any chunk size gives exactly what the whole file gives.

Chunks are made tiny here so a small file spans many of them: rows, rejects, line numbers, reasons,
duplicates across chunk boundaries, generated ids and reports must all be identical to a one-chunk run.
"""

from __future__ import annotations

import gzip
import hmac
from dataclasses import replace
from hashlib import sha256
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import KEY, ORDERS_HEADER, assert_balanced, orders_mapping, write
from mapwise import columns as c
from mapwise.params import IngestParams
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH, Pseudonymiser, pseudonyms
from mapwise.sources.ingest import (
    DUPLICATE_ROW, Limits, ingest, ingest_partition, merge_partitions,
)
from mapwise.sources.mapping.readers import MAX_RECORD_LINES, chunks, read_raw, shifted
from mapwise.sources.mapping.load import parse_mapping
from test_hostile_files import LIMITS, hostile_file, row

WHOLE = replace(LIMITS, chunk_bytes=2**40)
SIZES = (1, 97, 300, 4096)  # bytes: every line its own chunk, a few lines, ..., the whole file


def _run(raw_dir: Path, limits: Limits, **mapping):
    return ingest(raw_dir, [parse_mapping(orders_mapping(**mapping), "orders.yaml")], KEY, limits)


def assert_same(chunked, whole) -> None:
    """Identical tables, quarantine and report."""
    assert chunked.report == whole.report
    for name in whole.tables:
        assert_frame_equal(chunked.tables[name], whole.tables[name])
        assert_frame_equal(chunked.quarantine[name], whole.quarantine[name])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("size", SIZES)
def test_a_damaged_file_reads_the_same_in_any_chunks(tmp_path, seed, size):
    """Stray quotes, records over two lines, ragged rows, bad bytes, blank lines and CRLF at chunk boundaries."""
    content, _ = hostile_file(seed)
    write(tmp_path / "orders.csv", content)
    whole = _run(tmp_path, WHOLE)
    chunked = _run(tmp_path, replace(LIMITS, chunk_bytes=size))
    assert_balanced(chunked)
    assert_same(chunked, whole)


def test_duplicates_across_chunk_boundaries_are_found_with_their_first_line(tmp_path):
    lines = [row(n) for n in range(50)]
    lines += [row(3), row(49), row(0)]  # repeats far from their first occurrence, in later chunks
    write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, *lines]) + "\n")
    whole = _run(tmp_path, WHOLE)
    chunked = _run(tmp_path, replace(LIMITS, chunk_bytes=120))
    assert_same(chunked, whole)
    assert len(list(chunks(tmp_path / "orders.csv", parse_mapping(orders_mapping(), "o.yaml").read, 2**30, 120))) > 20
    q = chunked.quarantine[c.EVENTS].filter(pl.col(c.Q_REASON) == DUPLICATE_ROW)
    assert q[c.Q_LINE].to_list() == [52, 53, 54]
    assert q[c.Q_VALUE].to_list() == ["first at orders.csv:5", "first at orders.csv:51", "first at orders.csv:2"]


def test_line_numbers_and_generated_ids_follow_the_file_not_the_chunk(tmp_path):
    lines = [row(n) for n in range(40)]
    lines[25] = row(25, qty="x")  # line 27 of the file
    write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, *lines]) + "\n")
    chunked = _run(tmp_path, replace(LIMITS, chunk_bytes=64))
    q = chunked.quarantine[c.EVENTS]
    assert q[c.Q_LINE].to_list() == [27] and q[c.Q_COLUMN].to_list() == ["qty"]
    ids = chunked.tables[c.EVENTS][c.EVENT_ID].to_list()
    assert [int(i.rsplit(":", 1)[1]) for i in ids] == [n for n in range(2, 42) if n != 27]


def test_a_gzip_file_streams_in_chunks_with_the_same_result_and_bound(tmp_path):
    content, _ = hostile_file(7)
    write(tmp_path / "orders.csv.gz", gzip.compress(content))
    whole = _run(tmp_path, WHOLE)
    assert_same(_run(tmp_path, replace(LIMITS, chunk_bytes=500)), whole)
    with pytest.raises(Exception, match="once decompressed"):
        _run(tmp_path, replace(LIMITS, chunk_bytes=500, max_bytes=len(content) // 2))


def test_a_quoted_record_longer_than_a_chunk_is_kept_whole(tmp_path):
    title = '"' + "\n".join(f"line {i}, of a long title" for i in range(30)) + '"'
    lines = [row(1), row(2, title=title), row(3), row(4, title='"a ""quoted"", title"')]
    write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, *lines]) + "\n")
    whole = _run(tmp_path, WHOLE)
    chunked = _run(tmp_path, replace(LIMITS, chunk_bytes=40))
    assert_same(chunked, whole)
    assert chunked.report["sources"]["orders"]["rows_read"] == 4
    assert chunked.quarantine[c.EVENTS].height == 0


def test_a_stray_quote_near_a_boundary_costs_only_its_line(tmp_path):
    lines = [row(n) for n in range(30)]
    lines[9] = lines[9].replace(",Mug", ',"Mug')  # never closed
    write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, *lines]) + "\n")
    whole = _run(tmp_path, WHOLE)
    for size in (1, 50, 500):
        chunked = _run(tmp_path, replace(LIMITS, chunk_bytes=size))
        assert_same(chunked, whole)
    assert whole.quarantine[c.EVENTS][c.Q_LINE].to_list() == [11]


@pytest.mark.parametrize(("read", "text"), [
    ({"pattern": "orders*.tsv", "format": "tsv"}, lambda lines: "\n".join(x.replace(",", "\t") for x in lines)),
    ({"pattern": "orders*.tsv", "skip_rows": 2}, lambda lines: "exported 2024\nby the shop\n" + "\n".join(lines)),
    ({"pattern": "orders*.tsv", "header": False, "names": ORDERS_HEADER.split(",")}, lambda lines: "\n".join(lines[1:])),
    ({"pattern": "orders*.tsv", "encoding": "latin-1"}, lambda lines: "\n".join(lines).replace("Mug 1", "Caf\xe9")),
])
def test_other_layouts_read_the_same_in_chunks(tmp_path, read, text):
    lines = [ORDERS_HEADER, *(row(n) for n in range(30)), "", row(3), row(31)]
    content = text(lines) + "\n"
    write(tmp_path / "orders.tsv", content.encode(read.get("encoding", "utf-8")))
    whole = _run(tmp_path, WHOLE, read=read)
    for size in (1, 70, 333):
        assert_same(_run(tmp_path, replace(LIMITS, chunk_bytes=size), read=read), whole)


def test_a_file_can_be_parsed_into_chunks_that_join_up_exactly(tmp_path):
    content, _ = hostile_file(3)
    path = write(tmp_path / "orders.csv", content)
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    parts = list(chunks(path, mapping.read, LIMITS.max_bytes, 200))
    assert len(parts) >= 3  # a chunk ends only where no record can run on: never near a quote left open
    assert parts[0].offset == 0 and all(a.offset < b.offset for a, b in zip(parts, parts[1:], strict=False))
    raws = [shifted(read_raw(path, part.data, mapping.read, LIMITS.max_bytes), part.offset) for part in parts]
    whole = read_raw(path, content, mapping.read, LIMITS.max_bytes)
    assert_frame_equal(pl.concat([r.frame for r in raws]), whole.frame)
    assert_frame_equal(pl.concat([r.rejects for r in raws]), whole.rejects)


def test_partitions_are_independent_and_merge_to_the_whole(tmp_path):
    """Each chunk ingested alone (as a worker would, with its own pseudonymiser), then merged."""
    content, _ = hostile_file(2)
    path = write(tmp_path / "orders.csv", content)
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    parts = [
        ingest_partition(shifted(read_raw(path, ch.data, mapping.read, LIMITS.max_bytes), ch.offset), mapping,
                         path=path, label="orders.csv", file_id="f" * 12, key=KEY, limits=LIMITS)
        for ch in chunks(path, mapping.read, LIMITS.max_bytes, 300)
    ]
    whole = ingest_partition(read_raw(path, content, mapping.read, LIMITS.max_bytes), mapping, path=path,
                             label="orders.csv", file_id="f" * 12, key=KEY, limits=LIMITS)
    merged, merged_bad, merged_report = merge_partitions(parts, mapping)
    single, single_bad, single_report = merge_partitions([whole], mapping)
    assert merged_report == single_report
    for table in mapping.tables:
        assert_frame_equal(merged[table], single[table])
        order = [c.Q_FILE, c.Q_LINE]
        assert_frame_equal(merged_bad[table].sort(order), single_bad[table].sort(order))


def test_pseudonyms_are_keyed_hmac_sha256_whatever_the_key_length():
    ids = ["17850", "é", "x" * 200, "0"]
    for key in (b"k" * 16, KEY, b"k" * 64, b"k" * 65, b"k" * 300):
        expected = [hmac.new(key, i.encode(), sha256).hexdigest()[:PSEUDONYM_LENGTH] for i in ids]
        assert pseudonyms(ids, key) == expected


def test_a_pseudonymiser_shared_by_chunks_gives_what_a_fresh_one_gives():
    shared = Pseudonymiser(KEY)
    first = pl.Series("id", ["1", " 2 ", None, "", "3"])
    second = pl.Series("id", ["3", "2", "4", "  ", "1"])
    for series in (first, second):
        assert shared(series).to_list() == Pseudonymiser(KEY)(series).to_list()
    assert shared(second).to_list()[3] is None


def test_chunk_mb_is_a_param():
    p = IngestParams(raw_dir=Path("raw"), sources=["orders"], chunk_mb=0.5)
    assert Limits.of(p).chunk_bytes == 2**19
    with pytest.raises(ValueError):
        IngestParams(raw_dir=Path("raw"), sources=["orders"], chunk_mb=0)
    assert MAX_RECORD_LINES > 1


def test_a_hash_collision_between_ids_falls_back_to_the_ids_themselves():
    """Rows find pseudonyms by a 64-bit hash of the id; one that would find another id's is caught."""
    shared = Pseudonymiser(KEY)
    ids = pl.Series("id", ["2", "1", None, " ", "3"])
    shared(ids)
    shared._known = shared._known.with_columns(  # as if "2" had collided with an id seen before
        pl.when(pl.col("raw") == "2").then(pl.lit("another id")).otherwise(pl.col("raw")).alias("raw"))
    assert shared(ids).to_list() == Pseudonymiser(KEY)(ids).to_list() == [*pseudonyms(["2", "1"], KEY), None, None,
                                                                           *pseudonyms(["3"], KEY)]
