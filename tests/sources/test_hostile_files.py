"""Hostile raw files, generated here: every record accounted for, refusals in one line, no raw id echoed.

The generated files mix every kind of damage at random places (seeded), so the rules are checked as
properties of whole files, not only on the one case each was found with.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from conftest import KEY, ORDERS_HEADER, assert_balanced, orders_mapping, write
from mapwise import columns as c
from mapwise.sources.batches import Batch, check
from mapwise.errors import MAX_MESSAGE, MapwiseError
from mapwise.sources.ingest import FUTURE, PAST, Limits, ingest
from mapwise.sources.mapping.readers import INVALID_BYTES, UNTERMINATED
from mapwise.sources.mapping.load import parse_mapping
from mapwise.params import OrchestrateParams
from mapwise.privacy.pseudonym import pseudonym

NOW = datetime(2025, 6, 1, tzinfo=UTC)
LIMITS = replace(Limits.of(now=NOW), max_bytes=8 * 2**20, trusted=())
STRICT = OrchestrateParams()  # the default batch rules
WHEN = "2024-01-02 10:00:00"


def raw_id(n: int) -> str:
    return f"RAWID{n:05d}Q"


def row(n: int, *, title: str | None = None, client: str | None = None, when: str = WHEN, qty: str = "1") -> str:
    return ",".join([f"A{n}", f"S{n % 7}", title or f"Mug {n}", qty, "2.5", when, client if client is not None else raw_id(n), "UK"])


def ingest_file(raw_dir: Path, content: bytes, name: str = "orders.csv", limits: Limits = LIMITS, **mapping):
    write(raw_dir / name, content)
    return ingest(raw_dir, [parse_mapping(orders_mapping(**mapping), "orders.yaml")], KEY, limits)


def quarantined_lines(result, table: str = c.EVENTS) -> dict[int, str]:
    q = result.quarantine[table]
    return dict(zip(q[c.Q_LINE].to_list(), q[c.Q_REASON].to_list(), strict=True))


def no_raw_id_anywhere(result, error: str = "") -> None:
    """No raw customer id in quarantine values, reports or errors (only pseudonyms travel on)."""
    text = json.dumps(result.report) + error
    for frame in [*result.quarantine.values(), *result.tables.values()]:
        text += frame.write_csv()
    assert "RAWID" not in text


# -- a whole file with every kind of damage ----------------------------------------------------
KINDS = ("clean", "stray_quote", "extra_field", "missing_field", "padded", "future", "quoted", "bad_bytes")


def hostile_file(seed: int, rows: int = 400) -> tuple[bytes, dict[int, str]]:
    """A CSV with damage of every kind at random rows, blank lines between, random line ends; and the
    kind of record that starts on each line."""
    rng = random.Random(seed)
    end = rng.choice([b"\n", b"\r\n"])
    out = [(b"\xef\xbb\xbf" if rng.random() < 0.5 else b"") + ORDERS_HEADER.encode()]
    kinds: dict[int, str] = {}
    line = 2
    for n in range(rows):
        while rng.random() < 0.1:  # blank lines are not records
            out.append(rng.choice([b"", b"   ", b"\t", b" \t "]))
            line += 1
        kind = rng.choice(KINDS) if rng.random() < 0.4 else "clean"
        text = row(n).encode()
        if kind == "stray_quote":
            fields = text.split(b",")
            at = rng.randrange(1, len(fields))
            fields[at] = b'"' + fields[at]
            text = b",".join(fields)
        elif kind == "extra_field":
            text += b"," + raw_id(n).encode()
        elif kind == "missing_field":
            text = text.rsplit(b",", 1)[0]
        elif kind == "padded":
            text = row(n, client=f"  {raw_id(n)} ", qty=" 3\t").encode()
        elif kind == "future":
            text = row(n, when="2099-01-02 10:00:00").encode()
        elif kind == "quoted":
            text = row(n, title=f'"Mug, {n}{end.decode()}second line"').encode()
        elif kind == "bad_bytes":
            text = row(n, title="Caf\udce9 mug").encode("utf-8", "surrogateescape")
        out.append(text)
        kinds[line] = kind
        line += 2 if kind == "quoted" else 1
    return end.join(out) + (end if rng.random() < 0.7 else b""), kinds


@pytest.mark.parametrize("seed", range(6))
def test_every_record_of_a_damaged_file_is_accounted_for(tmp_path, seed):
    content, kinds = hostile_file(seed)
    result = ingest_file(tmp_path / "raw", content)
    assert_balanced(result)
    source = result.report["sources"]["orders"]
    assert source["rows_read"] == len(kinds), "one record per non-blank data line, nothing lost, nothing invented"
    broken = {line for line, kind in kinds.items() if kind in ("stray_quote", "extra_field", "missing_field", "bad_bytes")}
    assert source["broken"] == len(broken)
    events = quarantined_lines(result)
    for line, kind in kinds.items():
        if kind == "stray_quote":
            assert events[line] == UNTERMINATED
        elif kind in ("extra_field", "missing_field"):
            assert events[line].startswith("expected 8 fields, found ")
        elif kind == "bad_bytes":
            assert events[line] == INVALID_BYTES
        elif kind == "future":
            assert events[line] == FUTURE
        else:
            assert line not in events, f"line {line} ({kind}) should be accepted: {events.get(line)}"
    accepted = result.tables[c.EVENTS]
    assert accepted[c.TIMESTAMP].max() <= LIMITS.latest
    padded = [n for n, kind in enumerate(kinds.values()) if kind == "padded"]
    assert set(accepted.filter(pl.col(c.QUANTITY) == 3)[c.CUSTOMER_ID]) == {pseudonym(raw_id(n), KEY) for n in padded}
    no_raw_id_anywhere(result)


@pytest.mark.parametrize("seed", range(3))
def test_the_batch_check_rejects_a_damaged_file_and_accepts_it_repaired(tmp_path, seed):
    content, kinds = hostile_file(seed)
    damaged = write(tmp_path / "damaged.csv", content)
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    result = check(Batch("drop/orders/damaged.csv", "orders", damaged, "x"), mapping, KEY, LIMITS, STRICT)
    assert not result.ok and result.reason.startswith("damaged: ")
    clean = write(tmp_path / "clean.csv", "\n".join([ORDERS_HEADER, *(row(n) for n in range(len(kinds)))]) + "\n")
    assert check(Batch("drop/orders/clean.csv", "orders", clean, "y"), mapping, KEY, LIMITS, STRICT).ok


# -- one defect each, as reported ----------------------------------------------------------------
def test_a_stray_quote_costs_one_line_not_the_rest_of_the_file(raw_dir):
    rows = [row(n) for n in range(2000)]
    rows[500] = rows[500].replace("Mug", '"Mug', 1)
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, *rows]) + "\n").encode())
    assert result.report["sources"]["orders"]["rows_read"] == 2000
    assert quarantined_lines(result) == {502: UNTERMINATED}
    assert result.tables[c.EVENTS].height == 1999


def test_a_file_cut_inside_a_quoted_field_reads_every_line_after_it(raw_dir):
    rows = [row(1), 'A2,S2,"Two', 'lines and then the end', row(3)]
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, *rows]) + "\n").encode())
    assert result.report["sources"]["orders"]["rows_read"] == 4
    assert quarantined_lines(result) == {3: UNTERMINATED, 4: "expected 8 fields, found 1"}


@pytest.mark.parametrize("content", [b"", gzip.compress(b"")], ids=["zero-bytes", "empty-gzip"])
def test_an_empty_file_is_refused_in_one_line(raw_dir, content):
    name = "orders.csv.gz" if content else "orders.csv"
    with pytest.raises(MapwiseError, match=r"^/\S+/orders.csv(.gz)?: the file is empty \(0 bytes\): nothing to read"):
        ingest_file(raw_dir, content, name)


def test_blank_lines_are_not_rows_even_with_quoted_fields(raw_dir):
    rows = []
    for n in range(2000):
        rows.append(row(n, title=f'"Mug, {n}"') if n % 3 == 0 else row(n))
        if n % 50 == 0:
            rows.append("")
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, *rows]) + "\n").encode())
    assert result.report["sources"]["orders"]["rows_read"] == 2000
    assert result.tables[c.EVENTS].height == 2000


def test_future_and_ancient_timestamps_are_quarantined_and_the_bounds_reported(raw_dir):
    tomorrow = (NOW + timedelta(hours=20)).strftime("%Y-%m-%d %H:%M:%S")
    rows = [row(1), row(2, when="2099-01-02 10:00:00"), row(3, when=tomorrow), row(4, when="1899-12-31 23:00:00")]
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, *rows]) + "\n").encode())
    assert quarantined_lines(result) == {3: FUTURE, 5: PAST}  # within the tolerance of a day: kept
    assert result.tables[c.CUSTOMERS].height == 4  # customers do not read the time
    assert result.report["timestamps"] == ["1900-01-01T00:00:00+00:00", "2025-06-02T00:00:00+00:00"]


def test_padded_ids_and_numbers_are_trimmed_unless_the_mapping_says_not_to(raw_dir):
    content = ("\n".join([ORDERS_HEADER.replace("qty", " qty "), row(1, client=" 17850 ", qty=" 2 ")]) + "\n").encode()
    result = ingest_file(raw_dir, content)
    assert result.tables[c.EVENTS][c.CUSTOMER_ID].to_list() == [pseudonym("17850", KEY)]
    assert result.tables[c.EVENTS][c.QUANTITY].to_list() == [2]
    with pytest.raises(MapwiseError, match=r"column\(s\) 'qty' needed by mapping 'orders' not in the file"):
        ingest_file(raw_dir, content, read={"pattern": "orders*.csv*", "trim": False})


def test_no_raw_id_reaches_the_quarantine(raw_dir):
    rows = [row(1) + ",surprise", row(2).replace(raw_id(2), "RAWID\udce9X").encode("utf-8", "surrogateescape").decode(
        "utf-8", "surrogateescape"), row(3, qty="x"), ",".join(row(4).split(",")[:3])]
    content = "\n".join([ORDERS_HEADER, *rows]).encode("utf-8", "surrogateescape") + b"\n"
    result = ingest_file(raw_dir, content)
    assert_balanced(result)
    assert result.quarantine[c.EVENTS].height == 4
    no_raw_id_anywhere(result)
    jsonl = b'{"order": "A1", "client": "RAWID1", "sku": \n[1, "RAWID2"]\n'
    result = ingest_file(raw_dir / "js", jsonl, "orders.jsonl", read={"pattern": "*.jsonl", "format": "jsonl"})
    assert result.quarantine[c.EVENTS][c.Q_VALUE].null_count() == 2
    no_raw_id_anywhere(result)


def test_a_header_that_is_really_data_is_not_echoed(raw_dir):
    with pytest.raises(MapwiseError) as refused:
        ingest_file(raw_dir, ("\n".join([row(1), row(2)]) + "\n").encode())
    assert "is the header line missing" in str(refused.value) and "RAWID" not in str(refused.value)


@pytest.mark.parametrize(("kind", "compress"), [("gz", gzip.compress), ("bz2", bz2.compress), ("xz", lzma.compress)])
def test_decompression_is_bounded(raw_dir, kind, compress):
    bomb = compress(ORDERS_HEADER.encode() + b"\n" + b"0" * (64 * 2**20))  # 64 MiB of zeros, a few kB packed
    tracemalloc.start()
    with pytest.raises(MapwiseError, match=rf"orders.csv.{kind}: over the limit of 8 MiB \(ingest.max_file_mb\) once "
                                           rf"decompressed"):
        ingest_file(raw_dir, bomb, f"orders.csv.{kind}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * LIMITS.max_bytes, "decompressed as a stream and abandoned at the bound"


def test_a_plain_file_over_the_bound_is_refused_before_it_is_read(raw_dir):
    with pytest.raises(MapwiseError, match=r"orders.csv: 1 MiB, over the limit of 0 MiB"):
        ingest_file(raw_dir, b"x" * 2**20, limits=replace(LIMITS, max_bytes=2**10))


def test_links_out_of_the_raw_folder_are_refused_without_showing_the_target(tmp_path):
    secret = write(tmp_path / "outside" / "passwd", "root:x:0:0:secret-first-line\n")
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "orders.csv").symlink_to(secret)
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    with pytest.raises(MapwiseError, match=r"orders.csv: refused: it resolves to a file outside") as refused:
        ingest(raw_dir, [mapping], KEY, LIMITS)
    assert "secret" not in str(refused.value)
    (raw_dir / "orders.csv").unlink()
    escape = parse_mapping(orders_mapping(read={"pattern": "../outside/*"}), "orders.yaml")
    with pytest.raises(MapwiseError, match="refused: it resolves to a file outside"):
        ingest(raw_dir, [escape], KEY, LIMITS)
    inside = write(raw_dir / "real" / "data.csv", "\n".join([ORDERS_HEADER, row(1)]) + "\n")
    (raw_dir / "orders.csv").symlink_to(inside)  # a link within the raw folder is fine
    assert ingest(raw_dir, [mapping], KEY, LIMITS).tables[c.EVENTS].height == 1
    (raw_dir / "real" / "data.csv").unlink()
    (raw_dir / "orders.csv").unlink()
    trusted = write(tmp_path / "cache" / "ab" / "cdef", "\n".join([ORDERS_HEADER, row(1)]) + "\n")
    (raw_dir / "orders.csv").symlink_to(trusted)  # e.g. DVC's cache with cache.type symlink
    assert ingest(raw_dir, [mapping], KEY, replace(LIMITS, trusted=(tmp_path / "cache",))).tables


def test_echoed_content_stays_a_preview(raw_dir):
    huge = "h" * (3 * 2**20)
    for content in (f"{huge},qty\n1,2\n", f"order,sku,name,qty,price,when,client,{huge}\n" + row(1) + "\n"):
        with pytest.raises(MapwiseError) as refused:
            ingest_file(raw_dir, content.encode())
        assert len(str(refused.value)) <= MAX_MESSAGE
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, row(1, title=huge, qty=huge)]) + "\n").encode())
    assert max(len(v) for v in result.quarantine[c.EVENTS][c.Q_VALUE].to_list()) < 200
    content = f"{ORDERS_HEADER},{huge}\n{row(1)},caf\udce9\n".encode("utf-8", "surrogateescape")
    result = ingest_file(raw_dir, content)  # bytes invalid in the encoding, in a column with a huge name
    assert result.quarantine[c.EVENTS][c.Q_COLUMN].str.len_chars().max() < 200 and len(json.dumps(result.report)) < 5000
    assert MapwiseError("x" * 10**7).args[0].endswith("... (10000000 chars)")


def test_non_finite_numbers_are_quarantined(raw_dir):
    rows = [row(1), row(2).replace("2.5", "inf"), row(3).replace("2.5", "NaN"), row(4).replace("2.5", "1e999")]
    result = ingest_file(raw_dir, ("\n".join([ORDERS_HEADER, *rows]) + "\n").encode())
    assert sorted(quarantined_lines(result, c.ITEMS)) == [3, 4, 5]
    assert result.tables[c.ITEMS].height == 1


def test_a_column_named_twice_is_ambiguous(raw_dir):
    content = ("\n".join([ORDERS_HEADER + ",qty", row(1) + ",5"]) + "\n").encode()
    with pytest.raises(MapwiseError, match=r"column\(s\) 'qty' appear more than once in the header"):
        ingest_file(raw_dir, content)


def test_lone_carriage_returns_end_lines(raw_dir):
    result = ingest_file(raw_dir, ("\r".join([ORDERS_HEADER, row(1), row(2), "", row(3)]) + "\r").encode())
    assert result.tables[c.EVENTS].height == 3
    assert sorted(result.tables[c.EVENTS][c.SESSION_ID].to_list()) == ["A1", "A2", "A3"]


def test_json_lines_keep_physical_line_numbers_and_survive_deep_nesting(raw_dir):
    good = '{"order": "A1", "sku": "S1", "name": "mug", "qty": 1, "price": 2.5, "when": 1704189600, "client": "c", "country": "UK"}'
    content = "\n".join([good, "[" * 100_000, "x\x0by", good.replace("A1", "A2")]) + "\n"
    result = ingest_file(raw_dir, content.encode(), "orders.jsonl", read={"pattern": "*.jsonl", "format": "jsonl"},
                         timestamps={"when": {"epoch": "s"}})
    assert sorted(quarantined_lines(result)) == [2, 3]
    assert result.tables[c.EVENTS][c.SESSION_ID].to_list() == ["A1", "A2"]


# -- the batch check applies ingest's rules, and says which reasons count -------------------------
def _batch(tmp_path, rows: list[str], name: str = "batch.csv") -> Batch:
    path = write(tmp_path / name, "\n".join([ORDERS_HEADER, *rows]) + "\n")
    return Batch(f"drop/orders/{name}", "orders", path, "x")


def test_guest_checkouts_do_not_count_against_a_batch_but_future_dates_and_damage_do(tmp_path):
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    guests = [row(n, client="" if n % 3 == 0 else None) for n in range(300)]  # a third without a customer id
    assert check(_batch(tmp_path, guests), mapping, KEY, LIMITS, STRICT).ok
    counted = OrchestrateParams(uncounted_reasons=["excluded by filter"])
    refused = check(_batch(tmp_path, guests), mapping, KEY, LIMITS, counted)
    assert not refused.ok and "customer_id: missing value (100)" in refused.reason
    future = [row(n, when="2099-01-02 10:00:00" if n % 10 == 0 else WHEN) for n in range(300)]
    refused = check(_batch(tmp_path, future), mapping, KEY, LIMITS, STRICT)
    assert not refused.ok and f"timestamp: {FUTURE} (30)" in refused.reason
    cut = [row(n) for n in range(300)]
    cut[150] = cut[150].replace("Mug", '"Mug')
    refused = check(_batch(tmp_path, cut), mapping, KEY, LIMITS, STRICT)
    assert refused.reason == f"damaged: 1 of 300 records cannot be parsed (orchestrate.max_broken_lines 0): {UNTERMINATED} (1)"
    assert check(_batch(tmp_path, cut), mapping, KEY, LIMITS, OrchestrateParams(max_broken_lines=1)).ok
    nobody = [row(n, client="") for n in range(10)]
    mapping = orders_mapping()
    mapping["tables"]["items"]["filter"] = "sku == 'S9'"  # no item either: nothing would be applied
    refused = check(_batch(tmp_path, nobody), parse_mapping(mapping, "orders.yaml"), KEY, LIMITS, STRICT)
    assert refused.reason == "none of 10 rows is accepted by any table: customer_id: missing value (10)"


def test_the_batch_check_refuses_what_ingest_refuses(tmp_path):
    mapping = parse_mapping(orders_mapping(), "orders.yaml")
    bomb = write(tmp_path / "bomb.csv.gz", gzip.compress(ORDERS_HEADER.encode() + b"\n" + b"0" * (16 * 2**20)))
    refused = check(Batch("drop/orders/bomb.csv.gz", "orders", bomb, "z"), mapping, KEY, LIMITS, STRICT)
    assert refused.reason.startswith("over the limit of 8 MiB") and "drop/orders" not in refused.reason
    empty = write(tmp_path / "empty.csv", b"")
    assert check(Batch("drop/orders/empty.csv", "orders", empty, "e"), mapping, KEY, LIMITS, STRICT).reason.startswith(
        "the file is empty (0 bytes)")


def test_a_parquet_file_that_unpacks_past_the_bound_is_refused(raw_dir):
    frame = pl.DataFrame({"order": ["A1"] * 2_000_000, "sku": "S1", "name": "mug", "qty": 1, "price": 2.5, "when": WHEN,
                          "client": "c", "country": "UK"})
    raw_dir.mkdir()
    frame.write_parquet(raw_dir / "orders.parquet", compression="zstd")
    assert (raw_dir / "orders.parquet").stat().st_size < 2**20
    with pytest.raises(MapwiseError, match=r"orders.parquet: \d+ MiB once unpacked, over the limit of 8 MiB"):
        ingest(raw_dir, [parse_mapping(orders_mapping(read={"pattern": "*.parquet", "format": "parquet"}), "o")], KEY, LIMITS)
