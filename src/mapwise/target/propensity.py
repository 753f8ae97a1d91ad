"""Propensity: a neural model beside scikit-learn baselines on the same split, with honest test figures.

Every model is fitted on the training rows; validation chooses early stopping and calibration;
the test rows are scored once, for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from mapwise.params import FitParams
from mapwise.target import metrics as m
from mapwise.target.datasets import LABEL, NOT_FEATURES, SEQUENCE, SPLIT, TEST, TRAIN, VALIDATION
from mapwise.target.features import Encoder

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


def fit_baselines(names: list[str], train: Inputs, val: Inputs, test: Inputs, seed: int) -> dict[str, dict]:
    """Each baseline's validation and test probabilities (on the encoded features)."""
    out = {}
    for name in names:
        model = baseline(name, seed).fit(train.x, train.y.astype(int))
        out[name] = {"validation": model.predict_proba(val.x)[:, 1], "test": model.predict_proba(test.x)[:, 1]}
    return out


def split_frames(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return tuple(frame.filter(pl.col(SPLIT) == s) for s in (TRAIN, VALIDATION, TEST))


def fit_params_for(p: FitParams, n_train: int) -> FitParams:
    """Batches no larger than a tenth of the training rows, so small tables still take several steps per pass."""
    return p.model_copy(update={"batch_size": max(8, min(p.batch_size, n_train // 10 or 1))})


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


def train_task(frame: pl.DataFrame, *, exclude: list[str], p, sequence_length: int, use_sequence: bool) -> TaskResult:  # noqa: ANN001 - PropensityParams
    """Fit the neural model and the baselines on one task's table; score validation and test."""
    from mapwise.target.fitting import fit, predict
    from mapwise.target.networks import PropensityNet

    train_f, val_f, test_f = split_frames(frame)
    if min(train_f[LABEL].n_unique(), val_f.height, test_f.height) < 2 or train_f.height < 20:
        raise ValueError(f"too few rows to train and test ({train_f.height} train, {val_f.height} validation, "
                         f"{test_f.height} test, labels {train_f[LABEL].unique().to_list()})")
    encoder = fit_encoder(frame, exclude, p.max_categories, p.numeric_bins)
    vocab = item_vocabulary(frame) if use_sequence and SEQUENCE in frame.columns else None
    train, val, test = (inputs(f, encoder, vocab, sequence_length) for f in (train_f, val_f, test_f))
    fit_p = fit_params_for(p.fit, len(train.y))
    net, curve = fit(lambda: PropensityNet(train.x.shape[1], list(fit_p.hidden), fit_p.dropout, len(vocab) if vocab else 0,
                                           fit_p.embedding_dim), [*train.arrays(), train.y], [*val.arrays(), val.y], fit_p, binary=True, arms=False, seed=p.seed)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    raw_val, raw_test = sigmoid(predict(net, *val.arrays())), sigmoid(predict(net, *test.arrays()))
    calib, check = calibration(raw_val, val.y, p.seed) if p.calibrate else (Calibration(), {"used": False})
    probs = {NEURAL: {"validation": calib(raw_val), "test": calib(raw_test)}}
    probs.update(fit_baselines(list(p.baselines), train, val, test, p.seed))
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
    return TaskResult(net, encoder, vocab, sequence_length, calib, report, test, test_f)
