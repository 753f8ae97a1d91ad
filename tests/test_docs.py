"""The docs site builds strictly, and its generated reference follows the code: every params key, every endpoint."""

from __future__ import annotations

import html
import re
import importlib.util
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from mapwise.params import Params

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    """docs/hooks/reference.py, the module MkDocs loads, imported the same way."""
    spec = importlib.util.spec_from_file_location("mapwise_docs_reference", ROOT / "docs/hooks/reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _page(site: Path, name: str) -> str:
    return html.unescape((site / name / "index.html").read_text(encoding="utf-8"))


def _sections(annotation: object) -> list[type]:
    """The models a field holds as a section: X, or X in X | None (not the values of a map)."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    return [a for a in options if isinstance(a, type) and hasattr(a, "model_fields")]


def _key_paths(model: type, prefix: str = "") -> list[str]:
    """Every key under `model`, through nested sections (not through maps, whose keys are the user's)."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        for sub in _sections(field.annotation):
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                paths += _key_paths(sub, f"{path}.")
    return paths


def test_params_page_follows_the_model(site):
    page = _page(site, "params")
    for section in Params.model_fields:
        assert f'<h2 id="{section}">' in page, f"no heading for params section {section}"
    keys = [p for section, field in Params.model_fields.items()
            for model in _sections(field.annotation) for p in _key_paths(model, f"{section}.")]
    assert "ingest.dask.address" in keys and "train.ranker.trees.learning_rate" in keys  # nested keys are walked
    missing = [k for k in keys if f"<code>{k}</code>" not in page]
    assert not missing, f"params keys missing from the reference: {missing}"


def test_endpoints_page_lists_every_path_of_the_app(site):
    page = _page(site, "endpoints")
    schema = _hook().openapi_schema()
    assert "/recommendations" in schema["paths"]
    for path, operations in schema["paths"].items():
        assert f"<code>{path}</code>" in page, f"endpoint {path} missing"
        for method in operations:
            assert f"{method.upper()} <code>{path}</code>" in page, f"{method.upper()} {path} missing"


def test_mapping_page_lists_every_function_and_contract(site):
    from mapwise.sources.contracts import CONTRACTS
    from mapwise.sources.mapping.expressions import FUNCTIONS

    page = _page(site, "mapping")
    for name in FUNCTIONS:
        assert f"<code>{name}(" in page, f"mapping function {name} missing"
    for table in CONTRACTS:
        assert f'id="{table}"' in page, f"contract {table} missing"


def test_the_drawings_are_built_in_and_follow_the_code(site):
    """The layers and the stage graph are inline SVG drawn from pyproject.toml and dvc.yaml: nothing loads from the
    network when a page is read offline."""
    import yaml

    from conftest import layers_contract, modules_of

    concepts = _page(site, "concepts")
    domains = [m for layer in layers_contract()["layers"][:-1] for m in modules_of(layer) if m != "__main__"]
    drawings = concepts.split('<svg xmlns="http://www.w3.org/2000/svg" role="img"')[1:]
    assert len(drawings) == 2
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        assert f">{stage}</text>" in drawings[0], stage
    for domain in domains:
        assert f">{domain}</text>" in drawings[1], domain
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<script[^>]+src=\"https?://", text), page  # no script from the network
