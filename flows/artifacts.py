"""What a flow run leaves in the Prefect UI: the stages, the evaluation table, the gate decision with links."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.record import Recorded
from flows.stages import StageRun
from mapwise.params import Params
from mapwise.bundles.registry import client


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def evaluation_rows(report: dict, k: int) -> list[dict]:
    """One row per recommender and variant: NDCG@k with its interval, HR, recall and coverage."""
    rows = []
    for variant in ("all_items", "new_items"):
        recs = report.get(variant, {}).get("recommenders", {})
        for name, m in sorted(recs.items(), key=lambda kv: -kv[1][f"ndcg@{k}"]):
            low, high = m.get(f"ndcg@{k}_ci", [None, None])
            rows.append({"variant": variant, "recommender": name, f"ndcg@{k}": m[f"ndcg@{k}"], "ci_low": low,
                         "ci_high": high, f"hr@{k}": m.get(f"hr@{k}"), f"recall@{k}": m.get(f"recall@{k}"),
                         f"coverage@{k}": m.get(f"coverage@{k}")})
    return rows


def targeting_rows(propensity: dict | None, uplift: dict | None) -> list[dict]:
    """One row per targeting model: propensity test ROC AUC per task, uplift mean Qini per outcome; skipped tasks say so."""
    rows = []
    for task, r in ((propensity or {}).get("tasks") or {}).items():
        if "models" not in r:
            rows.append({"kind": "propensity", "task": task, "model": "-", "metric": r.get("status"), "value": None})
        for model, m in r.get("models", {}).items():
            rows.append({"kind": "propensity", "task": task, "model": model, "metric": "test ROC AUC",
                         "value": m["test"]["roc_auc"]})
    for outcome, r in ((uplift or {}).get("outcomes") or {}).items():
        for model, m in r["test"].items():
            chosen = " (selected)" if model == r["selected"] else ""
            rows.append({"kind": "uplift", "task": outcome, "model": model + chosen, "metric": "test mean Qini",
                         "value": m["mean_qini"]})
    return rows


def decision_markdown(params: Params, decision: dict, registered: dict | None, fresh: bool) -> str:
    """The gate decision, its figures and links to the MLflow model version and decision run."""
    ui, name = params.orchestrate.mlflow_ui.rstrip("/"), decision["model_name"]
    lines = [f"# Gate: {decision['action']} version {decision['challenger']}", "",
             f"**{decision['reason']}**", "",
             f"- champion before: version {decision['champion_before']}; after: version {decision['champion_after']}"]
    served = ((registered or {}).get("served") or {}).get("reason") or (decision.get("figures") or {}).get("served")
    if served:
        lines[3:3] = [served, ""]  # what serves and why, in one sentence, under the decision
    if not fresh:
        lines.append("- the promote stage was up to date: this decision was made by an earlier run")
    mlflow = client(params.tracking)

    def run_link(run_id: str) -> str:
        return f"[{run_id}]({ui}/#/experiments/{mlflow.get_run(run_id).info.experiment_id}/runs/{run_id})"

    if challenger := decision.get("challenger"):
        lines.append(f"- model version: [{name} v{challenger}]({ui}/#/models/{name}/versions/{challenger})")
        lines.append(f"- the challenger's MLflow run: {run_link(mlflow.get_model_version(name, challenger).run_id)}")
    if decision.get("run_id"):
        lines.append(f"- the decision's MLflow run: {run_link(decision['run_id'])}")
    if registered:
        score = registered["validation_ndcg@10"].get(registered.get("best_learned", registered["model"]))
        lines.append(f"- registered from: {registered['model']} (best learned model: {registered.get('best_learned', '?')}, "
                     f"validation NDCG@10 {score})")
    figures = decision.get("figures") or {}
    if "challenger" in figures:
        lines += ["", f"| | NDCG@{params.evaluate.headline_k} ({figures.get('variant')}) |", "| --- | --- |",
                  f"| challenger | {figures['challenger']} |", f"| champion | {figures.get('champion')} |",
                  f"| difference | {figures.get('diff')} {figures.get('diff_ci', '')} |"]
    targets = decision.get("targets") or {}
    if targets:
        lines += ["", "## Targeting models", "", "| model | decision | champion after | reason |", "| --- | --- | --- | --- |"]
        lines += [f"| {n} | {d['action']} | {d['champion_after']} | {d['reason']} |" for n, d in targets.items()]
    return "\n".join(lines)


def reproduce_markdown(recorded: Recorded, version: str | None, model_name: str) -> str:
    """How to get this run's exact state back, here or in another clone."""
    lines = [f"# Recorded as DVC experiment `{recorded.name}`", "",
             f"- commit `{recorded.commit}` (`{recorded.ref}`): params as this run used them, dvc.lock, code, batches",
             "- data and models: pushed to the default DVC remote"]
    if version:
        lines.append(f"- {model_name} version {version} is tagged with this commit (`git_commit`)")
    lines += ["", "Reproduce it (a no-op that gives back the registered files):", "", "```",
              f"git fetch <this repository> {recorded.ref}   # in another clone; or: dvc exp pull <git remote> {recorded.name}",
              f"git checkout {recorded.commit}", "dvc pull", "dvc repro", "```", "",
              f"Or bring it into this workspace: `dvc exp apply {recorded.name}`."]
    return "\n".join(lines)


def publish(params: Params, runs: list[StageRun], recorded: Recorded | None = None, version: str | None = None) -> dict | None:
    """Artifacts for this flow run; returns the gate decision (None before any promote ran)."""
    create_table_artifact([{"stage": r.stage, "outcome": r.outcome, "seconds": r.seconds} for r in runs], key="stages",
                          description="Stages of dvc.yaml: run, restored from DVC's run cache, or up to date")
    if recorded:
        create_markdown_artifact(reproduce_markdown(recorded, version, params.register.model_name), key="reproduce",
                                 description="The commit this run is recorded as, and how to reproduce it")
    evaluation = _read(params.evaluate.report)
    if evaluation:
        k = params.evaluate.headline_k
        create_table_artifact(evaluation_rows(evaluation, k), key="evaluation",
                              description=f"Every model beside the baselines, full-ranking metrics at K={k}, on the test window")
    targeting = targeting_rows(_read(params.propensity.report) if params.propensity else None,
                               _read(params.uplift.report) if params.uplift else None)
    if targeting:
        create_table_artifact(targeting, key="targeting", description="Propensity and uplift models beside their "
                              "baselines, on held-out rows")
    decision = _read(params.promote.report)
    if decision:
        fresh = any(r.stage == "promote" and r.ran for r in runs)
        create_markdown_artifact(decision_markdown(params, decision, _read(params.register.report), fresh),
                                 key="gate-decision", description="The promotion gate's decision")
    return decision
