import json

import numpy as np
import polars as pl

from mapwise.recommend.evaluate import cases, evaluate
from mapwise.recommend.split import Split

from conftest import run_stage, tiny_project


def _split() -> Split:
    items = pl.DataFrame({"item_idx": [1, 2, 3, 4], "item_id": ["a", "b", "c", "d"], "popularity": [9, 5, 3, 1]},
                         schema_overrides={"item_idx": pl.Int32})
    test = pl.DataFrame(
        {"customer_id": ["u1", "u2", "u3"], "history": [[1, 2], [3], [4]], "targets": [[1, 3], [4], [4]],
         "unknown_targets": [0, 1, 0]},
        schema_overrides={"history": pl.List(pl.Int32), "targets": pl.List(pl.Int32), "unknown_targets": pl.Int32},
    )
    return Split(items, pl.DataFrame(), test.clear(), test, pl.DataFrame())


def test_target_slices_say_repeat_explore_or_mixed():
    from mapwise.recommend.slices import target_slices

    assert target_slices(_split()) == {"targets": {"u1": "mixed", "u2": "explore", "u3": "repeat"}}


def test_new_items_variant_drops_what_was_bought():
    both = cases(_split())
    assert [t.tolist() for t in both["all_items"].targets] == [[1, 3], [4], [4]]
    assert both["new_items"].customers == ["u1", "u2"]  # u3 only bought item 4 again
    assert [t.tolist() for t in both["new_items"].targets] == [[3], [4]]
    assert [e.tolist() for e in both["new_items"].exclude] == [[1, 2], [3]]


def _oracle(histories):
    scores = np.zeros((len(histories), 5), dtype=np.float32)
    scores[:, 0] = -np.inf
    truth = {(1, 2): [1, 3], (3,): [4], (4,): [4]}
    for row, h in enumerate(histories):
        scores[row, truth[tuple(h.tolist())]] = 1.0
    return scores


def _popular(histories):
    return np.tile(np.array([-np.inf, 4, 3, 2, 1], dtype=np.float32), (len(histories), 1))


def test_report_has_every_recommender_with_intervals_and_verdict():
    report = evaluate(_split(), {"oracle": _oracle, "popularity": _popular}, ks=[1, 2], slices={},
                      baselines=["popularity"], bootstrap=200, seed=0, headline_k=2)
    oracle = report["all_items"]["recommenders"]["oracle"]
    assert oracle["hr@1"] == 1.0 and oracle["recall@2"] == 1.0 and oracle["ndcg@2"] == 1.0
    popular = report["all_items"]["recommenders"]["popularity"]
    # popularity recommends [1, 2] to everyone: only u1 hits (item 1 at rank 1, recall 1/2)
    assert popular["recall@2"] == round(0.5 / 3, 5) and popular["hr@1"] == round(1 / 3, 5)
    assert popular["coverage@2"] == 0.5
    low, high = popular["ndcg@2_ci"]
    assert low <= popular["ndcg@2"] <= high
    verdict = oracle["ndcg@2_vs_best_baseline"]
    assert verdict["baseline"] == "popularity" and verdict["diff"] > 0
    assert "ndcg@2_vs_best_baseline" not in popular
    assert report["new_items"]["customers"] == 2


def test_evaluate_stage_end_to_end(tmp_path):
    root = tiny_project(tmp_path, models=["gru", "ranker"], max_epochs=1)
    for verb in ("split", "train", "evaluate"):
        done = run_stage(root, verb)
        assert done.returncode == 0, f"{verb}: {done.stderr[-2000:]}"
    report = json.loads((root / "reports/evaluate.json").read_text())
    for variant in ("all_items", "new_items"):
        recs = report[variant]["recommenders"]
        assert set(recs) == {"gru", "ranker", "popularity", "personal_popularity", "recency_frequency", "item_knn", "ease"}
        low, high = recs["gru"]["ndcg@10_ci"]
        assert low <= recs["gru"]["ndcg@10"] <= high
        assert recs["gru"]["ndcg@10_vs_best_baseline"]["baseline"] in {"popularity", "personal_popularity", "recency_frequency", "item_knn", "ease"}
        assert set(recs["gru"]["slices"]) == {"segment", "tenure", "targets"}
    ranker = report["ranker"]  # candidate recall, the ranker beside each generator alone, what its trees split on
    assert 0 < ranker["candidate_recall"]["all_items"] <= 1
    assert set(ranker["vs_generators"]["all_items"]) == {"own_history", "ease", "item_knn", "popularity"}
    assert ranker["feature_importance_gain"] and (root / "reports/plots/train/ranker.png").stat().st_size > 1000
    assert "NDCG@10" in done.stdout
    before = report["before_refit"]["all_items"]["gru"]  # the validation-selected model, beside the refit one
    assert before["refit_ndcg@10"] == report["all_items"]["recommenders"]["gru"]["ndcg@10"]
    assert before["ndcg@10_ci"][0] <= before["ndcg@10"] <= before["ndcg@10_ci"][1]
    assert "before the refit" in done.stdout
    assert (root / "reports/plots/ndcg_vs_k.png").stat().st_size > 1000
    assert pl.read_csv(root / "reports/plots/ndcg_all_items.csv").columns[0] == "k"
