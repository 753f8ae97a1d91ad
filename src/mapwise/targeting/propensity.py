"""Propensity: a neural model beside scikit-learn baselines on the same split, with honest test figures.

Every model is fitted on the training rows; validation chooses early stopping and calibration;
the test rows are scored once, for the report. With `private` set, the neural model is also trained with
DP-SGD on the same rows and that one is calibrated and kept (the `neural` figures are then its), its cost
measured against the non-private one. With `augment`, it is also trained with synthetic rows for scarce
segments (a CTGAN on the training rows) and kept only when validation says it is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from mapwise.errors import MapwiseError
from mapwise.params import AugmentParams, FitParams, PrivateParams
from mapwise.targeting import metrics as m
from mapwise.targeting.datasets import LABEL, NOT_FEATURES, SEQUENCE, SPLIT, TEST, TRAIN, VALIDATION
from mapwise.targeting.features import Encoder
from mapwise.synth.augment import synthetic_rows

NEURAL = "neural"


@dataclass
class Calibration:
    """Isotonic map from raw to calibrated probability (empty: identity), as interpolation points."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.x, self.y) if self.x else p


@dataclass
class Inputs:
    """A split's model inputs: features, the sequence of item indices (or None) and labels."""

    x: np.ndarray
    seq: np.ndarray | None
    y: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        return [self.x] + ([self.seq] if self.seq is not None else [])


def item_vocabulary(frame: pl.DataFrame) -> list[str]:
    """Items in the training rows' sequences, sorted; index i + 1 in the model (0 pads)."""
    return frame.filter(pl.col(SPLIT) == TRAIN)[SEQUENCE].explode().drop_nulls().unique().sort().to_list()


def sequence_matrix(sequences: pl.Series, vocab: list[str], length: int) -> np.ndarray:
    """[rows, length] int64, left-padded with 0, newest last; unknown items dropped."""
    index = {item: i + 1 for i, item in enumerate(vocab)}
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, items in enumerate(sequences.to_list()):
        known = [index[i] for i in (items or []) if i in index][-length:]
        if known:
            out[row, length - len(known):] = known
    return out


def inputs(frame: pl.DataFrame, encoder: Encoder, vocab: list[str] | None, length: int) -> Inputs:
    seq = sequence_matrix(frame[SEQUENCE], vocab, length) if vocab is not None else None
    return Inputs(encoder.transform(frame), seq, frame[LABEL].cast(pl.Float64).to_numpy())


def fit_encoder(frame: pl.DataFrame, exclude: list[str], max_values: int, bins: int = 0) -> Encoder:
    return Encoder.fit(frame.filter(pl.col(SPLIT) == TRAIN), exclude=NOT_FEATURES | set(exclude), max_values=max_values,
                       bins=bins)


def calibration(val_p: np.ndarray, val_y: np.ndarray, seed: int) -> tuple[Calibration, dict]:
    """Isotonic calibration when, fitted on one half of validation and judged on the other (both ways), it lowers log loss."""
    halves = np.random.default_rng(seed).permutation(len(val_y)) % 2
    raw, fitted = 0.0, 0.0
    for h in (0, 1):
        fit_rows, test_rows = halves == h, halves != h
        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(val_p[fit_rows], val_y[fit_rows])
        raw += m.log_loss(val_y[test_rows], val_p[test_rows])
        fitted += m.log_loss(val_y[test_rows], iso.predict(val_p[test_rows]))
    check = {"validation_log_loss_raw": raw / 2, "validation_log_loss_calibrated": fitted / 2, "used": fitted < raw}
    if fitted >= raw:
        return Calibration(), check
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(val_p, val_y)
    return Calibration(list(map(float, iso.X_thresholds_)), list(map(float, iso.y_thresholds_))), check


def baseline(name: str, seed: int):  # noqa: ANN201 - a scikit-learn classifier
    if name == "logistic":
        return LogisticRegression(max_iter=2000, C=1.0)
    return HistGradientBoostingClassifier(random_state=seed, early_stopping=True, validation_fraction=0.15)


def scores(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict:
    """The report's figures for one model on one split."""
    out = {
        "rows": int(len(y)), "positives": int(y.sum()),
        "roc_auc": m.roc_auc(y, p), "roc_auc_ci": list(m.bootstrap_interval(m.roc_auc, (y, p), n=n_boot, seed=seed)),
        "pr_auc": m.pr_auc(y, p), "pr_auc_ci": list(m.bootstrap_interval(m.pr_auc, (y, p), n=n_boot, seed=seed)),
        "log_loss": m.log_loss(y, p), "ece": m.expected_calibration_error(y, p),
        "reliability": m.reliability(y, p), "lift": m.lift_table(y, p),
    }
    out["top_decile_lift"] = out["lift"][0]["lift"] if out["lift"] else None
    return out


def fit_baselines(names: list[str], train: Inputs, val: Inputs, test: Inputs, seed: int) -> tuple[dict[str, dict], dict]:
    """Each baseline's validation and test probabilities (on the encoded features), and the fitted baselines."""
    probs, models = {}, {}
    for name in names:
        models[name] = model = baseline(name, seed).fit(train.x, train.y.astype(int))
        probs[name] = {"validation": model.predict_proba(val.x)[:, 1], "test": model.predict_proba(test.x)[:, 1]}
    return probs, models


def served(gap: dict | None, private: bool) -> dict:
    """What serves: the neural model only when its paired 95% interval of test ROC AUC gain over the best baseline
    (chosen on validation) lies above 0; otherwise that baseline. `reason` says why, in one sentence; `baseline`
    whether a baseline serves."""
    if gap is None:
        return {"model": NEURAL, "reason": "The neural model serves: no baseline was fitted to compare it with.",
                "baseline": False}
    b, lo, hi = gap["baseline"], gap["ci"][0], gap["ci"][1]
    figures = f"test ROC AUC {gap['roc_auc_gain']:+.4f} [95% {lo:+.4f}, {hi:+.4f}] over {b}, the best baseline on validation"
    if lo > 0:
        return {"model": NEURAL, "reason": f"The neural model serves: it beats {b} ({figures}).", "baseline": False}
    if private:
        return {"model": NEURAL, "reason": f"The neural model serves although it does not beat {b} ({figures}): "
                                           "the baselines are not trained with differential privacy.", "baseline": False}
    return {"model": b, "reason": f"{b} serves, not the neural model, which does not beat it ({figures}).", "baseline": True}


def split_frames(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return tuple(frame.filter(pl.col(SPLIT) == s) for s in (TRAIN, VALIDATION, TEST))


def fit_params_for(p: FitParams, n_train: int) -> FitParams:
    """Batches no larger than a tenth of the training rows, so small tables still take several steps per pass."""
    return p.model_copy(update={"batch_size": max(8, min(p.batch_size, n_train // 10 or 1))})


def private_net(build: Callable[..., Any], train: Inputs, val: Inputs, p: FitParams, dp: PrivateParams,
                seed: int) -> tuple[Any, dict]:
    """The network trained with DP-SGD (`build(True)`: Opacus' GRU), its weights moved into `build()`'s network
    (the `nn.GRU` one that is exported), and the privacy spent."""
    from mapwise.targeting.dp import fit_private

    trained, spent = fit_private(lambda: build(True), [*train.arrays(), train.y], [*val.arrays(), val.y], p, dp, seed=seed)
    net = build()
    net.load_state_dict(trained.state_dict())
    return net.eval(), spent


def private_report(spent: dict, target: float, public: dict, private: dict, val_y: np.ndarray, test_y: np.ndarray,
                   n_boot: int, seed: int) -> dict:
    """What DP-SGD spent, both models' figures (each with its own calibration) and the cost in test ROC AUC."""
    def figures(pr: dict) -> dict:
        return {split: {"roc_auc": m.roc_auc(y, pr[split]), "pr_auc": m.pr_auc(y, pr[split]),
                        "log_loss": m.log_loss(y, pr[split])} for split, y in (("validation", val_y), ("test", test_y))}

    gain = lambda y, a, b: m.roc_auc(y, a) - m.roc_auc(y, b)  # noqa: E731
    return {**spent, "target_epsilon": target,
            "scope": "the training rows, through the network's weights; the feature encoder and item vocabulary "
                     "(fitted on them) and the calibration (validation rows) are not private",
            "non_private": figures(public), "private": figures(private),
            "cost": {"roc_auc": gain(test_y, private["test"], public["test"]),
                     "ci": list(m.bootstrap_interval(gain, (test_y, private["test"], public["test"]), n=n_boot, seed=seed))}}


def augment_report(val_real: np.ndarray, test_real: np.ndarray, val_aug: np.ndarray, test_aug: np.ndarray,
                   val_y: np.ndarray, test_y: np.ndarray, scarce: pl.Series, n_boot: int, seed: int) -> dict:
    """The model trained with synthetic rows against the one without: validation (which decides) and test ROC AUC,
    overall and on the scarce segments' test rows, with the test gain's bootstrap interval."""
    gain = lambda y, a, b: m.roc_auc(y, a) - m.roc_auc(y, b)  # noqa: E731
    rows = scarce.to_numpy()

    def figures(val_p: np.ndarray, test_p: np.ndarray) -> dict:
        few = test_y[rows]
        return {"validation_roc_auc": m.roc_auc(val_y, val_p), "test_roc_auc": m.roc_auc(test_y, test_p),
                "test_roc_auc_scarce": m.roc_auc(few, test_p[rows]) if len(np.unique(few)) == 2 else None}

    real, aug = figures(val_real, test_real), figures(val_aug, test_aug)
    return {"without": real, "with": aug, "test_scarce_rows": int(rows.sum()),
            "test_gain": {"roc_auc": gain(test_y, test_aug, test_real),
                          "ci": list(m.bootstrap_interval(gain, (test_y, test_aug, test_real), n=n_boot, seed=seed))},
            "kept": "augmented" if aug["validation_roc_auc"] > real["validation_roc_auc"] else "real only"}


@dataclass
class TaskResult:
    """A trained propensity task: the network and what serving needs, the report, and test-row figures."""

    net: object
    encoder: Encoder
    vocab: list[str] | None
    sequence_length: int
    calibration: Calibration
    report: dict
    test_inputs: Inputs
    test_frame: pl.DataFrame
    baselines: dict = field(default_factory=dict)  # name -> fitted scikit-learn classifier


def train_task(frame: pl.DataFrame, *, exclude: list[str], p, sequence_length: int, use_sequence: bool,  # noqa: ANN001 - PropensityParams
               augment: AugmentParams | None = None) -> TaskResult:
    """Fit the neural model and the baselines on one task's table; score validation and test.

    With `augment`, the neural model is also trained on the training rows plus synthetic rows for the scarce
    segments; the one with the better validation ROC AUC is kept, and both are reported.
    """
    from mapwise.targeting.fitting import fit, predict
    from mapwise.targeting.networks import PropensityNet

    train_f, val_f, test_f = split_frames(frame)
    if min(train_f[LABEL].n_unique(), val_f.height, test_f.height) < 2 or train_f.height < 20:
        raise ValueError(f"too few rows to train and test ({train_f.height} train, {val_f.height} validation, "
                         f"{test_f.height} test, labels {train_f[LABEL].unique().to_list()})")
    encoder = fit_encoder(frame, exclude, p.max_categories, p.numeric_bins)
    vocab = item_vocabulary(frame) if use_sequence and SEQUENCE in frame.columns else None
    train, val, test = (inputs(f, encoder, vocab, sequence_length) for f in (train_f, val_f, test_f))
    fit_p = fit_params_for(p.fit, len(train.y))
    build = lambda private=False: PropensityNet(train.x.shape[1], list(fit_p.hidden), fit_p.dropout,  # noqa: E731
                                                len(vocab) if vocab else 0, fit_p.embedding_dim, private=private)
    net, curve = fit(build, [*train.arrays(), train.y], [*val.arrays(), val.y], fit_p, binary=True, arms=False, seed=p.seed)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    raw_val, raw_test = sigmoid(predict(net, *val.arrays())), sigmoid(predict(net, *test.arrays()))
    calib, check = calibration(raw_val, val.y, p.seed) if p.calibrate else (Calibration(), {"used": False})
    augmented = None
    if augment is not None:
        if p.private:
            raise ValueError("augment and private cannot be combined: the GAN would see the training rows without DP")
        extra, augmented = synthetic_rows(train_f, encoder.inputs, LABEL, augment, seed=p.seed)
        if extra.height:
            more = inputs(pl.concat([train_f, extra]), encoder, vocab, sequence_length)
            net_a, curve_a = fit(build, [*more.arrays(), more.y], [*val.arrays(), val.y], fit_p, binary=True, arms=False,
                                 seed=p.seed)
            val_a, test_a = sigmoid(predict(net_a, *val.arrays())), sigmoid(predict(net_a, *test.arrays()))
            calib_a, check_a = calibration(val_a, val.y, p.seed) if p.calibrate else (Calibration(), {"used": False})
            augmented.update(augment_report(calib(raw_val), calib(raw_test), calib_a(val_a), calib_a(test_a), val.y,
                                            test.y, test_f[augment.segment].cast(pl.String).is_in(list(augmented["segments"])),
                                            p.bootstrap, p.seed))
            if augmented["kept"] == "augmented":
                net, curve, raw_val, raw_test, calib, check = net_a, curve_a, val_a, test_a, calib_a, check_a
    if p.private:
        public = {"validation": calib(raw_val), "test": calib(raw_test)}
        net, spent = private_net(build, train, val, fit_p, p.private, p.seed)
        raw_val, raw_test = sigmoid(predict(net, *val.arrays())), sigmoid(predict(net, *test.arrays()))
        calib, check = calibration(raw_val, val.y, p.seed) if p.calibrate else (Calibration(), {"used": False})
    probs = {NEURAL: {"validation": calib(raw_val), "test": calib(raw_test)}}
    baseline_probs, baselines = fit_baselines(list(p.baselines), train, val, test, p.seed)
    probs.update(baseline_probs)
    models = {}
    for name, pr in probs.items():
        models[name] = {"validation_roc_auc": m.roc_auc(val.y, pr["validation"]),
                        "test": scores(test.y, pr["test"], p.bootstrap, p.seed)}
    best_baseline = max(p.baselines, key=lambda b: models[b]["validation_roc_auc"]) if p.baselines else None
    report = {
        "rows": {s: f.height for s, f in zip((TRAIN, VALIDATION, TEST), (train_f, val_f, test_f))},
        "positive_rate": {s: float(f[LABEL].cast(pl.Float64).mean()) for s, f in zip((TRAIN, VALIDATION, TEST), (train_f, val_f, test_f))},
        "features": encoder.inputs, "dropped_features": encoder.dropped, "encoded_columns": len(encoder.columns),
        "sequence_items": len(vocab) if vocab else 0, "training": curve, "calibration": check, "models": models,
        "best_baseline": best_baseline,
    }
    if best_baseline:
        gain = lambda y, a, b: m.roc_auc(y, a) - m.roc_auc(y, b)  # noqa: E731
        neural_p, base_p = probs[NEURAL]["test"], probs[best_baseline]["test"]
        report["neural_vs_best_baseline"] = {
            "baseline": best_baseline, "roc_auc_gain": gain(test.y, neural_p, base_p),
            "ci": list(m.bootstrap_interval(gain, (test.y, neural_p, base_p), n=p.bootstrap, seed=p.seed)),
        }
    report["served"] = served(report.get("neural_vs_best_baseline"), bool(p.private))
    if augmented is not None:
        report["augment"] = augmented
    if p.private:
        report["private"] = private_report(spent, p.private.epsilon, public, probs[NEURAL], val.y, test.y, p.bootstrap, p.seed)
    return TaskResult(net, encoder, vocab, sequence_length, calib, report, test, test_f, baselines)


def export_served(result: TaskResult, folder: Path, metadata: dict, customers: pl.DataFrame, atol: float) -> dict:
    """Write the bundle of the model `report['served']` names (metadata: its calibration, figures and `served`);
    returns the parity figures. A baseline that cannot be exported leaves the neural model serving, and says so."""
    from mapwise.targeting.export import PROBABILITY, sklearn_graph, write_graph_bundle, write_target_bundle

    report, test = result.report, result.test_inputs
    served, length = report["served"], result.sequence_length if result.vocab else 0

    def described(name: str, calib: Calibration) -> dict:
        figures = report["models"][name]
        t = figures["test"]
        return {**metadata, "served": served, "calibration": {"x": calib.x, "y": calib.y},
                "metrics": {"test": {"roc_auc": t["roc_auc"], "pr_auc": t["pr_auc"], "log_loss": t["log_loss"]},
                            "validation": {"roc_auc": figures["validation_roc_auc"]}}}

    if served["model"] != NEURAL:
        model = result.baselines[served["model"]]
        try:
            return write_graph_bundle(folder, sklearn_graph(model, test.x.shape[1], length), test.arrays(),
                                      model.predict_proba(test.x)[:, 1], described(served["model"], Calibration()),
                                      customers, result.vocab, against="scikit-learn", atol=atol)
        except (MapwiseError, RuntimeError, ValueError) as err:
            why = str(err).splitlines()[0][:200]
            served.update(model=NEURAL, baseline=False, reason=f"The neural model serves: {served['model']} beats it but "
                                                               f"cannot be exported to ONNX ({why}).")
    return write_target_bundle(folder, result.net, test.arrays(), described(NEURAL, result.calibration), customers,
                               result.vocab, binary=True, output=PROBABILITY, sequence_length=result.sequence_length,
                               atol=atol)
