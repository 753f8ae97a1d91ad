"""DVC stage `uplift`: treatment effects of a randomised campaign per arm, neural models beside
gradient-boosting meta-learners; Qini, AUUC, uplift@k and the next-best-action policy's value on
held-out rows; the selected model for `target.outcome` exported to ONNX (params: uplift, target,
export.atol, ingest.canonical_dir, privacy.consent, tracking); only consenting customers are in the bundle."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.atomic import replacing_folder
from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.targeting import datasets as ds
from mapwise.targeting import metrics as m
from mapwise.targeting import plots
from mapwise.targeting import uplift as up
from mapwise.targeting.explain import integrated_gradients
from mapwise.targeting.reasons import by_group, global_importance, top_reasons
from mapwise.targeting.export import OUTCOMES, constant_graph, write_graph_bundle, write_target_bundle
from mapwise.targeting.report import write_uplift_report
from mapwise.privacy.consent import withhold
from mapwise.tracking import log_run
from pipelines._stage import lineage, read_canonical, run, write_json
from pipelines.propensity import missing_source

EXPLAIN_ROWS = 2000
EXAMPLES = 3  # test rows with the largest expected uplift, explained one by one in the report


def stage(params: Params) -> None:
    p, t = params.uplift, params.target
    if p is None:
        raise MapwiseError("params.yaml has no `uplift` section: nothing to train")
    if t.outcome not in p.outcomes:
        raise MapwiseError(f"target.outcome '{t.outcome}' is not among uplift.outcomes {p.outcomes}")
    shutil.rmtree(p.plots_dir, ignore_errors=True)  # this run's plots only
    folder = params.ingest.canonical_dir
    skipped = missing_source(folder, c.CAMPAIGN_EXPOSURES)
    if skipped:
        with replacing_folder(p.out_dir) as out:
            write_json(out / "skipped.json", {"status": skipped})  # no bundle: register and target pass it by
        plots.note_plot(skipped, p.plots_dir / "skipped.png", "uplift")
        write_json(p.report, {"campaign_id": p.campaign_id, "status": skipped})
        write_uplift_report({"status": skipped}, p.plots_dir, p.html)
        print(f"uplift: {skipped}")
        return
    exposures, customers, traits = (read_canonical(folder, x) for x in (c.CAMPAIGN_EXPOSURES, c.CUSTOMERS, c.CUSTOMER_TRAITS))
    table = up.with_split(ds.campaign_table(exposures, customers, traits, p.campaign_id), p)
    try:
        arm_names = up.arm_order(table, p.control_arm)
    except ValueError as err:
        raise MapwiseError(f"uplift: {err}") from None
    encoder = up.encoder_for(table, p)
    parts = {s: table.filter(pl.col(ds.SPLIT) == s) for s in (ds.TRAIN, ds.VALIDATION, ds.TEST)}
    x = {s: encoder.transform(f) for s, f in parts.items()}
    arm = {s: f[c.ARM].replace_strict(arm_names, list(range(len(arm_names))), return_dtype=pl.Int64).to_numpy()
           for s, f in parts.items()}
    shares = {a: float((table[c.ARM] == a).mean()) for a in arm_names}
    tags = {"mapwise.stage": "uplift", **lineage(folder)}
    report: dict = {"campaign_id": p.campaign_id, "arms": arm_names, "arm_shares": shares,
                    "rows": {s: f.height for s, f in parts.items()}, "features": encoder.inputs,
                    "dropped_features": encoder.dropped, "outcomes": {}}
    chosen = {}
    for outcome in p.outcomes:
        y = {s: f[outcome].cast(pl.Float64).fill_null(0.0).to_numpy() for s, f in parts.items()}
        fitted = up.fit_outcome(outcome, x, arm, y, len(arm_names), p)
        val_qini = up.qini_only(fitted.validation, y[ds.VALIDATION], arm[ds.VALIDATION], len(arm_names))
        if outcome == t.outcome:  # the model that acts: the best policy on validation
            val_value = {k: up.policy_values(up.uplifts(fitted.validation[k]), y[ds.VALIDATION], arm[ds.VALIDATION], arm_names,
                                             shares, t.contact_cost, 0, p.seed)["model"]["value"] for k in p.models}
            best = max(p.models, key=val_value.get)
        else:
            best = max(p.models, key=val_qini.get)
        test = up.evaluate_outcome(fitted.test, y[ds.TEST], arm[ds.TEST], arm_names, p.bootstrap)
        observed = {a: float(y[ds.TEST][arm[ds.TEST] == i].mean()) for i, a in enumerate(arm_names)}
        report["outcomes"][outcome] = {"validation_mean_qini": val_qini, "selected": best,
                                       "selected_by": "validation policy value" if outcome == t.outcome else "validation Qini", "test": test,
                                       "test_mean_by_arm": observed, "training": fitted.curves}
        for a in range(1, len(arm_names)):
            rows = (arm[ds.TEST] == a) | (arm[ds.TEST] == 0)
            curves = {name: m.qini_curve(y[ds.TEST][rows], up.uplifts(pred)[rows, a - 1], (arm[ds.TEST][rows] == a).astype(int))
                      for name, pred in fitted.test.items()}
            plots.uplift_curves_plot(curves, p.plots_dir / f"{outcome}_{arm_names[a]}_qini.png",
                                     f"{outcome}: {arm_names[a]} vs {arm_names[0]}, Qini curves on test")
            curves = {name: m.uplift_curve(y[ds.TEST][rows], up.uplifts(pred)[rows, a - 1], (arm[ds.TEST][rows] == a).astype(int))
                      for name, pred in fitted.test.items()}
            plots.uplift_curves_plot(curves, p.plots_dir / f"{outcome}_{arm_names[a]}_uplift.png",
                                     f"{outcome}: {arm_names[a]} vs {arm_names[0]}, uplift curves on test", kind="Uplift")
        chosen[outcome] = (best, fitted, y)
        print(f"uplift {outcome}: test Qini " + " ".join(f"{k} {v['mean_qini']:+.3f}" for k, v in test.items())
              + f" (selected on validation: {best})")
    best, fitted, y = chosen[t.outcome]
    u_test = up.uplifts(fitted.test[best])
    valued = up.policy_values(u_test, y[ds.TEST], arm[ds.TEST], arm_names, shares, t.contact_cost, p.bootstrap, p.seed)
    versus = up.versus_fixed(u_test, y[ds.TEST], arm[ds.TEST], arm_names, shares, t.contact_cost, valued, p.bootstrap, p.seed)
    report["policy"] = {"outcome": t.outcome, "contact_cost": t.contact_cost, "model": best, "values": valued,
                        "versus_fixed": versus}
    report["served"] = served = up.served(best, versus)
    net = fitted.nets[best]
    rows = min(EXPLAIN_ROWS, len(x[ds.TEST]))
    baseline = x[ds.TRAIN].mean(axis=0)
    report["explanations"] = {"method": "integrated gradients (Captum) of each arm's predicted uplift, baseline = mean "
                                        "training row", "model": best, "arms": {}}
    binary = t.outcome in up.BINARY
    actions, gains = up.choose_actions(u_test, arm_names, t.contact_cost)
    top = np.argsort(-gains[:rows])[:EXAMPLES]
    report["explanations"]["examples"] = []
    for a in range(1, len(arm_names)):
        def uplift_of(z, a=a):  # noqa: ANN001, ANN202
            out = net(z)
            out = out.sigmoid() if binary else out
            return out[:, a] - out[:, 0]
        attributions = integrated_gradients(uplift_of, x[ds.TEST][:rows], baseline)
        importance = global_importance(attributions, encoder.groups)
        report["explanations"]["arms"][arm_names[a]] = importance
        names, grouped = by_group(attributions, encoder.groups)
        for i in (int(i) for i in top if actions[i] == arm_names[a]):
            values = {n: parts[ds.TEST][n][i] for n in names if n in parts[ds.TEST].columns}
            report["explanations"]["examples"].append({"row": i, "action": arm_names[a], "expected_uplift": float(gains[i]),
                                                       "reasons": top_reasons(grouped[i], names, values)})
        plots.attribution_plot(importance, p.plots_dir / f"{t.outcome}_{arm_names[a]}_attributions.png",
                               f"{t.outcome} uplift of {arm_names[a]}: what drives it")
    run_id = log_run(params.tracking, run_name=f"uplift {t.outcome}", tags={**tags, "model": best},
                     params={"outcome": t.outcome, "model": best, **p.fit.model_dump(mode="json")},
                     metrics={f"test.{k}.mean_qini": v["mean_qini"] for k, v in report["outcomes"][t.outcome]["test"].items()}
                     | {f"policy.{k}": v["value"] for k, v in valued.items()})
    fixed = served["baseline"]  # the best fixed policy acts: no model scores to rank customers by
    metrics = {"test": {"policy_value": valued[served["model"] if fixed else "model"]["value"]}}
    if not fixed:
        metrics["test"]["mean_qini"] = report["outcomes"][t.outcome]["test"][best]["mean_qini"]
        metrics["validation"] = {"mean_qini": report["outcomes"][t.outcome]["validation_mean_qini"][best]}
    metadata = {"kind": "uplift", "model": f"uplift-{t.outcome}-{served['model']}", "outcome": t.outcome, "arms": arm_names,
                "contact_cost": t.contact_cost, "encoder": encoder.to_dict(), "feature_baseline": baseline.tolist(),
                "metrics": metrics, "served": served, "lineage": {**tags, "train_run_id": run_id}}
    latest, metadata["consent"] = withhold(table.unique(c.CUSTOMER_ID, keep="last", maintain_order=True), customers,
                                           params.privacy.consent)  # served and targeted: consenting customers only
    report["consent"] = metadata["consent"]
    with replacing_folder(p.out_dir) as out:
        served_customers = latest.select(c.CUSTOMER_ID, *[k for k in encoder.inputs if k in latest.columns])
        if not fixed:
            report["parity"] = write_target_bundle(out, net, [x[ds.TEST]], metadata, served_customers, None, binary=binary,
                                                   output=OUTCOMES, sequence_length=0, atol=params.export.atol)
        else:
            constant = up.fixed_outcomes(valued, arm_names, t.contact_cost)
            report["parity"] = write_graph_bundle(out, constant_graph(constant, x[ds.TEST].shape[1]), [x[ds.TEST]],
                                                  np.tile(constant, (len(x[ds.TEST]), 1)), metadata, served_customers, None,
                                                  against="the fixed policy's outcomes", atol=params.export.atol)
        parts[ds.TEST].select(ds.ROW_ID, c.ARM, *p.outcomes, *[k for k in encoder.inputs if k in table.columns]).write_parquet(
            out / "test.parquet")
    write_json(p.report, report)
    write_uplift_report(report, p.plots_dir, p.html)
    print("policy value per customer on test (" + t.outcome + f", net of {t.contact_cost} per contact): "
          + ", ".join(f"{k} {v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" for k, v in valued.items()))
    print(f"uplift: {served['reason']}")


def main(argv: list[str] | None = None) -> int:
    return run("uplift", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
