import pytest
from typer.testing import CliRunner

from mapwise.cli import app

from conftest import REPO, dump_mapping, orders_mapping

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [[], ["mapping"], ["mapping", "check"], ["mapping", "preview"], ["contracts"], ["report"], ["report", "ingest"],
     ["report", "evaluate"], ["profile"], ["profile", "show"], ["tune"], ["params"], ["params", "check"], ["forget"],
     ["synth"], ["privacy"], ["privacy", "scan"], ["score"], ["target"]],
    ids=lambda c: " ".join(c) or "mapwise",
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_mapping_check_ok_and_error(tmp_path):
    ok = runner.invoke(app, ["mapping", "check", str(REPO / "mappings" / "hillstrom.yaml")])
    assert ok.exit_code == 0 and "ok (hillstrom -> customer_traits, campaign_exposures, customers)" in ok.output
    bad = orders_mapping()
    bad["tables"]["events"]["columns"]["colour"] = "x"
    path = dump_mapping(tmp_path / "orders.yaml", bad)
    result = runner.invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "unknown column 'colour'" in result.stderr
    assert "Traceback" not in result.output


def test_mapping_preview_shows_accepted_and_rejected(tmp_path):
    mapping = dump_mapping(tmp_path / "orders.yaml", orders_mapping())
    data = tmp_path / "orders.csv"
    data.write_text("order,sku,name,qty,price,when,client,country\nA1,S1,Mug,2,3.5,2024-01-02 10:00:00,c1,UK\n"
                    "A2,S1,Mug,-1,3.5,2024-01-02 10:00:00,c2,UK\n")
    result = runner.invoke(app, ["mapping", "preview", str(mapping), str(data)])
    assert result.exit_code == 0, result.output
    assert "events: 1 accepted, 1 rejected of 2" in result.output
    assert "greater_than(0)" in result.output


def test_contracts_and_params():
    result = runner.invoke(app, ["contracts", "events"])
    assert result.exit_code == 0 and "event_type" in result.output
    assert runner.invoke(app, ["contracts", "nope"]).exit_code == 1
    result = runner.invoke(app, ["params", "check", str(REPO / "params.yaml")])
    assert result.exit_code == 0 and "ok" in result.output


def test_forget_without_a_customer_or_a_key_says_so_in_one_line(tmp_path, monkeypatch):
    import shutil

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_HMAC_KEY", raising=False)
    nothing = runner.invoke(app, ["forget"])
    assert nothing.exit_code == 1 and "no customer to forget" in nothing.output
    keyless = runner.invoke(app, ["forget", "17850"])
    assert keyless.exit_code == 1 and "no pseudonymisation key" in keyless.output
    assert not (tmp_path / "data/privacy/forget.jsonl").exists(), "nothing logged without the key"
