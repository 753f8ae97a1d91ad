"""Targeting models in the service: propensity scores and next best actions from a bundle, on onnxruntime.

A targeting bundle (written by `mapwise.targeting.export`) has the recommenders' layout. Its metadata
holds the feature encoder, so inputs are encoded here exactly as in training, from either:
- customer ids, looked up in the bundle's customers.parquet (each customer's features as of the latest
  data); an id the bundle does not hold is reported per id as not found;
- posted rows of raw feature values, checked by `rows_frame` (a ValueError names the row and column).

Reasons are integrated gradients computed by finite differences on the ONNX graph
(`numeric_integrated_gradients`), from the bundle's `feature_baseline` to the row, summed per source
feature; for propensity they explain the model's probability before calibration (an isotonic map
has no useful gradient), so they add up to p(row) - p(baseline) of the uncalibrated model.
Neither torch nor scikit-learn is imported here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl

from mapwise.errors import MapwiseError
from mapwise.bundles.format import CUSTOMERS_FILE, ITEMS_FILE, METADATA_FILE, MODEL_FILE, bundle_files
from mapwise.bundles.runtime import session
from mapwise.targeting.reasons import by_group, numeric_integrated_gradients, top_reasons
from mapwise.targeting.features import Encoder, rows_frame

PROPENSITY, UPLIFT = "propensity", "uplift"
FEATURES, SEQUENCE_INPUT = "features", "sequence"  # the graph's names (mapwise.targeting.export, which needs torch)
PROBABILITY, OUTCOMES = "probability", "outcomes"
ITEM_INDEX, ITEM = "item_idx", "item_id"
CUSTOMER_ID = "customer_id"
SEQUENCE = "sequence"  # customers.parquet column and row key: item ids bought, oldest first
NO_CONTACT = "no_contact"
TOP_REASONS = 5


def propensity_model_name(prefix: str, task: str) -> str:
    """The registered name of a task's propensity model (register.target_prefix)."""
    return f"{prefix}-propensity-{task}"


def uplift_model_name(prefix: str) -> str:
    """The registered name of the uplift model."""
    return f"{prefix}-uplift"


@dataclass
class Inputs:
    """Encoded inputs for a request: one label per requested row, and model inputs for the rows found."""

    labels: list[dict]  # {"customer_id": ...} or {"index": i}, in request order
    found: list[int]  # positions (in `labels`) of the rows encoded below
    x: np.ndarray  # [len(found), F] float32
    seq: np.ndarray | None  # [len(found), L] int64, when the model reads a sequence
    values: list[dict]  # raw feature values of each found row (what reasons show)


class TargetModel:
    """A loaded targeting bundle (propensity or uplift): encoder, onnxruntime session and lookup tables."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        files = bundle_files(folder)
        try:
            meta = json.loads(files[METADATA_FILE].read_text())
            self.session = session(files[MODEL_FILE], threads=threads)
            items = pl.read_parquet(files[ITEMS_FILE])
            customers = pl.read_parquet(files[CUSTOMERS_FILE])
        except (OSError, ValueError, ort.capi.onnxruntime_pybind11_state.Fail,
                ort.capi.onnxruntime_pybind11_state.InvalidGraph,
                ort.capi.onnxruntime_pybind11_state.InvalidProtobuf) as err:
            raise MapwiseError(f"{folder}: cannot load the bundle ({str(err).splitlines()[0][:200]})") from None
        self.metadata = meta
        self.kind = meta.get("kind")
        if self.kind not in (PROPENSITY, UPLIFT):
            raise MapwiseError(f"{folder}: not a targeting bundle (kind {self.kind!r}, expected propensity or uplift)")
        try:
            self.encoder = Encoder.from_dict(meta["encoder"])
            self.baseline = np.asarray(meta["feature_baseline"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise MapwiseError(f"{folder}: metadata.json lacks a usable encoder or feature_baseline ({err})") from None
        self.n_features = len(self.encoder.columns)
        if self.baseline.shape != (self.n_features,):
            raise MapwiseError(f"{folder}: feature_baseline has {self.baseline.size} values for {self.n_features} columns")
        self.inputs = self.encoder.inputs
        if self.kind == PROPENSITY:
            self.task = str(meta.get("task", ""))
            calibration = meta.get("calibration") or {}
            self.calibration_x = [float(v) for v in calibration.get("x") or []]
            self.calibration_y = [float(v) for v in calibration.get("y") or []]
            if len(self.calibration_x) != len(self.calibration_y):
                raise MapwiseError(f"{folder}: calibration has {len(self.calibration_x)} x and {len(self.calibration_y)} y")
            self.sequence_length = int(meta.get("sequence_length") or 0)
            self.output = PROBABILITY
        else:
            self.arms = [str(a) for a in meta.get("arms") or []]
            if len(self.arms) < 2:
                raise MapwiseError(f"{folder}: an uplift bundle needs a control and at least one treated arm")
            self.outcome = str(meta.get("outcome", ""))
            self.contact_cost = float(meta.get("contact_cost") or 0.0)
            self.sequence_length = 0
            self.output = OUTCOMES
        expected = [FEATURES] + ([SEQUENCE_INPUT] if self.sequence_length else [])
        names = [i.name for i in self.session.get_inputs()]
        if names != expected or [o.name for o in self.session.get_outputs()] != [self.output]:
            raise MapwiseError(f"{folder}: the graph reads {names} and writes "
                               f"{[o.name for o in self.session.get_outputs()]} (expected {expected} -> {self.output})")
        width = self.session.get_inputs()[0].shape[-1]
        if isinstance(width, int) and width != self.n_features:
            raise MapwiseError(f"{folder}: the graph reads {width} features, the encoder writes {self.n_features}")
        self.item_index = dict(zip(items[ITEM].to_list(), items[ITEM_INDEX].to_list())) if ITEM in items.columns else {}
        if CUSTOMER_ID not in customers.columns:
            raise MapwiseError(f"{folder}: {CUSTOMERS_FILE} has no {CUSTOMER_ID} column")
        self.customers = customers
        self.customer_row = {cid: i for i, cid in enumerate(customers[CUSTOMER_ID].cast(pl.String).to_list())}
        self.check()

    # -- inputs ---------------------------------------------------------------------------------------------

    def sequences(self, sequences: list[list[str] | None]) -> np.ndarray:
        """[rows, sequence_length] item indices, left-padded with 0, newest last; unknown items dropped."""
        length = self.sequence_length
        out = np.zeros((len(sequences), length), dtype=np.int64)
        for row, items in enumerate(sequences):
            known = [self.item_index[i] for i in (items or []) if i in self.item_index][-length:]
            if known:
                out[row, length - len(known):] = known
        return out

    def from_ids(self, customer_ids: list[str], keys: list[str] | None = None) -> Inputs:
        """Inputs of customers looked up by `keys` (default the ids themselves: pseudonyms); labels show the ids."""
        keys = customer_ids if keys is None else keys
        labels = [{CUSTOMER_ID: cid} for cid in customer_ids]
        found = [i for i, key in enumerate(keys) if key in self.customer_row]
        frame = self.customers[[self.customer_row[keys[i]] for i in found]]
        seq = self.sequences(frame[SEQUENCE].to_list() if SEQUENCE in frame.columns else [None] * frame.height) \
            if self.sequence_length else None
        names = [n for n in self.inputs if n in frame.columns]
        values = [{n: _plain(v) for n, v in row.items()} for row in frame.select(names).iter_rows(named=True)]
        x = self.encoder.transform(frame) if frame.height else np.zeros((0, self.n_features), dtype=np.float32)
        return Inputs(labels, found, x, seq, values)

    def from_rows(self, rows: list[dict]) -> Inputs:
        """Inputs of posted feature rows (a row may also carry `sequence`, item ids oldest first, when the model reads one).

        A wrong name or type raises ValueError naming the row and the column.
        """
        features, sequences = [], []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"rows[{i}]: expected an object of feature values")
            if self.sequence_length and SEQUENCE in row:
                seq = row[SEQUENCE]
                if seq is not None and (not isinstance(seq, list) or not all(isinstance(s, str) for s in seq)):
                    raise ValueError(f"rows[{i}].{SEQUENCE}: expected a list of item ids")
                sequences.append(seq)
                row = {k: v for k, v in row.items() if k != SEQUENCE}
            else:
                sequences.append(None)
            for name, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
                    raise ValueError(f"rows[{i}].{name}: number out of range")
            features.append(row)
        frame = rows_frame(features, self.encoder)
        with np.errstate(over="ignore", invalid="ignore"):
            x = self.encoder.transform(frame)
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            row, column = bad[0]
            raise ValueError(f"rows[{row}].{self.encoder.groups[column]}: out of the model's range")
        values = [{n: _plain(row.get(n)) for n in self.inputs} for row in features]
        seq = self.sequences(sequences) if self.sequence_length else None
        return Inputs([{"index": i} for i in range(len(rows))], list(range(len(rows))), x, seq, values)

    # -- scoring --------------------------------------------------------------------------------------------

    def run(self, x: np.ndarray, seq: np.ndarray | None = None) -> np.ndarray:
        """The graph's output as float64: probability [B] (before calibration) or outcomes [B, arms]."""
        feeds = {FEATURES: np.ascontiguousarray(x, dtype=np.float32)}
        if self.sequence_length:
            feeds[SEQUENCE_INPUT] = (np.ascontiguousarray(seq, dtype=np.int64) if seq is not None
                                     else np.zeros((len(x), self.sequence_length), dtype=np.int64))
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float64)

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.calibration_x, self.calibration_y) if self.calibration_x else p

    def check(self) -> None:
        """Smoke check: the baseline row and a known customer score finitely, in the expected shape."""
        x = self.baseline[None, :]
        if self.customers.height:
            x = np.concatenate([x, self.encoder.transform(self.customers.head(1))])
        out = self.run(x)
        shape = (len(x),) if self.kind == PROPENSITY else (len(x), len(self.arms))
        if out.shape != shape or not np.isfinite(out).all():
            raise MapwiseError(f"smoke check: output of shape {out.shape} (expected {shape}, all finite)")

    def _reasons(self, inputs: Inputs, rows: np.ndarray, score) -> list[list[dict]]:  # noqa: ANN001
        """Top reasons for the given found rows; `score(x, seq)` -> [N] is the quantity explained."""
        if not len(rows):
            return []
        if inputs.seq is None:
            attributions = numeric_integrated_gradients(lambda pts: score(pts, None), inputs.x[rows], self.baseline)
        else:  # one row at a time: its sequence stays fixed along the path
            attributions = np.concatenate([
                numeric_integrated_gradients(
                    lambda pts, s=inputs.seq[r]: score(pts, np.repeat(s[None, :], len(pts), axis=0)),
                    inputs.x[r:r + 1], self.baseline)
                for r in rows])
        names, grouped = by_group(attributions, self.encoder.groups)
        return [top_reasons(grouped[i], names, inputs.values[r], top=TOP_REASONS) for i, r in enumerate(rows)]

    def propensity(self, inputs: Inputs, *, explain: bool = False) -> list[dict]:
        """Per requested row: its label, `found` (ids only), the calibrated `probability`, and `reasons` when asked."""
        if self.kind != PROPENSITY:
            raise MapwiseError("not a propensity model")
        results = [dict(label, found=False) if CUSTOMER_ID in label else dict(label) for label in inputs.labels]
        if inputs.found:
            p = self.calibrate(self.run(inputs.x, inputs.seq))
            reasons = self._reasons(inputs, np.arange(len(inputs.found)), self.run) if explain else None
            for j, pos in enumerate(inputs.found):
                results[pos].update(probability=float(p[j]))
                if CUSTOMER_ID in results[pos]:
                    results[pos]["found"] = True
                if reasons is not None:
                    results[pos]["reasons"] = reasons[j]
        return results

    def next_best_action(self, inputs: Inputs, *, explain: bool = False) -> list[dict]:
        """Per requested row: the treated arm with the largest uplift net of contact_cost (or no_contact when none is
        positive), `expected_uplift` (net; 0 for no contact), gross `uplift` per treated arm and, when asked, reasons
        for the best treated arm's uplift (`explained_arm`, given even when the action is no_contact)."""
        if self.kind != UPLIFT:
            raise MapwiseError("not an uplift model")
        results = [dict(label, found=False) if CUSTOMER_ID in label else dict(label) for label in inputs.labels]
        if not inputs.found:
            return results
        outcomes = self.run(inputs.x)
        uplift = outcomes[:, 1:] - outcomes[:, :1]
        net = uplift - self.contact_cost
        best = net.argmax(axis=1)
        gain = net[np.arange(len(net)), best]
        reasons: dict[int, list[dict]] = {}
        if explain:
            for a in np.unique(best):
                rows = np.flatnonzero(best == a)
                arm = int(a) + 1
                for r, why in zip(rows, self._reasons(inputs, rows, lambda x, _s, k=arm: _arm_uplift(self.run(x), k))):
                    reasons[int(r)] = why
        for j, pos in enumerate(inputs.found):
            contact = bool(gain[j] > 0)
            results[pos].update(
                action=self.arms[best[j] + 1] if contact else NO_CONTACT,
                expected_uplift=float(gain[j]) if contact else 0.0,
                uplift={name: float(u) for name, u in zip(self.arms[1:], uplift[j])},
            )
            if CUSTOMER_ID in results[pos]:
                results[pos]["found"] = True
            if explain:
                results[pos].update(explained_arm=self.arms[best[j] + 1], reasons=reasons[j])
        return results

    def info(self) -> dict:
        """What `/model` shows: kind, task or outcome and arms, the features a caller may post, metrics, lineage."""
        meta = self.metadata
        out = {"kind": self.kind, "model": meta.get("model"), "features": self.inputs,
               "customers": self.customers.height, "metrics": meta.get("metrics", {}),
               "data_version": meta.get("lineage", {}).get("data_version")}
        if self.kind == PROPENSITY:
            out.update(task=self.task, calibrated=bool(self.calibration_x), sequence=bool(self.sequence_length))
        else:
            out.update(outcome=self.outcome, arms=self.arms, contact_cost=self.contact_cost)
        return out


def _arm_uplift(outcomes: np.ndarray, arm: int) -> np.ndarray:
    return outcomes[:, arm] - outcomes[:, 0]


def _plain(value: object) -> object:
    """A JSON-ready feature value: NaN as None, other non-plain values as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return float(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item())
    return str(value)
