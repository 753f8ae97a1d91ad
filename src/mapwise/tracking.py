"""MLflow tracking: the embedded SQLite default, or any server named by $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mapwise.params import TrackingParams

_SQLITE = "sqlite:///"
FLOW_RUN_ENV, FLOW_RUN_URL_ENV = "MAPWISE_FLOW_RUN_ID", "MAPWISE_FLOW_RUN_URL"


def tracking_uri(p: TrackingParams, root: Path | None = None) -> str:
    """$MLFLOW_TRACKING_URI, else the params' URI with a relative SQLite path made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or p.uri
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        uri = _SQLITE + str(((root or Path.cwd()) / uri.removeprefix(_SQLITE)).resolve())
    return uri


@contextmanager
def fluent_at(uri: str) -> Iterator[None]:
    """MLflow's fluent API (`mlflow.start_run`, `mlflow.onnx.log_model`) pointed at `uri` for the block.

    `mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI (and the registry's variable) in this process, which
    every process it starts afterwards would inherit and prefer to its own params: the variables are put back as
    they were when the block ends.
    """
    import mlflow

    saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def artifact_location(root: Path | None = None) -> str:
    """Where the local default keeps run artifacts."""
    return ((root or Path.cwd()) / "mlartifacts").resolve().as_uri()


def flow_run_tags() -> dict[str, str]:
    """The Prefect flow run a stage runs under (the flows set it for the stages they start), as MLflow tags."""
    tags = {"prefect.flow_run_id": os.environ.get(FLOW_RUN_ENV), "prefect.flow_run_url": os.environ.get(FLOW_RUN_URL_ENV)}
    return {k: v for k, v in tags.items() if v}


def log_run(p: TrackingParams, *, run_name: str, tags: dict[str, str], params: dict, metrics: dict[str, float]) -> str:
    """One finished MLflow run with these params and metrics (non-finite ones left out); returns its id."""
    import math

    from mlflow import MlflowClient

    uri = tracking_uri(p)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.get_experiment_by_name(p.experiment)
    experiment = found.experiment_id if found else client.create_experiment(p.experiment, artifact_location=artifact_location())
    run = client.create_run(experiment, run_name=run_name, tags={**tags, **flow_run_tags()})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value)[:500])
    for key, value in metrics.items():
        if value is not None and math.isfinite(value):
            client.log_metric(run.info.run_id, key, float(value))
    client.set_terminated(run.info.run_id)
    return run.info.run_id
