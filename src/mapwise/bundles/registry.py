"""The MLflow model registry: bundles become versions; aliases `challenger` and `champion` mark their roles.

Every champion change (promotion, forced promotion, rollback) and every refusal is recorded as an
MLflow run tagged `mapwise.stage=promote` with the figures, and on the version's tags. The registered
model's tag `mapwise.champion_history` lists the champions in order, which is what rollback follows.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mapwise.bundles.format import EXTRA_FILES, METADATA_FILE, MODEL_FILE, OPTIONAL_FILES, bundle_digest, bundle_files
from mapwise.errors import MapwiseError
from mapwise.params import TrackingParams
from mapwise.tracking import artifact_location, flow_run_tags, fluent_at, tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"
RETRAIN_TAG = "mapwise.retrain_required"  # a version trained on data of customers since forgotten: its forget requests


def forgotten_in(c: MlflowClient, model_name: str, champion: str | None, challenger: str) -> str | None:
    """Why the challenger must replace the champion regardless of quality (the champion was trained on customers
    since forgotten, the challenger was not), or None."""
    if champion is None:
        return None
    requests = c.get_model_version(model_name, champion).tags.get(RETRAIN_TAG)
    if not requests or c.get_model_version(model_name, challenger).tags.get(RETRAIN_TAG):
        return None
    return (f"the champion (version {champion}) was trained on data of customers since forgotten (requests "
            f"{requests}); version {challenger} was not: replaced without a quality gate")
HISTORY_TAG = "mapwise.champion_history"
_ONNX_REQUIREMENTS = ["onnxruntime", "onnx"]

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def client(p: TrackingParams) -> MlflowClient:
    """A client for the tracking server and registry the params name (one store for both)."""
    return client_at(tracking_uri(p))


def client_at(uri: str) -> MlflowClient:
    """A client for the tracking server and registry at `uri`."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(c: MlflowClient, name: str) -> str:
    found = c.get_experiment_by_name(name)
    return found.experiment_id if found else c.create_experiment(name, artifact_location=artifact_location())


@dataclass
class Decision:
    """One gate decision (or forced promotion, or rollback), with the figures behind it."""

    action: str  # promote | refuse | keep | force | rollback
    model_name: str
    challenger: str | None
    champion_before: str | None
    champion_after: str | None
    reason: str
    figures: dict = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run that records it, once applied

    @property
    def promoted(self) -> bool:
        return self.champion_after != self.champion_before

    def as_dict(self) -> dict:
        return {**asdict(self), "promoted": self.promoted}


def register_bundle(p: TrackingParams, model_name: str, folder: Path, served: dict | None = None) -> tuple[str, bool]:
    """Register the bundle as a new version (alias `challenger`); the same bundle again reuses its version.

    `served` (else the bundle metadata's): what serves, whether it is a baseline and why, kept as `served*` tags
    (set anew on a reused version: the same bundle can be chosen for another reason)."""
    c = client(p)
    digest = bundle_digest(folder)
    try:
        c.get_registered_model(model_name)
    except MlflowException:
        c.create_registered_model(model_name, description="mapwise sequence recommender (ONNX bundle: see metadata.json)")
    for v in c.search_model_versions(f"name='{model_name}'"):
        if v.tags.get("bundle_digest") == digest:
            for key, value in served_tags(served).items():
                c.set_model_version_tag(model_name, v.version, key, value)
            c.set_registered_model_alias(model_name, CHALLENGER, v.version)
            return str(v.version), False
    import onnx

    files = bundle_files(folder)
    metadata = json.loads(files[METADATA_FILE].read_text())
    lineage = metadata.get("lineage", {})
    run_id = lineage.get("train_run_id")
    if run_id:
        try:
            c.get_run(run_id)
        except MlflowException:
            run_id = None  # trained against another tracking store: record the version in a run of its own
    start = {"run_id": run_id} if run_id else {"experiment_id": _experiment_id(c, p.experiment),
                                                "run_name": f"register {metadata['model']}"}
    with fluent_at(tracking_uri(p)), _quiet(), tempfile.TemporaryDirectory() as tmp, mlflow.start_run(**start) as run:
        extras = [str(shutil.copy(files[name], Path(tmp) / name)) for name in (*EXTRA_FILES, *OPTIONAL_FILES)
                  if name in files]
        mlflow.log_metrics(_flat(metadata.get("metrics", {}).get("test", {}), "test."))
        info = mlflow.onnx.log_model(
            onnx.load(str(files[MODEL_FILE])), name="model", extra_files=extras, pip_requirements=_ONNX_REQUIREMENTS,
            onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
        )
        tags = {
            "mapwise.stage": "register", "model": metadata["model"], "bundle_digest": digest,
            "git_commit": lineage.get("git_commit", "unknown"), "data_version": lineage.get("data_version", "unknown"),
            "train_run_id": lineage.get("train_run_id") or "unknown",
            "parity": "passed" if metadata.get("parity", {}).get("passed") else "failed",
            "val_ndcg_at_10": str(metadata.get("metrics", {}).get("validation", {}).get("ndcg@10")),
            **served_tags(served or metadata.get("served")), **flow_run_tags(),
        }
        version = c.create_model_version(model_name, info.model_uri, run_id=run.info.run_id, tags=tags,
                                         model_id=info.model_id).version
    c.set_registered_model_alias(model_name, CHALLENGER, version)
    return str(version), True


SERVED, SERVED_BASELINE, SERVED_REASON, BEATS_BASELINE = "served", "served.baseline", "served.reason", "served.beats_baseline"


def served_tags(served: dict | None) -> dict[str, str]:
    """`served` (what serves, whether a baseline, why; for a learned recommender whether it beat the best baseline)
    as version tags; none when not given."""
    if not served:
        return {}
    tags = {SERVED: served["model"], SERVED_BASELINE: str(bool(served.get("baseline"))).lower(),
            SERVED_REASON: served["reason"][:500]}
    if "beats_baseline" in served:
        tags[BEATS_BASELINE] = str(bool(served["beats_baseline"])).lower()
    return tags


def alias_version(c: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None."""
    try:
        return str(c.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def versions(p: TrackingParams, model_name: str) -> list[dict]:
    """Every version, newest first, with its aliases and tags."""
    c = client(p)
    try:
        registered = c.get_registered_model(model_name)
    except MlflowException:
        raise MapwiseError(f"no registered model '{model_name}' at {tracking_uri(p)}; run `dvc repro` first") from None
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    found = c.search_model_versions(f"name='{model_name}'")
    return [
        {"version": str(v.version), "aliases": sorted(aliases.get(str(v.version), [])), "created": v.creation_timestamp, "tags": dict(v.tags),
         "run_id": v.run_id, "source": v.source}
        for v in sorted(found, key=lambda v: int(v.version), reverse=True)
    ]


def download(uri: str, model_name: str, version: str, cache_dir: Path) -> Path:
    """The version's files (registry at `uri`) in a local folder, downloaded once for every process sharing `cache_dir`.

    The folder is named by the version's source too: version numbers repeat across registries. It appears
    whole or not at all: one process at a time (a lock per version) downloads into a temporary folder of
    its own and renames it into place; the others, once they get the lock, find it there.
    """
    source = client_at(uri).get_model_version(model_name, version).source
    key = hashlib.sha256(f"{uri}|{source}".encode()).hexdigest()[:12]
    folder = cache_dir / model_name / f"{version}-{key}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder.with_name(f".{folder.name}.lock")):
        if not folder.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
            try:
                with _quiet():
                    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}",
                                                        dst_path=str(tmp), tracking_uri=uri, registry_uri=uri)
                tmp.rename(folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # left only by a failed download
    return folder


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on this file (between processes and between threads) while the block runs."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def champion_history(c: MlflowClient, model_name: str) -> list[str]:
    return json.loads(c.get_registered_model(model_name).tags.get(HISTORY_TAG, "[]"))


def apply(p: TrackingParams, decision: Decision) -> Decision:
    """Carry out a decision (move `champion` if it says so) and record it in MLflow."""
    c = client(p)
    name = decision.model_name
    if decision.champion_after and decision.promoted:
        c.set_registered_model_alias(name, CHAMPION, decision.champion_after)
        history = champion_history(c, name)
        history = history[:-1] if decision.action == "rollback" else [*history, decision.champion_after]
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    when = datetime.now(UTC).isoformat(timespec="seconds")
    if decision.challenger:
        c.set_model_version_tag(name, decision.challenger, "gate.decision", decision.action)
        c.set_model_version_tag(name, decision.challenger, "gate.reason", decision.reason[:500])
        c.set_model_version_tag(name, decision.challenger, "gate.at", when)
    with _quiet():
        run = c.create_run(_experiment_id(c, p.experiment), run_name=f"{decision.action} {name}", tags={
            "mapwise.stage": "promote", "decision": decision.action, "reason": decision.reason[:500],
            "model_name": name, "challenger": str(decision.challenger), "champion_before": str(decision.champion_before),
            "champion_after": str(decision.champion_after), **flow_run_tags(),
        })
        for key, value in _flat(decision.figures).items():
            c.log_metric(run.info.run_id, key, value)
        c.log_dict(run.info.run_id, decision.as_dict(), "decision.json")
        c.set_terminated(run.info.run_id)
    decision.run_id = run.info.run_id
    return decision


def rollback_decision(p: TrackingParams, model_name: str) -> Decision:
    """Back to the champion before the current one."""
    c = client(p)
    history = champion_history(c, model_name)
    current = alias_version(c, model_name, CHAMPION)
    if len(history) < 2:
        raise MapwiseError(f"'{model_name}' has no previous champion to roll back to (champions so far: {history or 'none'})")
    return Decision("rollback", model_name, None, current, history[-2], f"version {current} -> {history[-2]}")


def _flat(figures: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in figures.items():
        name = re.sub(r"[^\w\-. :/]", "_", f"{prefix}{key}".replace("@", "_at_"))
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class _quiet:
    """MLflow's INFO chatter (created version, downloads) off while a block runs."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("mlflow")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def record_reproduction(p: TrackingParams, model_name: str, version: str, commit: str, ref: str) -> None:
    """Point a version's lineage at the commit that reproduces it: `git checkout <commit> && dvc pull && dvc repro`."""
    c = client(p)
    for key, value in {"git_commit": commit, "git_ref": ref,
                       "reproduce": f"git fetch <this repository> {ref} && git checkout {commit[:12]} && dvc pull && dvc repro"}.items():
        c.set_model_version_tag(model_name, version, key, value)
