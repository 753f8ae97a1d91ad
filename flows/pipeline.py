"""Flow `pipeline`: every stage of `dvc.yaml` as a task, with params overrides, one run at a time per repository.

    python -m flows.pipeline --set train.max_epochs=3      # run it here (against $PREFECT_API_URL if set)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import FailedRun
from prefect.runtime import flow_run
from pydantic import ValidationError

from flows.artifacts import publish
from flows.record import point_versions_at, push, record_run
from flows.stages import checkout, failed_on_error, one_at_a_time, run_all, stage_graph
from mapwise.bounded_yaml import load_yaml
from mapwise.errors import MapwiseError, describe
from mapwise.overridable import Overrides
from mapwise.overrides import params_overridden, restore_interrupted
from mapwise.params import read_params, with_overrides


def _experiment_name() -> str:
    """The DVC experiment a run is recorded as: the flow, the run's name and the start of its id."""
    return f"{flow_run.get_flow_name()}-{flow_run.get_name()}-{(flow_run.get_id() or '')[:6]}"


def run_stages(root: Path, params_file: Path, overrides: dict[str, Any], keep_outputs: bool = False) -> dict:
    """The stages in DVC's order under the overridden params, then record, push and publish (the caller holds the slot).

    A run that changed something is recorded as a DVC experiment and pushed; the model version it registered is
    tagged with that commit. With overrides, the workspace then goes back to what it was before the run: params,
    dvc.lock, reports and cached outputs (the run lives on as its experiment: `dvc exp apply <name>`).
    `keep_outputs` (a warm-start retrain): only params.yaml goes back; dvc.lock, reports and outputs stay as the run
    left them, so `dvc status` names the stages whose params differ and the next plain run brings them back.
    """
    if restore_interrupted(params_file):
        get_run_logger().warning(f"{params_file}: an interrupted override run had left its changes; put the workspace back")
        checkout(root)
    name, graph = _experiment_name(), stage_graph(root)
    try:
        keep = [] if keep_outputs else [root / "dvc.lock", *graph.all_uncached()]
        with params_overridden(params_file, overrides, keep) as params:
            runs = run_all(root, params.orchestrate, graph)
            recorded = version = None
            if any(r.changed for r in runs):
                p = params.orchestrate
                if p.record:
                    recorded = record_run(str(root), name, f"mapwise {name}: overrides {json.dumps(overrides)}", params,
                                          graph)
                if recorded:
                    version = point_versions_at(params, recorded, any(r.stage == "register" and r.changed for r in runs))
                if p.push:
                    push(str(root))
            decision = publish(params, runs, recorded, version)
    finally:
        if overrides and not keep_outputs:
            checkout(root)
    return {"stages": [r.as_dict() for r in runs], "decision": decision,
            "recorded": recorded and {"experiment": recorded.name, "ref": recorded.ref, "commit": recorded.commit}}


def dotted(overrides: Overrides | dict[str, Any] | None) -> dict[str, Any]:
    """The params a run changes, as `{"train.max_epochs": 3}`; a wrong key or value fails in one line naming it."""
    if isinstance(overrides, Overrides):
        return overrides.dotted()
    try:
        return Overrides.model_validate(overrides or {}).dotted()
    except ValidationError as err:
        raise MapwiseError(describe(err, Overrides, "overrides")) from None


@flow(name="pipeline", log_prints=True, validate_parameters=False)  # overrides are checked in the run: one line, no traceback
def pipeline(overrides: Overrides | None = None, params_file: str = "params.yaml") -> dict:
    """Run the pipeline of dvc.yaml; DVC re-runs only what changed, and promotion goes through the gate.

    Args:
        overrides: params to change for this run only (empty = as in params.yaml); also as dotted keys,
            {"train.max_epochs": 3}. Checked before anything runs; the run is recorded as a DVC experiment
            and the workspace comes back as it was.
        params_file: the params file, relative to the repository.
    """
    root = Path.cwd()
    path = root / params_file

    def body() -> dict:
        changes = dotted(overrides)
        with_overrides(read_params(path), changes)  # a value that breaks the params as a whole fails here, before any stage
        with one_at_a_time(root):
            return run_stages(root, path, changes)

    return failed_on_error(body)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs, each value read as YAML (3 -> int, [a, b] -> list)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MapwiseError(f"--set {pair}: expected key=value, e.g. train.max_epochs=3")
        overrides[key.strip()] = load_yaml(value, f"--set {key.strip()}")
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
