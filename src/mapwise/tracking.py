"""MLflow tracking: the embedded SQLite default, or any server named by $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
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


def artifact_location(root: Path | None = None) -> str:
    """Where the local default keeps run artifacts."""
    return ((root or Path.cwd()) / "mlartifacts").resolve().as_uri()


def mlflow_logger(p: TrackingParams, *, run_name: str, tags: dict[str, str]):
    """A Lightning MLFlowLogger for one run (Lightning logs from rank 0 only under DDP)."""
    from lightning.pytorch.loggers import MLFlowLogger  # imported here: serving never needs Lightning

    return MLFlowLogger(
        experiment_name=p.experiment,
        run_name=run_name,
        tracking_uri=tracking_uri(p),
        tags=tags,
        artifact_location=artifact_location(),
    )


def flow_run_tags() -> dict[str, str]:
    """The Prefect flow run a stage runs under (the flows set it for the stages they start), as MLflow tags."""
    tags = {"prefect.flow_run_id": os.environ.get(FLOW_RUN_ENV), "prefect.flow_run_url": os.environ.get(FLOW_RUN_URL_ENV)}
    return {k: v for k, v in tags.items() if v}
