"""Each DVC stage declares the code it runs: every module of a domain that `pipelines/<verb>.py` imports, directly or
not, lies under one of the stage's deps, so a change to it re-runs the stage (and a moved file is followed).

The core layer (params, columns, errors, ...: the last layer of the import contract) is left out: the params a stage
reads are declared one by one, and the rest does not shape outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest
import yaml

from conftest import layers_contract, modules_of

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def core() -> set[str]:
    return set(modules_of(layers_contract()["layers"][-1]))


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("mapwise", "pipelines", include_external_packages=False, cache_dir=None)


def source_file(module: str) -> Path:
    parts = module.split(".")
    base = ROOT / ("src" if parts[0] == "mapwise" else "") / Path(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_declares_the_code_it_imports(graph, stage):
    entry = re.match(r"python -m (pipelines\.\w+)", STAGES[stage]["cmd"])
    assert entry, f"{stage}: its cmd is not `python -m pipelines.<verb>`"
    deps = [ROOT / d.split("#")[0].strip() for d in STAGES[stage]["deps"] if not d.startswith("${")]
    missing = [d for d in deps if not d.exists()]
    assert not missing, f"{stage}: deps that do not exist: {missing}"
    skipped = core()
    imported = {entry[1]} | graph.find_upstream_modules(entry[1])
    undeclared = sorted(
        str(source_file(m).relative_to(ROOT)) for m in imported
        if not (m.startswith("mapwise") and (m.count(".") == 0 or m.split(".")[1] in skipped))
        and source_file(m).name != "__init__.py"
        and not any(source_file(m) == d or d in source_file(m).parents for d in deps)
    )
    assert not undeclared, f"{stage} runs code its deps do not name: {undeclared}"
