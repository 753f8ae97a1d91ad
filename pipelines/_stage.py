"""What every stage entry point shares: `--params`, loading them, one-line errors, JSON reports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import yaml

from mapwise.atomic import write_json  # noqa: F401  (the stages' report writer: replaced whole)
from mapwise.errors import MapwiseError
from mapwise.params import Params, load_params
from mapwise.terminal import visible

USER_ERROR = 2  # the input or params are wrong: running again will not help (a crash exits 1)


def run(verb: str, doc: str | None, stage: Callable[[Params], None], argv: list[str] | None = None) -> int:
    """Parse `--params`, load and validate them, run the stage; a MapwiseError is one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(prog=f"python -m pipelines.{verb}", description=doc)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        stage(load_params(args.params))
    except MapwiseError as err:
        print(visible(f"{verb}: {err}"), file=sys.stderr)
        return USER_ERROR
    return 0


def read_canonical(folder: Path, table: str) -> pl.DataFrame:
    """One canonical table; missing or unreadable, it says to run ingest."""
    path = folder / f"{table}.parquet"
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise MapwiseError(f"{path}: cannot read ({type(err).__name__}; run the ingest stage first?)") from None


def read_report(path: Path, stage: str) -> dict:
    """A JSON report an earlier stage wrote; missing, it says which stage to run."""
    try:
        return json.loads(path.read_text())
    except OSError:
        raise MapwiseError(f"{path}: not found; run the {stage} stage first") from None


def lineage(data_dir: Path) -> dict[str, str]:
    """The git commit of the code and the data version (the md5 dvc.lock records for `data_dir`, an output of
    some stage: the split, the canonical tables) a stage works from."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = done.stdout.strip() if done.returncode == 0 else "unknown"
    try:
        stages = yaml.safe_load(Path("dvc.lock").read_text())["stages"]
        data = next(o["md5"] for st in stages.values() for o in st.get("outs", []) if Path(o["path"]) == Path(data_dir))
    except (OSError, KeyError, StopIteration, TypeError, AttributeError):
        data = "unknown"
    return {"git_commit": commit, "data_version": data}
