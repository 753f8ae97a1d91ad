"""Targeting metrics on small hand-built cases, with the arithmetic written out; plus a plot smoke test."""

from __future__ import annotations

from math import log

import numpy as np
import pytest

from mapwise.targeting import metrics as m
from mapwise.targeting import plots

# Propensity: 6 customers, one tied score (0.8) shared by a positive and a negative.
Y = [0, 0, 1, 1, 0, 1]
P = [0.1, 0.4, 0.35, 0.8, 0.8, 0.9]

# Uplift: 8 customers, treated/control alternating, a tie at u=0.6 between a treated and a control row.
#   row   0    1    2    3    4    5    6    7
YU = [1, 0, 1, 1, 0, 0, 1, 1]
UU = [0.9, 0.8, 0.6, 0.6, 0.4, 0.3, 0.2, 0.1]
TU = [1, 0, 1, 0, 1, 0, 1, 0]
# Cumulative counts at each distinct u, best first (n taken, n_t treated, y_t, n_c control, y_c):
#   u=0.9: n1 n_t1 y_t1 n_c0 y_c0 | 0.8: n2 1 1 1 0 | 0.6: n4 2 2 2 1 | 0.4: n5 3 2 2 1
#   0.3:   n6 3 2 3 1            | 0.2: n7 4 3 3 1 | 0.1: n8 4 3 4 2
QINI_X = [0, 1, 2, 4, 5, 6, 7, 8]
# Qini = y_t - y_c * n_t / n_c (0 while n_c = 0):
#   1 - 0, 1 - 0, 2 - 1*2/2, 2 - 1*3/2, 2 - 1*3/3, 3 - 1*4/3, 3 - 2*4/4
QINI_Y = [0, 1, 1, 1, 0.5, 1, 5 / 3, 1]
# Uplift = (y_t / n_t - y_c / n_c) * n:
#   (1-0)*1, (1-0)*2, (1-1/2)*4, (2/3-1/2)*5, (2/3-1/3)*6, (3/4-1/3)*7, (3/4-1/2)*8
UPLIFT_Y = [0, 1, 2, 2, 5 / 6, 2, 35 / 12, 2]


def test_roc_auc_counts_ties_half():
    # positives 0.35, 0.8, 0.9 against negatives 0.1, 0.4, 0.8:
    # 0.35 beats 1; 0.8 beats 2 and ties 1 (0.5); 0.9 beats 3 -> 6.5 / 9 pairs
    assert m.roc_auc(Y, P) == pytest.approx(13 / 18)


def test_pr_auc_steps_over_distinct_thresholds():
    # descending: 0.9(+) | 0.8(+, -) | 0.4(-) | 0.35(+) | 0.1(-)
    # (precision, recall) at each threshold: (1, 1/3), (2/3, 2/3), (1/2, 2/3), (3/5, 1), (1/2, 1)
    # AP = 1/3 * 1 + 1/3 * 2/3 + 0 + 1/3 * 3/5 + 0 = 34/45
    assert m.pr_auc(Y, P) == pytest.approx(34 / 45)


def test_log_loss_and_clipping():
    expected = -(log(0.8) + log(0.6) + log(0.5) + log(0.9)) / 4
    assert m.log_loss([1, 0, 1, 0], [0.8, 0.4, 0.5, 0.1]) == pytest.approx(expected)
    # p = 0 for a positive is clipped to 1e-15: loss -log(1e-15) on that row
    assert m.log_loss([1], [0.0]) == pytest.approx(-log(1e-15))


def test_reliability_and_ece():
    y = [0, 1, 1, 0, 1]
    p = [0.05, 0.15, 0.62, 0.68, 0.95]
    # bins (width 0.1): 0 -> {0.05}, 1 -> {0.15}, 6 -> {0.62, 0.68}, 9 -> {0.95}; the rest are empty
    rows = m.reliability(y, p)
    assert [(r["lo"], r["hi"], r["count"]) for r in rows] == [
        (0.0, 0.1, 1), (0.1, 0.2, 1), (0.6, 0.7, 2), (0.9, 1.0, 1),
    ]
    assert [r["mean_predicted"] for r in rows] == pytest.approx([0.05, 0.15, 0.65, 0.95])
    assert [r["observed_rate"] for r in rows] == pytest.approx([0, 1, 0.5, 1])
    # |gaps| 0.05, 0.85, 0.15 (x2 rows), 0.05 -> (0.05 + 0.85 + 0.30 + 0.05) / 5
    assert m.expected_calibration_error(y, p) == pytest.approx(0.25)
    # p = 1 falls in the last bin
    assert m.reliability([1], [1.0], bins=4)[0]["lo"] == 0.75


def test_lift_table_splits_sorted_customers_and_breaks_ties_by_input_order():
    y = [1, 0, 0, 1, 0, 1, 0, 0, 1, 0]
    p = [0.9, 0.2, 0.8, 0.7, 0.1, 0.5, 0.3, 0.7, 0.4, 0.05]
    # by p, ties (rows 3 and 7 at 0.7) in input order: rows 0 2 3 | 7 5 8 | 6 1 | 4 9  (array_split 3,3,2,2)
    # y per group: [1 0 1] [0 1 1] [0 0] [0 0]; overall rate 4/10
    rows = m.lift_table(y, p, groups=4)
    assert [r["decile"] for r in rows] == [1, 2, 3, 4]
    assert [r["count"] for r in rows] == [3, 3, 2, 2]
    assert [r["positives"] for r in rows] == [2, 2, 0, 0]
    assert [r["rate"] for r in rows] == pytest.approx([2 / 3, 2 / 3, 0, 0])
    assert [r["lift"] for r in rows] == pytest.approx([5 / 3, 5 / 3, 0, 0])  # (2/3) / 0.4
    assert [r["cumulative_gain"] for r in rows] == pytest.approx([0.5, 1, 1, 1])
    assert [r["cumulative_share"] for r in rows] == pytest.approx([0.3, 0.6, 0.8, 1.0])


def test_qini_and_uplift_curves_group_tied_scores():
    x, values = m.qini_curve(YU, UU, TU)
    assert x.tolist() == QINI_X  # no point at 3: rows 2 and 3 share u = 0.6
    assert values == pytest.approx(QINI_Y)
    x, values = m.uplift_curve(YU, UU, TU)
    assert x.tolist() == QINI_X
    assert values == pytest.approx(UPLIFT_Y)


def test_qini_coefficient():
    # perfect ranking score y*t - y*(1-t): rows 0 2 6 -> 1; 1 4 5 -> 0; 3 7 -> -1
    # perfect Qini at n = 3, 6, 8: 3 - 0, 3 - 0*4/2, 3 - 2*4/4 -> x [0 3 6 8], y [0 3 3 1]
    # areas: perfect 4.5 + 9 + 4 = 17.5; random (0,0)-(8,1) = 4
    # model: 0.5 + 1 + 2 + 0.75 + 0.75 + 4/3 + 4/3 = 23/3
    # coefficient (23/3 - 4) / (17.5 - 4) = 22/81
    assert m.qini_auc_score(YU, UU, TU) == pytest.approx(22 / 81)
    # without negative effects the perfect curve is (0,0), (q,q), (8,q), q = 3 - 4 * 2/4 = 1: area 0.5 + 7
    assert m.perfect_qini_curve(YU, TU, negative_effect=False)[1].tolist() == [0, 1, 1]
    assert m.qini_auc_score(YU, UU, TU, negative_effect=False) == pytest.approx((23 / 3 - 4) / (7.5 - 4))


def test_auuc():
    # control responders (rows 3, 7) outnumber treated non-responders (row 4), so the perfect score is
    # 2*(y == t) + y: rows 0 2 6 -> 3; 1 5 -> 2; 3 7 -> 1; 4 -> 0
    # perfect uplift at n = 3, 5, 7, 8: (1-0)*3, (1-0)*5, (1-2/4)*7, (3/4-2/4)*8 -> y [0 3 5 3.5 2]
    x, values = m.perfect_uplift_curve(YU, TU)
    assert x.tolist() == [0, 3, 5, 7, 8]
    assert values == pytest.approx([0, 3, 5, 3.5, 2])
    # areas: perfect 4.5 + 8 + 8.5 + 2.75 = 23.75; random (0,0)-(8,2) = 8
    # model: 0.5 + 1.5 + 4 + 17/12 + 17/12 + 59/24 + 59/24 = 13.75
    # AUUC (13.75 - 8) / (23.75 - 8) = 23/63
    assert m.uplift_auc_score(YU, UU, TU) == pytest.approx(23 / 63)


def test_uplift_at_k_overall():
    # sklift's order: a stable ascending sort reversed, so tied rows 2 and 3 come as 3, 2:
    # rows 0 1 3 2 4 5 6 7
    # k=0.4 -> int(3.2) = 3 rows: 0 (t, y1), 1 (c, y0), 3 (c, y1) -> 1 - 1/2
    assert m.uplift_at_k(YU, UU, TU, k=0.4) == pytest.approx(0.5)
    assert m.uplift_at_k(YU, UU, TU, k=3) == pytest.approx(0.5)
    # k=0.7 -> int(5.6) = 5 rows: 0 1 3 2 4 -> treated 0 2 4 (2/3), control 1 3 (1/2)
    assert m.uplift_at_k(YU, UU, TU, k=0.7) == pytest.approx(1 / 6)
    # k=0.2 -> 1 row (row 0): no control row in the top
    with pytest.raises(ValueError, match="0 control"):
        m.uplift_at_k(YU, UU, TU, k=0.2)


def test_uplift_at_k_by_group():
    # treated by u: rows 0 2 4 6 (y 1 1 0 1); control: rows 1 3 5 7 (y 0 1 0 1)
    # k=0.7 -> int(4 * 0.7) = 2 of each: treated 1, control 1/2
    assert m.uplift_at_k(YU, UU, TU, k=0.7, strategy="by_group") == pytest.approx(0.5)
    # k=0.75 -> 3 of each: treated 2/3, control 1/3
    assert m.uplift_at_k(YU, UU, TU, k=0.75, strategy="by_group") == pytest.approx(1 / 3)
    # k=0.2 -> int(0.8) = 0 rows of each
    with pytest.raises(ValueError, match="0 treated"):
        m.uplift_at_k(YU, UU, TU, k=0.2, strategy="by_group")


def test_policy_value_by_inverse_propensity():
    y = [10, 0, 5, 0, 8, 2]
    arm = ["email", "control", "sms", "email", "control", "sms"]
    chosen = ["email", "email", "sms", "control", "control", "email"]
    propensity = [0.5, 0.25, 0.25, 0.5, 0.25, 0.25]
    # rows 0, 2, 4 follow the policy: (10 - 1) / 0.5 + (5 - 0.5) / 0.25 + (8 - 0) / 0.25 = 18 + 18 + 32
    value = m.policy_value(y, arm, chosen, propensity, cost=1.0, cost_of={"sms": 0.5})
    assert value == pytest.approx(68 / 6)
    # free contacts: 20 + 20 + 32
    assert m.policy_value(y, arm, chosen, propensity) == pytest.approx(72 / 6)


def test_bootstrap_interval_is_reproducible_and_covers_the_estimate():
    rng = np.random.default_rng(7)
    n = 200
    arm = rng.choice(["control", "email"], size=n)
    y = rng.binomial(1, np.where(arm == "email", 0.3, 0.1)).astype(float)
    chosen = np.full(n, "email")
    propensity = np.full(n, 0.5)
    point = m.policy_value(y, arm, chosen, propensity, cost=0.05)
    lo, hi = m.policy_value_interval(y, arm, chosen, propensity, cost=0.05, n=300, seed=3)
    assert lo < point < hi
    assert m.policy_value_interval(y, arm, chosen, propensity, cost=0.05, n=300, seed=3) == (lo, hi)
    # tiny sample: resamples with one class only (roc_auc raises) are skipped
    lo, hi = m.bootstrap_interval(m.roc_auc, [Y, P], n=200, seed=0)
    assert 0 <= lo <= m.roc_auc(Y, P) <= hi <= 1


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in length: y=6, p=5"):
        m.roc_auc(Y, P[:5])
    with pytest.raises(ValueError, match="differ in length"):
        m.qini_curve(YU, UU, TU[:7])


def test_plots_write_png(tmp_path):
    rows = m.reliability(Y, P, bins=4)
    gains = m.lift_table(Y, P, groups=3)
    paths = [
        plots.reliability_plot({"a": rows, "b": rows}, tmp_path / "rel.png", "Calibration"),
        plots.gain_plot({"a": gains}, tmp_path / "gain.png", "Gain"),
        plots.uplift_curves_plot({"a": m.qini_curve(YU, UU, TU)}, tmp_path / "qini.png", "Qini"),
        plots.attribution_plot({"recency": -0.4, "frequency": 0.2, "spend": 0.1}, tmp_path / "attr.png", "Why", top=2),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
