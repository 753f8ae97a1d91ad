"""`orchestrate`: the Prefect flows, their triggers and the local stack."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mapwise.params.base import Section


class WarmStartParams(Section):
    """The retrain flow (a batch arrived): fine-tune the champion's architecture from its weights instead of training
    every model from scratch; the scheduled run (`pipeline/scheduled`) still trains every model from scratch."""

    enabled: bool = Field(True, description="false = a batch arriving retrains every model from scratch too")
    max_steps: int = Field(50, ge=1, description="fine-tuning budget in optimizer steps (train.max_steps for the run)")
    val_every_steps: int = Field(25, ge=1, description="validation interval while fine-tuning")
    patience: int = Field(2, ge=1, description="validations without a gain before fine-tuning stops")
    warmup_steps: int = Field(10, ge=1, description="learning-rate warm-up while fine-tuning")


class OrchestrateParams(Section):
    """Prefect flows (`flows/`), their deployments (`deploy/serve_flows.py`) and the local stack (`make up`)."""

    incoming: str = Field("data/incoming", description="drop folder <incoming>/<source>/<file>, or an fsspec URL such as s3://bucket/prefix")
    quarantine_dir: Path = Field(Path("data/rejected"), description="rejected batches, each with <file>.reason.json")
    ledger: Path = Field(Path("data/ledger.jsonl"), description="content hash of every batch seen, and what became of it")
    max_bad_share: float = Field(0.05, ge=0, le=1, description="a batch with a larger share of rows quarantined for a "
                                 "counted reason, in any table, is rejected whole")
    uncounted_reasons: list[str] = Field(["excluded by filter", "customer_id: missing value"], description=(
        "quarantine reasons ('column: reason', matched from the start) that are by design, not damage, and do not "
        "count against max_bad_share: a mapping's filter, records without a customer (guest checkouts)"))
    max_broken_lines: int = Field(0, ge=0, description="records whose structure cannot be parsed (a quote never "
                                  "closed, a wrong number of fields, bytes invalid in the encoding, malformed JSON) "
                                  "a batch may hold; more and it is rejected whole as damaged")
    poll_seconds: float = Field(5, gt=0, description="how often `mapwise watch` lists the drop folder")
    schedule: str | None = Field("0 3 * * 1", description="cron of the scheduled retrain; null = none")
    timezone: str = "UTC"
    record: bool = Field(True, description="record each run that changed something as a DVC experiment (`dvc exp save`): "
                         "the commit its registered model versions point at")
    push: bool = Field(True, description="`dvc push` to the default remote after each run that changed something")
    warm_start: WarmStartParams = WarmStartParams()
    retries: int = Field(2, ge=0, description="retries of a stage that failed for a transient reason")
    retry_delay_seconds: float = Field(10, ge=0, description="first retry delay; it doubles on each retry")
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    mlflow_ui: str = Field("http://127.0.0.1:5000", description="MLflow UI the flow's artifacts link to")
