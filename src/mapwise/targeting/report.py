"""The targeting reports: one self-contained HTML page each for propensity and uplift (tables, plots inline)."""

from __future__ import annotations

import html
from pathlib import Path

from mapwise.atomic import write_text
from mapwise.pages import inline_png, num, page, table


def _ci(value: float | None, ci: list | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci and None not in ci else "")


def write_propensity_report(report: dict, plots_dir: Path, path: Path) -> None:
    """Per task: every model's test figures with intervals, calibration, lift, what drives the score and why."""
    parts = []
    for name, task in report["tasks"].items():
        parts.append(f"<h2>{html.escape(name)} ({html.escape(task.get('kind', ''))})</h2>")
        if "models" not in task:
            parts.append(f"<p class=\"note\">{html.escape(task.get('status', ''))}</p>")
            continue
        rows = [[html.escape(model), num(m["validation_roc_auc"]), _ci(t["roc_auc"], t["roc_auc_ci"]),
                 _ci(t["pr_auc"], t["pr_auc_ci"]), num(t["log_loss"]), num(t["ece"]), num(t["top_decile_lift"], 2)]
                for model, m in task["models"].items() for t in [m["test"]]]
        parts.append(table(["model", "validation ROC AUC", "test ROC AUC [95%]", "test PR AUC [95%]", "log loss", "ECE",
                             "top-decile lift"], rows))
        gap = task.get("neural_vs_best_baseline")
        if gap:
            verdict = "matches or beats" if gap["ci"][1] >= 0 else "is below"
            parts.append(f"<p class=\"note\">Neural minus {html.escape(gap['baseline'])} (the best baseline on validation): "
                         f"{gap['roc_auc_gain']:+.4f} [{gap['ci'][0]:+.4f}, {gap['ci'][1]:+.4f}] ROC AUC on test: the neural "
                         f"model {verdict} it. Rows: {task['rows']}; positive rate {task['positive_rate']}. Calibration "
                         f"{'applied' if task['calibration'].get('used') else 'not applied'}.</p>")
        parts += _served_part(task.get("served"))
        parts += _private_part(task.get("private")) + _augment_part(task.get("augment"))
        if task.get("consent"):
            held = sum(w["customers"] for w in task["consent"]["withheld"].values())
            parts.append(f"<p class=\"note\">Served and scored: {task['consent']['kept']['customers']:,} customers; "
                         f"{held:,} withheld for lack of consent, {task['consent']['allowed_unknown']['customers']:,} "
                         "allowed with unknown consent (privacy.consent).</p>")
        parts += [inline_png(plots_dir / f"{name}_reliability.png"), inline_png(plots_dir / f"{name}_gain.png"),
                  "<h3>What drives the score</h3>", inline_png(plots_dir / f"{name}_attributions.png")]
        examples = task.get("explanations", {}).get("examples", [])
        if examples:
            parts.append("<h3>Why this score: the highest-scored test rows</h3>")
            rows = [[str(e["row"]), "; ".join(f"{html.escape(r['feature'])} = {html.escape(str(r.get('value')))} "
                                                f"({r['attribution']:+.3f})" for r in e["reasons"])] for e in examples]
            parts.append(table(["test row", "top reasons (feature = value (attribution))"], rows))
    intro = ("Held-out figures with 95% bootstrap intervals; every model is fitted on the same training rows and "
             "chosen on validation. Attributions are integrated gradients from the mean test row.")
    write_text(path, page("Propensity", intro, "".join(parts)))


def _served_part(served: dict | None) -> list[str]:
    """The model that serves, and why, in one sentence."""
    return [f"<p class=\"served\"><strong>Served: {html.escape(served['model'])}.</strong> "
            f"{html.escape(served['reason'])}</p>"] if served else []


def _private_part(dp: dict | None) -> list[str]:
    """DP-SGD: the budget spent and the utility it cost."""
    if not dp:
        return []
    rows = [[label, num(f["validation"]["roc_auc"]), num(f["test"]["roc_auc"]), num(f["test"]["pr_auc"]),
             num(f["test"]["log_loss"])] for label, f in (("private (kept)", dp["private"]), ("not private", dp["non_private"]))]
    cost = dp["cost"]
    return ["<h3>Differential privacy (DP-SGD)</h3>",
            f"<p class=\"note\">epsilon {dp['epsilon']:.2f} spent of {dp['target_epsilon']:g} at delta {dp['delta']:.1e} "
            f"({html.escape(dp['accountant'])} accountant), noise multiplier {dp['noise_multiplier']:.2f}, clipping "
            f"{dp['max_grad_norm']:g}, {dp['epochs']} passes. Cost: {cost['roc_auc']:+.4f} [{cost['ci'][0]:+.4f}, "
            f"{cost['ci'][1]:+.4f}] test ROC AUC. {html.escape(dp.get('scope', ''))}</p>",
            table(["neural model", "validation ROC AUC", "test ROC AUC", "test PR AUC", "log loss"], rows)]


def _augment_part(a: dict | None) -> list[str]:
    """Synthetic rows for scarce segments: what was added and whether it helped."""
    if not a:
        return []
    segments = ", ".join(f"{html.escape(v)} ({s['real_rows']} real + {s['synthetic_rows']} synthetic)"
                         for v, s in a["segments"].items()) or "none (every segment has enough rows)"
    out = ["<h3>Synthetic rows for scarce segments</h3>",
           f"<p class=\"note\">{html.escape(a['segment'])} segments under {a['min_rows']} training rows: {segments}.</p>"]
    if "kept" in a:
        rows = [[label, num(f["validation_roc_auc"]), num(f["test_roc_auc"]), num(f["test_roc_auc_scarce"])]
                for label, f in (("with synthetic rows", a["with"]), ("real rows only", a["without"]))]
        g = a["test_gain"]
        out += [table(["neural model", "validation ROC AUC", "test ROC AUC",
                        f"test ROC AUC, scarce segments ({a['test_scarce_rows']} rows)"], rows),
                f"<p class=\"note\">Test gain {g['roc_auc']:+.4f} [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}]; kept on "
                f"validation: {html.escape(a['kept'])}.</p>"]
    return out


def write_uplift_report(report: dict, plots_dir: Path, path: Path) -> None:
    """Per outcome and arm: Qini, AUUC and uplift@k of every model; the policy's value; what drives the uplift."""
    if "outcomes" not in report:
        write_text(path, page("Uplift", html.escape(report.get("status", "")), ""))
        return
    arms = report["arms"]
    parts = [f"<p class=\"note\">Arms: {', '.join(map(html.escape, arms))} (control first); shares "
             + ", ".join(f"{html.escape(a)} {s:.1%}" for a, s in report["arm_shares"].items())
             + f"; rows {report['rows']}.</p>"]
    for outcome, res in report["outcomes"].items():
        parts.append(f"<h2>{html.escape(outcome)}</h2><p class=\"note\">Selected ({html.escape(res['selected_by'])}): "
                     f"{html.escape(res['selected'])}. Test mean by arm: "
                     + ", ".join(f"{html.escape(a)} {v:.4f}" for a, v in res["test_mean_by_arm"].items()) + "</p>")
        rows = []
        for model, fig in res["test"].items():
            for arm, a in fig["arms"].items():
                rows.append([html.escape(model), html.escape(arm), _ci(a["qini"], a["qini_ci"]), num(a["auuc"]),
                             num(a["uplift@10%"], 4), num(a["uplift@20%"], 4), _ci(a["uplift@30%"], a["uplift@30%_ci"], 4),
                             num(a["uplift@30%_by_group"], 4)])
        parts.append(table(["model", "arm", "Qini [95%]", "AUUC", "uplift@10%", "uplift@20%", "uplift@30% [95%]",
                             "uplift@30% by group"], rows))
        parts += [inline_png(plots_dir / f"{outcome}_{arm}_qini.png") for arm in arms[1:]]
    policy = report["policy"]
    parts += _served_part(report.get("served"))
    parts.append(f"<h2>Next best action: value per customer ({html.escape(policy['outcome'])}, net of "
                 f"{policy['contact_cost']} per contact)</h2>")
    parts.append(table(["policy", "value [95%]", "contacted"], [
        [html.escape(k), _ci(v["value"], v["ci"], 4), f"{v['contacted_share']:.1%}"] for k, v in policy["values"].items()]))
    parts.append("<h3>What drives the uplift</h3>")
    parts += [inline_png(plots_dir / f"{policy['outcome']}_{arm}_attributions.png") for arm in arms[1:]]
    examples = report.get("explanations", {}).get("examples", [])
    if examples:
        parts.append("<h3>Why this action: the test rows with the largest expected uplift</h3>")
        parts.append(table(["test row", "action", "expected uplift", "top reasons (feature = value (attribution))"], [
            [str(e["row"]), html.escape(e["action"]), num(e["expected_uplift"], 4),
             "; ".join(f"{html.escape(r['feature'])} = {html.escape(str(r.get('value')))} ({r['attribution']:+.4f})"
                       for r in e["reasons"])] for e in examples]))
    intro = ("A randomised trial, held-out rows stratified by arm. Qini and AUUC as scikit-uplift defines them "
             "(normalised by the perfect model); policy values by inverse propensity weighting, 95% bootstrap intervals.")
    write_text(path, page("Uplift", intro, "".join(parts)))
