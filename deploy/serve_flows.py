"""Serve mapwise's Prefect deployments from this repository (`make up` runs this).

    PREFECT_API_URL=http://127.0.0.1:4200/api python deploy/serve_flows.py [--params params.yaml]

Deployments, all running in this process's folder, one run at a time per repository:
- `pipeline/manual`: run from the UI ("Run" > "Custom run": `overrides` is a form, one group per
  section), or `prefect deployment run pipeline/manual -p 'overrides={"train": {"max_epochs": 2}}'`.
- `pipeline/scheduled`: the same flow on `orchestrate.schedule` (cron, `orchestrate.timezone`).
- `retrain/on-arrival`: started by every `mapwise.batch.arrived` event (`mapwise watch`, `mapwise notify`).

Beyond one machine: point `PREFECT_API_URL` at a remote Prefect server (self-hosted or Prefect Cloud,
with `PREFECT_API_KEY`) and run this script on the machine that holds the repository. To spread
tasks over a cluster, install `prefect-dask` (or `prefect-ray`) and give the flows a task runner,
e.g. `pipeline.with_options(task_runner=DaskTaskRunner(address="tcp://scheduler:8786"))`; DVC
still runs each stage, so the pipeline's own parallelism is across models inside `train`
(Lightning DDP: `train.strategy`, `train.devices`, `train.num_nodes`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from flows.events import arrival_trigger
from flows.pipeline import pipeline
from flows.retrain import retrain
from mapwise.params import Params, load_params


def deployments(params: Params, params_file: str = "params.yaml") -> list:
    """The deployments this repository serves, configured from params."""
    p = params.orchestrate
    fixed = {"params_file": params_file}
    served = [
        pipeline.to_deployment(name="manual", parameters={"overrides": {}, **fixed}, tags=["mapwise"],
                               description="The whole pipeline; set `overrides` to change params for one run "
                                           "(recorded as a DVC experiment; the workspace comes back as it was)."),
        retrain.to_deployment(name="on-arrival", triggers=[arrival_trigger(params_file)], tags=["mapwise"],
                              description="Started by each `mapwise.batch.arrived` event: check, add, re-run, gate."),
    ]
    if p.schedule:
        served.append(pipeline.to_deployment(name="scheduled", schedules=[Cron(p.schedule, timezone=p.timezone)],
                                             parameters={"overrides": {}, **fixed}, tags=["mapwise"],
                                             description=f"The pipeline on cron '{p.schedule}' ({p.timezone})."))
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    args = parser.parse_args()
    serve(*deployments(load_params(Path(args.params)), args.params))


if __name__ == "__main__":
    main()
