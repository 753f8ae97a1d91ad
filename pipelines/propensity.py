"""DVC stage `propensity`: who will buy or respond; neural models beside baselines, calibrated, explained,
exported to ONNX for the customers who consent (params: propensity, split.cutoff, profile, ingest.canonical_dir,
privacy.consent, tracking)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.atomic import replacing_folder
from mapwise.errors import MapwiseError
from mapwise.params import Params, PropensityTask
from mapwise.profiles.build import default_as_of
from mapwise.targeting import datasets as ds
from mapwise.targeting import plots
from mapwise.targeting.explain import integrated_gradients
from mapwise.targeting.reasons import by_group, global_importance, top_reasons
from mapwise.targeting.propensity import NEURAL, TaskResult, export_served, train_task
from mapwise.targeting.report import write_propensity_report
from mapwise.privacy.consent import withhold
from mapwise.tracking import log_run
from pipelines._stage import lineage, read_canonical, run, write_json

EXPLAIN_ROWS = 2000  # test rows attributed for the global importance
EXAMPLES = 3  # highest-scored test rows explained one by one in the report


SOURCE_TABLE = {"next_purchase": c.EVENTS, "campaign_response": c.CAMPAIGN_EXPOSURES, "session_purchase": c.SESSIONS}


def missing_source(folder: Path, table: str) -> str | None:
    """Why a task cannot run on this data (its canonical table is empty: no source maps it), or None."""
    path = folder / f"{table}.parquet"
    if path.exists() and pl.scan_parquet(path).select(pl.len()).collect().item():
        return None
    return f"skipped: no {table} rows (no source maps them)"


def task_tables(params: Params, task: PropensityTask) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The task's labelled, split table and its customers' latest features (what serving looks up)."""
    p, folder = params.propensity, params.ingest.canonical_dir
    tables = {t: read_canonical(folder, t) for t in (c.CUSTOMERS, c.CUSTOMER_TRAITS)}
    if task.kind == "next_purchase":
        events, items = read_canonical(folder, c.EVENTS), read_canonical(folder, c.ITEMS)
        args = dict(sequence_length=params.profile.sequence_length, category_tokens=params.profile.category_tokens)
        table = ds.next_purchase_table(events, tables[c.CUSTOMERS], items, tables[c.CUSTOMER_TRAITS],
                                       cutoff=params.split.cutoff, horizon_days=task.horizon_days, snapshots=task.snapshots, **args)
        from mapwise.profiles.build import build_profiles

        now = default_as_of(events)
        latest = build_profiles(events, tables[c.CUSTOMERS], items, as_of=now, **args).drop(c.COUNTRY)
        latest = ds.customer_features(latest.with_columns(pl.col(c.RECENT_ITEMS).alias(ds.SEQUENCE)), tables[c.CUSTOMERS],
                                      tables[c.CUSTOMER_TRAITS], now)
        return table, latest
    if task.kind == "campaign_response":
        exposures = read_canonical(folder, c.CAMPAIGN_EXPOSURES)
        table = ds.campaign_response_table(exposures, tables[c.CUSTOMERS], tables[c.CUSTOMER_TRAITS], task.campaign_id,
                                           task.outcome, p.validation_share, p.test_share, p.seed)
        return table, table.unique(c.CUSTOMER_ID, keep="last", maintain_order=True)
    table = ds.session_table(read_canonical(folder, c.SESSIONS), p.validation_share, p.test_share, p.seed)
    return table, table.clear()


def explain(result: TaskResult, plot: Path, title: str) -> dict:
    """Integrated gradients on test rows: the global importance (plotted) and the top rows' reasons."""
    rows = min(EXPLAIN_ROWS, len(result.test_inputs.y))
    x = result.test_inputs.x[:rows]
    extra = (result.test_inputs.seq[:rows],) if result.test_inputs.seq is not None else ()
    baseline = x.mean(axis=0)
    attributions = integrated_gradients(result.net, x, baseline, extra=extra)
    importance = global_importance(attributions, result.encoder.groups)
    plots.attribution_plot(importance, plot, title)
    names, grouped = by_group(attributions, result.encoder.groups)
    from mapwise.targeting.fitting import predict

    order = np.argsort(-predict(result.net, x, *extra))[:EXAMPLES]
    frame = result.test_frame.head(rows)
    examples = [{"row": int(i), "reasons": top_reasons(grouped[i], names, {n: _plain(frame[n][int(i)]) for n in names
                                                                             if n in frame.columns})} for i in order]
    return {"method": "integrated gradients (Captum), baseline = mean test row", "model": NEURAL, "rows": rows,
            "global": importance, "examples": examples, "plot": str(plot)}


def _plain(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def stage(params: Params) -> None:
    p = params.propensity
    if p is None:
        raise MapwiseError("params.yaml has no `propensity` section: nothing to train")
    shutil.rmtree(p.plots_dir, ignore_errors=True)  # this run's plots only
    tags = {"mapwise.stage": "propensity", **lineage(params.ingest.canonical_dir)}
    report: dict = {"tasks": {}}
    with replacing_folder(p.out_dir) as out:
        for name, task in p.tasks.items():
            skipped = missing_source(params.ingest.canonical_dir, SOURCE_TABLE[task.kind])
            if skipped:
                report["tasks"][name] = {"kind": task.kind, "status": skipped}
                print(f"propensity {name}: {skipped}")
                continue
            table, latest = task_tables(params, task)
            try:
                result = train_task(table, exclude=task.exclude, p=p, sequence_length=params.profile.sequence_length,
                                    use_sequence=task.kind == "next_purchase" and task.sequence,
                                    augment=p.augment.get(name))
            except ValueError as err:
                raise MapwiseError(f"propensity task '{name}': {err}") from None
            r = result.report
            r["kind"], r["definition"] = task.kind, task.model_dump(mode="json")
            models = r["models"]
            plots.reliability_plot({k: v["test"]["reliability"] for k, v in models.items()}, p.plots_dir / f"{name}_reliability.png",
                                   f"{name}: reliability on test")
            plots.gain_plot({k: v["test"]["lift"] for k, v in models.items()}, p.plots_dir / f"{name}_gain.png",
                            f"{name}: cumulative gain on test")
            r["explanations"] = explain(result, p.plots_dir / f"{name}_attributions.png", f"{name}: what drives the score")
            neural = models[NEURAL]["test"]
            dp = r.get("private")
            run_id = log_run(params.tracking, run_name=f"propensity {name}",
                             tags={**tags, "task": name, "model": NEURAL, "private": str(dp is not None).lower()},
                             params={"task": name, **task.model_dump(mode="json"), **p.fit.model_dump(mode="json")}
                             | ({f"dp.{k}": dp[k] for k in ("target_epsilon", "delta", "max_grad_norm", "epochs",
                                                            "noise_multiplier", "accountant")} if dp else {}),
                             metrics={f"test.{k}.roc_auc": v["test"]["roc_auc"] for k, v in models.items()}
                             | {"test.neural.pr_auc": neural["pr_auc"], "test.neural.log_loss": neural["log_loss"],
                                "test.neural.ece": neural["ece"]}
                             | ({"dp.epsilon": dp["epsilon"], "test.non_private.roc_auc": dp["non_private"]["test"]["roc_auc"],
                                 "dp.roc_auc_cost": dp["cost"]["roc_auc"]} if dp else {}))
            metadata = {
                "kind": "propensity", "model": f"propensity-{name}", "task": name, "definition": r["definition"],
                "encoder": result.encoder.to_dict(), "feature_baseline": result.test_inputs.x.mean(axis=0).tolist(),
                "sequence_length": result.sequence_length if result.vocab else 0, "lineage": {**tags, "train_run_id": run_id},
            }
            keep = [ds.ROW_ID if task.kind == "session_purchase" else c.CUSTOMER_ID, *result.encoder.inputs]
            customers = latest.select([k for k in keep if k in latest.columns] + ([ds.SEQUENCE] if result.vocab else []))
            customers = customers.rename({ds.ROW_ID: c.CUSTOMER_ID}, strict=False)
            if task.kind != "session_purchase":  # served by customer id: consenting customers only
                customers, metadata["consent"] = withhold(customers, read_canonical(params.ingest.canonical_dir, c.CUSTOMERS),
                                                          params.privacy.consent)
                r["consent"] = metadata["consent"]
            if dp:
                metadata["private"] = {k: dp[k] for k in ("epsilon", "delta", "accountant", "scope")}
            r["parity"] = export_served(result, out / name, metadata, customers, params.export.atol)
            result.test_frame.select(ds.ROW_ID, ds.LABEL, *[k for k in result.encoder.inputs if k in result.test_frame.columns],
                                     *([ds.SEQUENCE] if result.vocab else [])).write_parquet(out / name / "test.parquet")
            report["tasks"][name] = r
            gap = r.get("neural_vs_best_baseline", {})
            print(f"propensity {name}: test ROC AUC neural {neural['roc_auc']:.3f} "
                  + " ".join(f"{k} {v['test']['roc_auc']:.3f}" for k, v in models.items() if k != NEURAL)
                  + (f" (neural - {gap['baseline']}: {gap['roc_auc_gain']:+.3f} [{gap['ci'][0]:+.3f}, {gap['ci'][1]:+.3f}])" if gap else ""))
            print(f"propensity {name}: {r['served']['reason']}")
            if "augment" in r and "kept" in r["augment"]:
                a = r["augment"]
                scarce = ", ".join(f"{k} +{v['synthetic_rows']}" for k, v in a["segments"].items())
                print(f"propensity {name}: synthetic rows for scarce values of {a['segment']} ({scarce}): "
                      f"validation ROC AUC {a['with']['validation_roc_auc']:.3f} vs {a['without']['validation_roc_auc']:.3f}, "
                      f"test gain {a['test_gain']['roc_auc']:+.3f} [{a['test_gain']['ci'][0]:+.3f}, "
                      f"{a['test_gain']['ci'][1]:+.3f}]; kept: {a['kept']}")
            if dp:
                print(f"propensity {name}: DP-SGD epsilon {dp['epsilon']:.2f} (delta {dp['delta']:.1e}): test ROC AUC "
                      f"{dp['private']['test']['roc_auc']:.3f} vs {dp['non_private']['test']['roc_auc']:.3f} without "
                      f"({dp['cost']['roc_auc']:+.3f} [{dp['cost']['ci'][0]:+.3f}, {dp['cost']['ci'][1]:+.3f}])")
    if not any("models" in task for task in report["tasks"].values()):
        plots.note_plot("every task skipped: no source maps their tables", p.plots_dir / "skipped.png", "propensity")
    write_json(p.report, report)
    write_propensity_report(report, p.plots_dir, p.html)
    print(f"propensity: {p.report} and {p.html}")


def main(argv: list[str] | None = None) -> int:
    return run("propensity", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
