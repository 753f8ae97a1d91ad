"""Synthetic profiles: the CTGAN transformer and model, the baselines, exact quality metrics, profiles and report."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.params import GanParams
from mapwise.profiles.build import PROFILE_SCHEMA, build_profiles, default_as_of
from mapwise.privacy.pseudonym import PSEUDONYM_LENGTH
from mapwise.sources.contracts import CONTRACTS
from mapwise.synth import quality
from mapwise.synth.baselines import GENERATORS, GaussianCopula, Independent
from mapwise.synth.gan import CTGAN
from mapwise.synth.profiles import sample_profiles, synthetic_profiles
from mapwise.synth.report import write_synth_report
from mapwise.synth.transform import Transformer, heavy_tailed

from conftest import tiny_events

NUMERIC, CATEGORICAL = ["x", "count", "spend"], ["seg", "channel"]
SMALL = GanParams(epochs=2, batch_size=50, pac=5, embedding_dim=8, generator=[32, 32], discriminator=[32, 32],
                  accelerator="cpu", devices=1)


def _mixed(n: int = 300, seed: int = 0) -> pl.DataFrame:
    """A bimodal number whose mode is told by a category, an integer count, a number and a category with nulls."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(["lo", "hi"], n)
    spend = rng.exponential(50, n)
    return pl.DataFrame({
        "x": np.where(seg == "lo", rng.normal(0, 1, n), rng.normal(10, 1, n)),
        "count": rng.integers(1, 6, n).astype(np.int32),
        "spend": pl.Series(spend).set(pl.Series(rng.random(n) < 0.1), None),
        "seg": seg,
        "channel": pl.Series(rng.choice(["web", "app", "none"], n)).replace("none", None),
    })


@pytest.fixture(scope="module")
def gan() -> CTGAN:
    return CTGAN.fit(_mixed(), NUMERIC, CATEGORICAL, SMALL, seed=0)


def test_transformer_round_trip_keeps_values_dtypes_and_nulls() -> None:
    frame = _mixed()
    transformer = Transformer.fit(frame, NUMERIC, CATEGORICAL, max_modes=10, seed=0)
    x, count, spend = transformer.numeric
    assert len(x.means) >= 2  # the two modes of x are found
    assert count.spikes == [1, 2, 3, 4, 5]  # each count value is common: a point mass of its own
    assert spend.log and not x.log and max(spend.means) < np.log1p(frame["spend"].max())  # modelled on a log scale
    encoded = transformer.transform(frame, seed=0)
    assert encoded.shape == (300, transformer.width)
    for span in transformer.spans:
        block = encoded[:, span.start:span.start + span.width]
        if span.activation == "tanh":
            assert np.abs(block).max() <= 0.99
        else:
            assert set(np.unique(block)) == {0, 1} and (block.sum(axis=1) == 1).all()
    restored = Transformer.from_dict(json.loads(json.dumps(transformer.to_dict()))).inverse(encoded)
    assert restored.schema == frame.schema
    np.testing.assert_allclose(restored["x"].to_numpy(), frame["x"].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(restored["spend"].fill_null(-1).to_numpy(), frame["spend"].fill_null(-1).to_numpy(),
                               atol=1e-3)
    assert restored["spend"].null_count() == frame["spend"].null_count() > 0
    assert restored.select("count", "seg", "channel").equals(frame.select("count", "seg", "channel"))


def test_heavy_tailed_is_what_a_log_scale_makes_more_symmetric() -> None:
    assert heavy_tailed(np.array([1.0, 10, 100, 1000, 10000]))  # skewness 1.47 -> 0.12
    assert heavy_tailed(np.array([0.0, 0, 0, 1, 100]))  # 1.50 -> 1.42
    assert not heavy_tailed(np.array([1.0, 2, 3, 4, 5]))  # 0 -> -0.41
    assert not heavy_tailed(np.array([-1000.0, -10, 0, 10, 1000]))  # symmetric either way


def test_transformer_rejects_missing_and_unsupported_columns() -> None:
    frame = _mixed()
    with pytest.raises(MapwiseError, match="'nope' is not in the table"):
        Transformer.fit(frame, ["nope"], [], max_modes=3, seed=0)
    with pytest.raises(MapwiseError, match="'seg'.*as a number"):
        Transformer.fit(frame, ["seg"], [], max_modes=3, seed=0)
    with pytest.raises(MapwiseError, match="both numeric and categorical"):
        Transformer.fit(frame, ["x"], ["x"], max_modes=3, seed=0)


def test_ctgan_samples_the_columns_with_their_dtypes(gan: CTGAN) -> None:
    real = _mixed()
    rows = gan.sample(120, seed=1)
    assert rows.schema == real.schema and rows.height == 120
    assert rows["x"].min() >= real["x"].min() and rows["x"].max() <= real["x"].max()
    assert set(rows["seg"]) <= {"lo", "hi"} and set(rows["channel"]) <= {"web", "app", None}
    assert len(gan.history) == SMALL.epochs and set(gan.history[0]) == {"epoch", "generator_loss", "critic_loss"}


def test_ctgan_conditional_sampling(gan: CTGAN) -> None:
    rows = gan.sample(40, seed=2, condition={"seg": "hi"})
    assert rows.height == 40 and set(rows["seg"]) == {"hi"}
    with pytest.raises(ValueError, match="'nope' of column 'seg'"):
        gan.sample(5, seed=0, condition={"seg": "nope"})
    with pytest.raises(ValueError, match="'x' is not a categorical column"):
        gan.sample(5, seed=0, condition={"x": "1"})


def test_ctgan_save_load_and_seeds_reproduce_samples(gan: CTGAN, tmp_path) -> None:
    gan.save(tmp_path)
    assert torch.load(tmp_path / "generator.pt", weights_only=True)  # plain tensors, no pickled objects
    loaded = CTGAN.load(tmp_path)
    assert loaded.sample(60, seed=3).equals(gan.sample(60, seed=3))
    assert loaded.history == gan.history
    assert not gan.sample(60, seed=4).equals(gan.sample(60, seed=3))
    again = CTGAN.fit(_mixed(), NUMERIC, CATEGORICAL, SMALL, seed=0)
    assert again.sample(60, seed=3).equals(gan.sample(60, seed=3))


def _correlated(n: int = 2000) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, n)
    return pl.DataFrame({"x": x, "y": 2 * x + rng.normal(0, 0.3, n), "k": rng.integers(0, 4, n).astype(np.int32),
                         "cat": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])})


@pytest.mark.parametrize("name", list(GENERATORS))
def test_baselines_keep_marginals(name: str) -> None:
    real = _correlated()
    rows = GENERATORS[name].fit(real, ["x", "y", "k"], ["cat"], seed=0).sample(2000, seed=1)
    assert rows.schema == real.schema
    assert min(quality.column_shapes(real, rows, ["x", "y", "k"], ["cat"]).values()) > 0.95


def test_copula_keeps_a_strong_correlation_and_independent_loses_it() -> None:
    real = _correlated()
    corr = {g.__name__: g.fit(real, ["x", "y", "k"], ["cat"], 0).sample(2000, 1).select(pl.corr("x", "y")).item()
            for g in (GaussianCopula, Independent)}
    assert corr["GaussianCopula"] > 0.95 and abs(corr["Independent"]) < 0.1


REAL = pl.DataFrame({"x": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 4], "c": ["a", "a", "b", None]})
SYNTH = pl.DataFrame({"x": [1.0, 2, 5, 6], "y": [4.0, 3, 2, 1], "c": ["a", "b", "b", "b"]})


def test_column_shapes_and_pair_trends_exact() -> None:
    # x: the CDFs differ most at 4 (1 vs 0.5); c: shares a .5/.25/null .25 vs .25/.75/0 -> TVD 0.5
    assert quality.column_shapes(REAL, SYNTH, ["x", "y"], ["c"]) == {"x": 0.5, "y": 1.0, "c": 0.5}
    # x|y: Spearman 1 vs -1; x|c: real deciles bin x as 1->0, 2->3, 3->6, 4->9 (synthetic 5, 6 -> 9), joint TVD 0.75
    assert quality.pair_trends(REAL, SYNTH, ["x", "y"], ["c"]) == {"x|y": 0.0, "x|c": 0.25, "y|c": 0.25}


def test_privacy_distances_exact() -> None:
    # training points (ECDF mid-ranks): (.125,.125,a) (.375,.375,a) (.625,.625,b) (.875,.875,null); a category
    # mismatch adds 1 to the squared distance; the synthetic rows' closest: .5590, .25, .4507, .625
    expected = np.array([np.sqrt(0.0625 + 0.25), 0.25, np.sqrt(0.140625 + 0.0625), 0.625])
    np.testing.assert_allclose(quality.closest_distances(REAL, SYNTH, ["x", "y"], ["c"]), expected)
    report = quality.privacy(REAL, SYNTH, REAL, ["x", "y"], ["c"])
    assert report["synthetic_median"] == pytest.approx((expected[0] + expected[2]) / 2)
    assert report["holdout_median"] == 0 and report["holdout_exact_copies"] == 4 and report["exact_copies"] == 0
    assert report["share_closer_than_holdout_p5"] == 0
    assert quality.near_copies(REAL, SYNTH, 0.3, ["x", "y"], ["c"]).tolist() == [False, True, False, False]
    assert quality.near_copies(REAL, REAL, 0.0, ["x", "y"], ["c"]).all()  # exact copies always
    holdout = SYNTH.with_columns(pl.col("c").fill_null("a"))
    assert quality.distance_threshold(REAL, holdout, 0.5, ["x", "y"], ["c"]) == pytest.approx(
        np.quantile(quality.closest_distances(REAL, holdout, ["x", "y"], ["c"]), 0.5))


def _separable(n: int, flip: bool = False) -> pl.DataFrame:
    x = np.linspace(-1, 1, n)
    label = np.where(x < 0, "low", "high")
    return pl.DataFrame({"x": x, "c": np.where(x < 0.5, "p", "q"), "t": np.where(flip, label[::-1], label)})


def test_utility_train_synthetic_test_real_exact() -> None:
    real, holdout = _separable(200), _separable(101)
    same = quality.utility(real, real, holdout, "t", ["x"], ["c", "t"], seed=0)
    assert same["trtr"] == same["tstr"] == {"roc_auc": 1.0, "accuracy": 1.0}
    flipped = quality.utility(real, _separable(200, flip=True), holdout, "t", ["x"], ["c", "t"], seed=0)
    assert flipped["tstr"] == {"roc_auc": 0.0, "accuracy": 0.0} and flipped["tstr_minus_trtr_roc_auc"] == -1.0
    constant = quality.utility(real, real.with_columns(pl.lit("low").alias("t")), holdout, "t", ["x"], ["c", "t"], 0)
    assert constant["tstr"]["roc_auc"] == 0.5 and constant["features"] == ["x", "c"]


def _profiles() -> pl.DataFrame:
    events = tiny_events()
    customers, items = (CONTRACTS[t] for t in (c.CUSTOMERS, c.ITEMS))
    keys = {c.CUSTOMERS: events.select(pl.col(c.CUSTOMER_ID).unique().sort()),
            c.ITEMS: events.select(pl.col(c.ITEM_ID).unique().sort())}
    tables = [keys[t.name].with_columns(pl.lit(None, d).alias(col) for col, d in t.dtypes.items() if col != t.key)
              .select(list(t.dtypes)) for t in (customers, items)]
    return build_profiles(events, *tables, as_of=default_as_of(events), sequence_length=3, category_tokens=2)


PROFILE_NUMERIC = [c.RECENCY_DAYS, c.FREQUENCY, c.MONETARY, c.TENURE_DAYS, c.PURCHASES, c.RETURNS]


def test_synthetic_profiles_pass_the_schema_with_bounds_enforced() -> None:
    real = _profiles().with_columns(pl.lit(None, pl.Int64).alias("age"))  # a customer trait beside the schema
    generated = pl.DataFrame({
        c.RECENCY_DAYS: [-2.0, 5.0, 1.0], c.FREQUENCY: pl.Series([0, 3, 2], dtype=pl.Int32),
        c.MONETARY: [-10.0, 30.0, 7.5], c.TENURE_DAYS: [1.0, 2.0, 40.0], c.PURCHASES: pl.Series([0, 1, 9], dtype=pl.Int32),
        c.RETURNS: pl.Series([1, 0, 3], dtype=pl.Int32), c.TOP_CATEGORY: ["i1", "i2", "i1"]})
    out = synthetic_profiles(generated, real, seed=0)
    assert out.columns == real.columns and out["age"].null_count() == 3
    assert out[c.CUSTOMER_ID].str.len_chars().to_list() == [PSEUDONYM_LENGTH] * 3
    assert out[c.CUSTOMER_ID].str.starts_with("s").all() and out[c.AS_OF].to_list() == real[c.AS_OF][:3].to_list()
    assert out[c.RECENCY_DAYS].to_list() == [0.0, 5.0, 1.0] and out[c.TENURE_DAYS].to_list() == [1.0, 5.0, 40.0]
    assert out[c.FREQUENCY].to_list() == [1, 3, 2] and out[c.PURCHASES].to_list() == [1, 3, 9]
    assert (out[c.DISTINCT_ITEMS] <= out[c.PURCHASES]).all()  # drawn from the real marginal, capped
    assert out[c.MONETARY].to_list() == [0.0, 30.0, 7.5] and out[c.RETURN_RATE].to_list() == [0.5, 0.0, 0.25]
    assert out[c.INTERESTS].to_list() == ["i1:1.00", "i2:1.00", "i1:1.00"] and out[c.RECENT_ITEMS].to_list() == [[]] * 3
    assert out[c.R_SCORE].to_list() == [5, 1, 3] and out[c.F_SCORE].to_list() == [1, 5, 3]
    PROFILE_SCHEMA.validate(out.select(list(PROFILE_SCHEMA.columns)))
    with pytest.raises(MapwiseError, match="'nope' is not a profile column"):
        synthetic_profiles(generated.with_columns(nope=pl.lit(1)), real, seed=0)


def test_sample_profiles_drops_near_copies_and_redraws() -> None:
    real = _profiles()
    train, holdout = real[:60], real[60:]
    model = GaussianCopula.fit(train, PROFILE_NUMERIC, [c.TOP_CATEGORY], seed=0)
    threshold = quality.distance_threshold(train, holdout, 0.25, PROFILE_NUMERIC, [c.TOP_CATEGORY])
    out, stats = sample_profiles(model, 50, train, threshold, seed=0)
    assert out.height == 50 and stats["dropped"] > 0 and stats["drawn"] - stats["dropped"] >= 50
    kept = out.select(PROFILE_NUMERIC + [c.TOP_CATEGORY])
    assert quality.closest_distances(train, kept, PROFILE_NUMERIC, [c.TOP_CATEGORY]).min() > threshold
    PROFILE_SCHEMA.validate(out)


def test_evaluate_report_is_json_and_the_page_is_written(tmp_path) -> None:
    real = _correlated(600)
    train, holdout = real[:400], real[400:]
    synthetic = {name: g.fit(train, ["x", "y", "k"], ["cat"], 0).sample(300, 1) for name, g in GENERATORS.items()}
    report = quality.evaluate(train, holdout, synthetic, ["x", "y", "k"], ["cat"], "cat", seed=0)
    json.dumps(report, allow_nan=False)
    copula = report["generators"]["gaussian_copula"]
    assert copula["pair_trend_scores"]["x|y"] > report["generators"]["independent"]["pair_trend_scores"]["x|y"] + 0.4
    assert copula["quality"] == pytest.approx((copula["shape"] + copula["pair_trends"]) / 2)
    copula["history"] = [{"epoch": 1, "generator_loss": 1.0, "critic_loss": -0.5}]
    copula["near_copies"] = {"dropped": 7}
    write_synth_report(report, tmp_path / "plots", tmp_path / "synth.html")
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "shapes.png", "marginals.png", "correlations.png", "dcr.png", "losses.png"}
    page = (tmp_path / "synth.html").read_text()
    assert page.count("<img") == 5 and "gaussian_copula" in page and "real holdout (reference)" in page
