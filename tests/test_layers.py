"""The house's import rules (pyproject.toml, [tool.importlinter]) hold, and they would catch a back-import.

Read bottom up: core <- bundles <- privacy <- sources <- profiles <- synth <- recommend | targeting <- serving
<- cli; flows -> pipelines -> mapwise; no loops between siblings at any depth; serving without torch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import layers_contract, modules_of

ROOT = Path(__file__).resolve().parents[1]


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the packages under `root` (its src/mapwise, pipelines, flows), without a cache."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         f"sys.exit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"],
        cwd=root, env={"PYTHONPATH": f"{root / 'src'}:{root}", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )


def test_the_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_top_level_part_of_mapwise_is_in_a_layer():
    """`exhaustive = true` refuses a new domain that no layer names; check the config says so."""
    layers = layers_contract()
    assert layers["exhaustive"] is True
    named = {module for layer in layers["layers"] for module in modules_of(layer)}
    present = {p.stem for p in (ROOT / "src/mapwise").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert present == named


# The back-imports the layers removed (issue 25), each as a line added to one module of a scratch copy.
BACK_IMPORTS = {
    "serving needs torch networks": ("serving/retrieval.py", "from mapwise.recommend.models import networks"),
    "a family imports serving": ("recommend/models/warm_start.py", "from mapwise.serving import recommendations"),
    "targeting imports serving": ("targeting/gate.py", "from mapwise.serving import targeting"),
    "privacy imports targeting": ("privacy/forget.py", "from mapwise.targeting import fitting"),
    "the bundle format imports a family": ("bundles/format.py", "from mapwise.recommend import split"),
    "a loop inside a domain": ("recommend/models/objectives.py", "from mapwise.recommend.models import networks"),
    "a loop inside sources": ("sources/mapping/spec.py", "from mapwise.sources.mapping import apply"),
    "mapwise imports a stage": ("recommend/evaluate.py", "import pipelines.evaluate"),
    "mapwise imports Prefect": ("profiles/build.py", "import prefect"),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A copy of the code and the contracts to break."""
    root = tmp_path_factory.mktemp("house")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("src/mapwise", "pipelines", "flows"):
        shutil.copytree(ROOT / part, root / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


@pytest.mark.parametrize("case", sorted(BACK_IMPORTS))
def test_a_back_import_breaks_a_contract(scratch, case):
    module, line = BACK_IMPORTS[case]
    path = scratch / "src/mapwise" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # noqa\n")
        result = lint(scratch)
    finally:
        path.write_text(original)
    assert result.returncode != 0, f"{case}: no contract broke\n{result.stdout}"
    assert "BROKEN" in result.stdout
