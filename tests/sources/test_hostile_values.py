"""Hostile values and hostile config, generated here (issue 26): a value the contract cannot represent is its row's
problem, never the file's; one person has one identity however their id is typed; YAML and mappings are read
within bounds; JSON lines are read as strictly as the service reads a body; no raw id in any message."""

from __future__ import annotations

import json
import random
import unicodedata

import polars as pl
import pytest
from test_hostile_files import LIMITS, ingest_file, no_raw_id_anywhere, quarantined_lines, raw_id, row

from conftest import KEY, ORDERS_HEADER, assert_balanced, dump_mapping, orders_mapping, write
from mapwise import columns as c
from mapwise.bounded_yaml import MAX_BYTES, MAX_DEPTH, load_yaml
from mapwise.errors import MapwiseError, engine_problem
from mapwise.params import load_params
from mapwise.privacy.pseudonym import legacy_pseudonyms, normalise_id, pseudonym
from mapwise.sources.ingest import FUTURE, PAST, ingest
from mapwise.sources.mapping.load import load_mapping, parse_mapping
from mapwise.sources.mapping.readers import INVALID_JSON

# -- 1. a value outside what the contract can represent ---------------------------------------


def extreme_times(rng: random.Random) -> list[tuple[str, str]]:
    """(timestamp text, expected reason) beyond Python's datetime range and at its edges."""
    future = [f"+{y}-01-01 00:00:00" for y in (10000, 12345, 99999, 200000)] + ["9999-12-31 23:59:59"]
    past = ["0001-01-01 00:00:00", "1000-06-15 12:00:00"]
    chosen = [(t, FUTURE) for t in future] + [(t, PAST) for t in past]
    rng.shuffle(chosen)
    return chosen


@pytest.mark.parametrize("seed", range(3))
def test_a_timestamp_no_contract_can_hold_is_its_rows_problem(tmp_path, seed):
    rng = random.Random(seed)
    extremes = extreme_times(rng)
    lines, expected = [ORDERS_HEADER], {}
    for n in range(60):
        if rng.random() < 0.3 and extremes:
            when, reason = extremes.pop()
            expected[len(lines) + 1] = reason
            lines.append(row(n, when=when))
        else:
            lines.append(row(n))
    result = ingest_file(tmp_path / "raw", ("\n".join(lines) + "\n").encode())
    assert_balanced(result)
    events = quarantined_lines(result)
    assert {line: events.get(line) for line in expected} == expected
    assert result.tables[c.EVENTS].height == 60 - len(expected)
    no_raw_id_anywhere(result)


def test_the_whole_file_is_not_refused_when_every_row_is_out_of_range(tmp_path):
    content = "\n".join([ORDERS_HEADER, *(row(n, when="+10000-01-01 00:00:00") for n in range(5))]) + "\n"
    result = ingest_file(tmp_path / "raw", content.encode())
    assert_balanced(result)
    assert set(quarantined_lines(result).values()) == {FUTURE} and result.tables[c.EVENTS].height == 0


# -- 3. one person, one identity ---------------------------------------------------------------

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def variants(base: str, rng: random.Random) -> list[str]:
    """Ways the same id arrives: decomposed, fullwidth, with zero-width characters, a BOM, surrounding spaces."""
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in base)
    nfd = unicodedata.normalize("NFD", base)
    at = rng.randrange(1, len(base))
    return [base, nfd, fullwidth, base[:at] + rng.choice(ZERO_WIDTH) + base[at:], "\ufeff" + base,
            f" {base}\u3000", f"\t{fullwidth} "]


@pytest.mark.parametrize("seed", range(4))
def test_every_spelling_of_one_id_is_one_customer(tmp_path, seed):
    rng = random.Random(seed)
    people = ["café", "ABC123", "José-María", "Zoë", "alice"]
    lines, who = [ORDERS_HEADER], {}
    for n in range(70):
        person = rng.choice(people)
        spelled = rng.choice(variants(unicodedata.normalize("NFC", person), rng))
        who[n] = person
        lines.append(row(n, client=f'"{spelled}"'))
    result = ingest_file(tmp_path / "raw", ("\n".join(lines) + "\n").encode("utf-8"))
    assert_balanced(result)
    events = result.tables[c.EVENTS]
    assert events.height == 70
    by_person = {p: {pseudonym(p, KEY)} for p in people}
    assert set(events[c.CUSTOMER_ID]) == set().union(*(by_person[p] for p in set(who.values())))
    assert result.tables[c.CUSTOMERS].height == len(set(who.values()))


def test_the_one_rule_is_idempotent_and_leaves_plain_ids_alone():
    rng = random.Random(7)
    for _ in range(500):
        text = "".join(rng.choice("aZ09 -_.é\u0301\u200b\ufeffＡ１\u3000\t") for _ in range(rng.randrange(1, 12)))
        once = normalise_id(text)
        assert normalise_id(once) == once
        assert once == once.strip() and not any(z in once for z in ZERO_WIDTH)
    assert normalise_id("  17850 ") == "17850" and pseudonym("17850", KEY) == pseudonym(" 17850", KEY)


def test_a_customer_forgotten_before_ids_were_normalised_stays_forgotten(tmp_path):
    spelled = "ＡＢＣ１２３"  # forgotten under the old rule: its pseudonym then was HMAC of the fullwidth text
    old = legacy_pseudonyms([spelled], KEY)
    assert old and old[0] != pseudonym(spelled, KEY)
    content = "\n".join([ORDERS_HEADER, row(1, client=spelled), row(2, client="ABC123"), row(3, client="other")])
    write(tmp_path / "raw/orders.csv", content + "\n")
    result = ingest(tmp_path / "raw", [parse_mapping(orders_mapping(), "orders.yaml")], KEY, LIMITS,
                    forgotten=frozenset(old))
    counts = result.report["sources"]["orders"]["tables"]["events"]
    assert counts["forgotten"] == 2 and counts["accepted"] == 1 and counts["read"] == 3  # both spellings left out
    assert set(result.tables[c.EVENTS][c.CUSTOMER_ID]) == {pseudonym("other", KEY)}


# -- 4. no raw id in a message ------------------------------------------------------------------


def test_an_id_column_of_the_wrong_kind_is_refused_without_its_values(tmp_path):
    ids = [{"a": None, "b": raw_id(n)} for n in range(3)]
    frame = pl.DataFrame({"order": ["A1", "A2", "A3"], "sku": ["S1"] * 3, "name": ["Mug"] * 3, "qty": ["1"] * 3,
                          "price": ["2"] * 3, "when": ["2024-01-02 10:00:00"] * 3, "client": ids, "country": ["UK"] * 3})
    frame.write_parquet(tmp_path / "orders.parquet")
    mapping = parse_mapping(orders_mapping(read={"pattern": "orders*.parquet", "format": "parquet"}), "orders.yaml")
    with pytest.raises(MapwiseError) as err:
        ingest(tmp_path, [mapping], KEY, LIMITS)
    assert "RAWID" not in str(err.value) and "cannot be applied" in str(err.value)


def test_an_engine_error_loses_the_values_it_lists():
    message = ("conversion from `str` to `i64` failed in column 'client' for 2 out of 9 values: "
               '["RAWID00001Q", "RAWID00002Q"]')
    assert engine_problem(ValueError(message)) == ("conversion from `str` to `i64` failed in column 'client' "
                                                   "for 2 out of 9 values (not shown)")


# -- 5 and 10. YAML within bounds ----------------------------------------------------------------


def deep(kind: str, depth: int) -> str:
    if kind == "flow":
        return "read: " + "[" * depth + "1" + "]" * depth + "\n"
    if kind == "block":
        return "read:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, depth)) + "  " * depth + "x: 1\n"
    return "read: " + "{a: " * depth + "1" + "}" * depth + "\n"


@pytest.mark.parametrize("kind", ["flow", "block", "map"])
def test_deep_yaml_is_one_line_not_a_crash(tmp_path, kind):
    path = write(tmp_path / "orders.yaml", deep(kind, 500))
    with pytest.raises(MapwiseError, match=f"nested more than {MAX_DEPTH} levels deep"):
        load_mapping(path)
    params = write(tmp_path / "params.yaml", deep(kind, 500))
    with pytest.raises(MapwiseError, match=f"{params}: nested more than"):
        load_params(params)


def test_aliases_that_expand_past_the_bound_are_refused():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(MapwiseError, match="once its aliases are expanded"):
        load_yaml(laughs, "laughs.yaml")
    assert load_yaml("a: &a [1, 2]\nb: *a\n", "ok.yaml") == {"a": [1, 2], "b": [1, 2]}  # aliases within the bound


def test_a_mapping_larger_than_the_bound_is_refused_before_parsing(tmp_path):
    path = write(tmp_path / "orders.yaml", "name: orders\n" + "# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(MapwiseError, match="larger than 1,024 KiB"):
        load_mapping(path)


def test_the_cli_reports_deep_yaml_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from mapwise.cli import app

    path = write(tmp_path / "orders.yaml", deep("flow", 500))
    for args in (["mapping", "check", str(path)], ["params", "check", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.count("\n") == 1 and "nested more than" in result.output


# -- 6. a pattern ingest cannot glob -------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["/etc/passwd", "/tmp/*.csv", "~/orders.csv", "", "C:\\data\\*.csv"])
def test_a_pattern_ingest_cannot_glob_fails_the_check(tmp_path, pattern):
    path = dump_mapping(tmp_path / "orders.yaml", orders_mapping(read={"pattern": pattern}))
    with pytest.raises(MapwiseError, match="read.pattern"):
        load_mapping(path)


# -- 9. JSON lines as strictly as a request body ----------------------------------------------


def record(n: int, **fields) -> dict:
    return {"order": f"A{n}", "sku": "S1", "name": "Mug", "qty": "1", "price": "2", "when": "2024-01-02 10:00:00",
            "client": raw_id(n), "country": "UK", **fields}


@pytest.mark.parametrize("seed", range(3))
def test_a_json_line_with_a_key_twice_is_refused_not_resolved(tmp_path, seed):
    rng = random.Random(seed)
    lines, bad = [], {}
    for n in range(40):
        text = json.dumps(record(n))
        roll = rng.random()
        if roll < 0.15:  # a key twice, the second value different
            key = rng.choice(["sku", "client", "qty"])
            text = text[:-1] + f', "{key}": "other"}}'
            bad[n + 1] = "duplicate key"
        elif roll < 0.25:
            text = text.replace('"1"', rng.choice(["NaN", "Infinity", "-Infinity"]), 1)
            bad[n + 1] = "is not JSON"
        lines.append(text)
    result = ingest_file(tmp_path / "raw", ("\n".join(lines) + "\n").encode(), name="orders.jsonl",
                         read={"pattern": "orders*.jsonl", "format": "jsonl"})
    assert_balanced(result)
    events = quarantined_lines(result)
    for line, why in bad.items():
        assert events[line].startswith(INVALID_JSON) and why in events[line], (line, events.get(line))
    assert result.tables[c.EVENTS].height == 40 - len(bad)
    no_raw_id_anywhere(result)
