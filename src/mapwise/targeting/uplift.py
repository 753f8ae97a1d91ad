"""Uplift on a randomised campaign: per-arm outcome networks beside gradient-boosting meta-learners,
scored with Qini, AUUC and uplift@k on held-out rows, and the next-best-action policy valued by IPW."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mapwise import columns as c
from mapwise.params import UpliftParams
from mapwise.targeting import metrics as m
from mapwise.targeting.datasets import NOT_FEATURES, SPLIT, TEST, TRAIN, VALIDATION, stratified_split
from mapwise.targeting.features import Encoder

BINARY = (c.VISIT, c.CONVERSION)
TOP_SHARES = (0.1, 0.2, 0.3)
NO_CONTACT = "no_contact"


def with_split(table: pl.DataFrame, p: UpliftParams) -> pl.DataFrame:
    """The trial's rows with a split stratified by arm."""
    arms = table[c.ARM].to_numpy()
    return table.with_columns(pl.Series(SPLIT, stratified_split(arms, p.validation_share, p.test_share, p.seed), dtype=pl.String))


def arm_order(table: pl.DataFrame, control: str) -> list[str]:
    """Control first, then the treated arms sorted."""
    arms = sorted(table[c.ARM].unique().to_list())
    if control not in arms:
        raise ValueError(f"control arm '{control}' not among the campaign's arms ({', '.join(arms)})")
    return [control] + [a for a in arms if a != control]


def _gbm(binary: bool, seed: int):  # noqa: ANN202 - a scikit-learn estimator
    return (HistGradientBoostingClassifier(random_state=seed, max_iter=200, early_stopping=True) if binary
            else HistGradientBoostingRegressor(random_state=seed, max_iter=200, early_stopping=True))


def _predict(model, x: np.ndarray, binary: bool) -> np.ndarray:  # noqa: ANN001
    return model.predict_proba(x)[:, 1] if binary else model.predict(x)


def two_model(x: np.ndarray, arm: np.ndarray, y: np.ndarray, arms: int, binary: bool, seed: int):  # noqa: ANN201
    """One gradient-boosting model per arm; uplift = prediction(arm) - prediction(control)."""
    models = [_gbm(binary, seed).fit(x[arm == a], y[arm == a] if not binary else y[arm == a].astype(int)) for a in range(arms)]
    return lambda z: np.column_stack([_predict(mo, z, binary) for mo in models])


def class_transformation(x: np.ndarray, arm: np.ndarray, y: np.ndarray, arms: int, binary: bool, seed: int):  # noqa: ANN201, ARG001
    """Per treated arm, one regression of the transformed outcome y (t - e) / (e (1 - e)) on the arm and
    control rows (Athey & Imbens 2015; for a 0/1 outcome and e = 1/2 it is the class transformation)."""
    models = []
    for a in range(1, arms):
        rows = (arm == a) | (arm == 0)
        t = (arm[rows] == a).astype(float)
        e = t.mean()
        target = y[rows] * (t - e) / (e * (1 - e))
        models.append(HistGradientBoostingRegressor(random_state=seed, max_iter=200, early_stopping=True).fit(x[rows], target))
    return lambda z: np.column_stack([np.zeros(len(z))] + [mo.predict(z) for mo in models])


@dataclass
class OutcomeModels:
    """Per model, predicted outcome per arm [rows, arms] (uplifts for class_transformation, control column 0)."""

    validation: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    nets: dict[str, object]
    curves: dict[str, dict]


def uplifts(pred: np.ndarray) -> np.ndarray:
    """[rows, arms - 1]: each treated arm's predicted outcome minus control's."""
    return pred[:, 1:] - pred[:, :1]


def fit_outcome(outcome: str, x: dict[str, np.ndarray], arm: dict[str, np.ndarray], y: dict[str, np.ndarray],
                arms: int, p: UpliftParams) -> OutcomeModels:
    """Every neural model and baseline for one outcome."""
    from mapwise.targeting.fitting import fit, predict
    from mapwise.targeting.networks import ArmsNet

    binary = outcome in BINARY
    squash = (lambda z: 1 / (1 + np.exp(-z))) if binary else (lambda z: z)
    val, test, nets, curves = {}, {}, {}, {}
    for kind in p.models:
        net, curve = fit(lambda kind=kind: ArmsNet(kind, x[TRAIN].shape[1], arms, list(p.fit.hidden), list(p.fit.head),
                                                   p.fit.dropout), [x[TRAIN], arm[TRAIN], y[TRAIN]], [x[VALIDATION], arm[VALIDATION], y[VALIDATION]], p.fit,
                         binary=binary, arms=True, seed=p.seed)
        nets[kind], curves[kind] = net, curve
        val[kind], test[kind] = squash(predict(net, x[VALIDATION])), squash(predict(net, x[TEST]))
    builders = {"two_model": two_model, "class_transformation": class_transformation}
    for name in p.baselines:
        score = builders[name](x[TRAIN], arm[TRAIN], y[TRAIN], arms, binary, p.seed)
        val[name], test[name] = score(x[VALIDATION]), score(x[TEST])
    return OutcomeModels(val, test, nets, curves)


def arm_metrics(y: np.ndarray, u: np.ndarray, t: np.ndarray, n_boot: int, seed: int) -> dict:
    """Qini coefficient, AUUC and uplift@k of one arm's uplift scores on its rows and control's."""
    out = {"qini": m.qini_auc_score(y, u, t), "auuc": m.uplift_auc_score(y, u, t) if set(np.unique(y)) <= {0, 1} else None}
    for share in TOP_SHARES:
        out[f"uplift@{round(share * 100)}%"] = m.uplift_at_k(y, u, t, share, "overall")
    out["uplift@30%_by_group"] = m.uplift_at_k(y, u, t, 0.3, "by_group")
    out["qini_ci"] = list(m.bootstrap_interval(m.qini_auc_score, (y, u, t), n=n_boot, seed=seed))
    out["uplift@30%_ci"] = list(m.bootstrap_interval(lambda a, b, d: m.uplift_at_k(a, b, d, 0.3, "overall"), (y, u, t),
                                                     n=n_boot, seed=seed))
    return out


def evaluate_outcome(models: dict[str, np.ndarray], y: np.ndarray, arm: np.ndarray, arm_names: list[str],
                     n_boot: int) -> dict:
    """Per model and treated arm, the uplift figures on the given rows; `mean_qini` over arms."""
    report = {}
    for name, pred in models.items():
        u = uplifts(pred)
        per_arm = {}
        for a in range(1, len(arm_names)):
            rows = (arm == a) | (arm == 0)
            per_arm[arm_names[a]] = arm_metrics(y[rows], u[rows, a - 1], (arm[rows] == a).astype(int), n_boot, 0)
        report[name] = {"arms": per_arm, "mean_qini": float(np.mean([v["qini"] for v in per_arm.values()]))}
    return report


def qini_only(models: dict[str, np.ndarray], y: np.ndarray, arm: np.ndarray, arms: int) -> dict[str, float]:
    """Mean Qini coefficient over treated arms per model (validation: selection)."""
    out = {}
    for name, pred in models.items():
        u = uplifts(pred)
        qs = []
        for a in range(1, arms):
            rows = (arm == a) | (arm == 0)
            qs.append(m.qini_auc_score(y[rows], u[rows, a - 1], (arm[rows] == a).astype(int)))
        out[name] = float(np.mean(qs))
    return out


def choose_actions(u: np.ndarray, arm_names: list[str], cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row the treated arm with the largest uplift net of `cost`, or control when none is positive; and its net uplift."""
    net = u - cost
    best = net.argmax(axis=1)
    gain = net[np.arange(len(net)), best]
    actions = np.where(gain > 0, np.asarray(arm_names[1:], dtype=object)[best], arm_names[0])
    return actions, np.where(gain > 0, gain, 0.0)


def fixed_policies(arm_names: list[str], rows: int) -> dict[str, np.ndarray]:
    """The policies that ignore the customer: send nobody (control), or everybody one treated arm."""
    out = {"send_none": np.full(rows, arm_names[0], dtype=object)}
    for name in arm_names[1:]:
        out[f"send_all_{name}"] = np.full(rows, name, dtype=object)
    return out


def _trial(arm: np.ndarray, arm_names: list[str], shares: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's assigned arm by name and the probability the trial assigned it."""
    assigned = np.asarray(arm_names, dtype=object)[arm]
    return assigned, np.array([shares[a] for a in assigned])


def policy_values(u: np.ndarray, y: np.ndarray, arm: np.ndarray, arm_names: list[str], shares: dict[str, float],
                  cost: float, n_boot: int, seed: int) -> dict:
    """IPW value per customer (outcome net of contact cost) of the model's policy and fixed ones, with intervals."""
    assigned, propensity = _trial(arm, arm_names, shares)
    rng = np.random.default_rng(seed)
    policies = {"model": choose_actions(u, arm_names, cost)[0], **fixed_policies(arm_names, len(y)),
                "random": np.asarray(arm_names, dtype=object)[rng.integers(0, len(arm_names), len(y))]}
    out = {}
    for name, chosen in policies.items():
        args = (y, assigned, chosen, propensity)
        ci = m.policy_value_interval(*args, cost=cost, no_contact=arm_names[0], n=n_boot, seed=seed) if n_boot else (None, None)
        out[name] = {"value": m.policy_value(*args, cost=cost, no_contact=arm_names[0]), "ci": list(ci),
                     "contacted_share": float(np.mean(chosen != arm_names[0]))}
    return out


def versus_fixed(u: np.ndarray, y: np.ndarray, arm: np.ndarray, arm_names: list[str], shares: dict[str, float],
                 cost: float, values: dict, n_boot: int, seed: int) -> dict:
    """The model's policy against the best fixed policy on these rows (by `values`, from `policy_values`; ties go to
    sending fewer): the IPW value gain per customer and its paired bootstrap 95% interval."""
    fixed = fixed_policies(arm_names, len(y))
    best = max(fixed, key=lambda k: values[k]["value"])
    assigned, propensity = _trial(arm, arm_names, shares)

    def gain(y, assigned, model, other, propensity):  # noqa: ANN001, ANN202
        return (m.policy_value(y, assigned, model, propensity, cost=cost, no_contact=arm_names[0])
                - m.policy_value(y, assigned, other, propensity, cost=cost, no_contact=arm_names[0]))

    args = (y, assigned, choose_actions(u, arm_names, cost)[0], fixed[best], propensity)
    return {"fixed": best, "gain": gain(*args), "ci": list(m.bootstrap_interval(gain, args, n=n_boot, seed=seed))}


def served(model: str, versus: dict) -> dict:
    """What acts: the model's policy only when the interval of its gain over the best fixed policy lies above 0;
    otherwise that fixed policy. `reason` says why, in one sentence; `baseline` whether the fixed policy acts."""
    fixed, (lo, hi) = versus["fixed"], versus["ci"]
    figures = f"value per customer {versus['gain']:+.4f} [95% {lo:+.4f}, {hi:+.4f}] over {fixed}, the best fixed policy on test"
    if lo > 0:
        return {"model": model, "reason": f"The {model} policy serves: it beats {fixed} ({figures}).", "baseline": False}
    return {"model": fixed, "reason": f"The fixed policy {fixed} serves, not the {model} policy, which does not beat it "
                                      f"({figures}).", "baseline": True}


def fixed_outcomes(values: dict, arm_names: list[str], cost: float) -> list[float]:
    """Constant per-arm outcomes under which the next best action is the best fixed policy: each arm's fixed-policy
    value, treated arms' contact cost added back (so a treated arm's net uplift is its value gain over sending none)."""
    return [values["send_none"]["value"]] + [values[f"send_all_{a}"]["value"] + cost for a in arm_names[1:]]


def encoder_for(table: pl.DataFrame, p: UpliftParams) -> Encoder:
    return Encoder.fit(table.filter(pl.col(SPLIT) == TRAIN), exclude=NOT_FEATURES | {"contact_channel", *p.exclude},
                       max_values=p.max_categories, bins=p.numeric_bins)
