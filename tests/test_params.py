from pathlib import Path

import pytest
import yaml

from mapwise.errors import MapwiseError
from mapwise.params import load_params, parse_params

from conftest import REPO


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.ingest.sources == ["online_retail", "hillstrom", "bank_marketing", "online_shoppers"]
    for name in params.ingest.sources:
        assert (REPO / params.ingest.mappings_dir / f"{name}.yaml").exists()


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_unknown_key_is_named():
    data = _params()
    data["ingest"]["raw_dirr"] = "x"
    with pytest.raises(MapwiseError, match=r"^params.yaml: ingest.raw_dirr: unknown key$"):
        parse_params(data)


def test_wrong_type_is_named():
    data = _params()
    data["ingest"]["sources"] = "online_retail"
    with pytest.raises(MapwiseError, match=r"ingest.sources: Input should be a valid list"):
        parse_params(data)


def test_unknown_section_is_named():
    with pytest.raises(MapwiseError, match=r"trainn: unknown key"):
        parse_params({**_params(), "trainn": {}})


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(MapwiseError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(MapwiseError, match="invalid YAML"):
        load_params(bad)
