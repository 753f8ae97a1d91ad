"""Flow `pipeline`: every stage of `dvc.yaml` as a task, with params overrides, one run at a time per repository.

    python -m flows.pipeline --set train.max_epochs=3      # run it here (against $PREFECT_API_URL if set)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.exceptions import FailedRun

from flows.artifacts import publish
from flows.stages import failed_on_error, one_at_a_time, run_all
from mapwise.errors import MapwiseError
from mapwise.overrides import params_overridden, restore_interrupted
from mapwise.params import read_params, with_overrides


def run_stages(root: Path, params_file: Path, overrides: dict[str, Any]) -> dict:
    """The stages in DVC's order under the overridden params, then the run's artifacts (the caller holds the slot)."""
    if restore_interrupted(params_file):
        get_run_logger().warning(f"{params_file}: an interrupted run had left overrides in it; restored the original")
    with params_overridden(params_file, overrides) as params:
        runs = run_all(root, params.orchestrate)
    decision = publish(params, runs)
    return {"stages": [r.__dict__ for r in runs], "decision": decision}


@flow(name="pipeline", log_prints=True)
def pipeline(overrides: dict[str, Any] | None = None, params_file: str = "params.yaml") -> dict:
    """Run the pipeline of dvc.yaml; DVC re-runs only what changed, and promotion goes through the gate.

    Args:
        overrides: params.yaml keys to change for this run only, e.g. {"train.max_epochs": 3};
            validated before anything runs, params.yaml is left as it was.
        params_file: the params file, relative to the repository.
    """
    root = Path.cwd()
    path = root / params_file

    def body() -> dict:
        with_overrides(read_params(path), overrides or {})  # a wrong key or value fails here, before any stage
        with one_at_a_time(root):
            return run_stages(root, path, overrides or {})

    return failed_on_error(body)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs, each value read as YAML (3 -> int, [a, b] -> list)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MapwiseError(f"--set {pair}: expected key=value, e.g. train.max_epochs=3")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=pipeline.__doc__.splitlines()[0])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml key for this run (repeatable)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = pipeline(overrides=parse_sets(args.sets), params_file=args.params)
    except (MapwiseError, FailedRun) as err:
        print(f"pipeline: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result.get("decision") or {}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
