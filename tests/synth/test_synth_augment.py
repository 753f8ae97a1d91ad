"""Synthetic rows for scarce segments of a propensity task: only the training rows grow, and both models are reported."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mapwise.errors import MapwiseError
from mapwise.params import AugmentParams, FitParams, GanParams, PrivateParams, PropensityParams
from mapwise.synth.augment import scarce_segments, synthetic_rows
from mapwise.targeting.datasets import LABEL, ROW_ID, SPLIT, TEST, TRAIN, VALIDATION
from mapwise.targeting.propensity import NEURAL, train_task

GAN = GanParams(epochs=2, batch_size=40, pac=2, generator=[16], discriminator=[16], embedding_dim=8, accelerator="cpu",
                devices=1)


def _table(n: int = 900, seed: int = 0) -> pl.DataFrame:
    """Spend drives the label; region 'north' is rare (5% of rows)."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 20.0, n)
    region = np.where(rng.random(n) < 0.05, "north", np.where(rng.random(n) < 0.5, "east", "west"))
    label = rng.random(n) < 1 / (1 + np.exp(-(spend - 40) / 10))
    split = np.array([TRAIN] * (n * 6 // 10) + [VALIDATION] * (n * 2 // 10) + [TEST] * (n - n * 8 // 10))
    return pl.DataFrame({ROW_ID: [f"c{i}" for i in range(n)], "spend": spend, "region": region,
                         "member": rng.random(n) < 0.3, LABEL: label, SPLIT: split})


def test_only_scarce_segments_get_rows_in_the_training_dtypes():
    train = _table().filter(pl.col(SPLIT) == TRAIN)
    p = AugmentParams(segment="region", min_rows=100, gan=GAN)
    assert list(scarce_segments(train, p)) == ["north"]
    rows, report = synthetic_rows(train, ["spend", "region", "member"], LABEL, p, seed=0)
    real = report["segments"]["north"]["real_rows"]
    assert rows.height == 100 - real == report["segments"]["north"]["synthetic_rows"]
    assert rows["region"].unique().to_list() == ["north"] and rows.schema == train.schema
    assert rows[ROW_ID].null_count() == rows.height and rows[LABEL].null_count() == 0
    with pytest.raises(MapwiseError, match="augment.segment 'zone'"):
        scarce_segments(train, AugmentParams(segment="zone", gan=GAN))


def test_train_task_reports_both_models_and_keeps_the_one_validation_prefers():
    common = {"tasks": {}, "baselines": ["logistic"], "bootstrap": 30,
              "fit": FitParams(hidden=[8], batch_size=64, lr=0.01, max_epochs=3)}
    plain = train_task(_table(), exclude=[], p=PropensityParams(**common), sequence_length=0, use_sequence=False)
    result = train_task(_table(), exclude=[], p=PropensityParams(**common), sequence_length=0, use_sequence=False,
                        augment=AugmentParams(segment="region", min_rows=100, gan=GAN))
    a = result.report["augment"]
    table = _table()
    assert set(a["segments"]) == {"north"}
    assert a["test_scarce_rows"] == table.filter((pl.col(SPLIT) == TEST) & (pl.col("region") == "north")).height
    assert a["without"]["test_roc_auc"] == plain.report["models"][NEURAL]["test"]["roc_auc"]
    kept = a["with"] if a["kept"] == "augmented" else a["without"]
    assert result.report["models"][NEURAL]["test"]["roc_auc"] == kept["test_roc_auc"]
    assert a["kept"] == ("augmented" if a["with"]["validation_roc_auc"] > a["without"]["validation_roc_auc"] else "real only")
    assert a["test_gain"]["ci"][0] <= a["test_gain"]["roc_auc"] <= a["test_gain"]["ci"][1]
    assert result.report["rows"][TRAIN] == plain.report["rows"][TRAIN]  # the split's own rows, as before


def test_augment_and_private_are_refused_together():
    with pytest.raises(ValueError, match="cannot be combined"):
        PropensityParams(tasks={"t": {"kind": "session_purchase"}}, private=PrivateParams(),
                         augment={"t": AugmentParams(segment="region")})
