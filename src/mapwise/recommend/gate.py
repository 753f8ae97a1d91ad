"""The promotion gate: the challenger becomes champion only when it beats the champion on the same test data.

A learned model that did not beat the best baseline of its run (the register stage's verdict, a version tag)
is refused whatever the champion; the register stage registers that baseline in its place.

Both versions are loaded from the registry as ONNX bundles and rank the current split's test window
(mapped through item ids, so a champion trained on another item index is judged fairly). The
challenger needs a headline NDCG gain of at least `promote.margin`, and may not lose more than
`promote.max_slice_drop` on any slice with enough customers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.bundles.format import Bundle, load_bundle
from mapwise.errors import MapwiseError
from mapwise.recommend.evaluate import Scorer, cases, evaluate_case, item_popularity
from mapwise.bundles.runtime import INPUT, SCORES
from mapwise.recommend.models.sequences import pad_left
from mapwise.params import EvaluateParams, PromoteParams, TrackingParams
from mapwise.bundles.registry import (
    BEATS_BASELINE,
    CHALLENGER,
    CHAMPION,
    SERVED_BASELINE,
    SERVED_REASON,
    Decision,
    alias_version,
    client,
    download,
    forgotten_in,
)
from mapwise.recommend.split import Split
from mapwise.columns import ITEM_IDX
from mapwise.tracking import tracking_uri



def bundle_scorer(bundle: Bundle, split_items: pl.DataFrame) -> Scorer:
    """Score histories given in the split's item index with a bundle's graph; items it lacks score -inf."""
    own = dict(zip(bundle.items[c.ITEM_ID].to_list(), bundle.items[ITEM_IDX].to_list(), strict=True))
    ids = split_items.sort(ITEM_IDX)[c.ITEM_ID].to_list()
    to_bundle = np.array([0, *(own.get(i, 0) for i in ids)], dtype=np.int64)  # split index -> bundle index (0: unknown)
    known = np.flatnonzero(to_bundle)

    def score(histories: list[np.ndarray]) -> np.ndarray:
        out = np.full((len(histories), len(ids) + 1), -np.inf, dtype=np.float32)
        step = bundle.rows_per_call
        for start in range(0, len(histories), step):
            mapped = [to_bundle[h][to_bundle[h] > 0] for h in histories[start : start + step]]
            windows = pad_left(mapped, bundle.max_len)
            scores = bundle.session.run([SCORES], {INPUT: windows})[0]
            out[start : start + len(mapped), known] = scores[:, to_bundle[known]]
        return out

    return score


def compare(split: Split, challenger: Bundle, champion: Bundle, slices: dict, p: PromoteParams, e: EvaluateParams) -> dict:
    """Both bundles on the split's test window (variant `p.variant`): means, paired difference, slices."""
    scorers = {"challenger": bundle_scorer(challenger, split.items), "champion": bundle_scorer(champion, split.items)}
    return evaluate_case(
        cases(split)[p.variant], scorers, ks=[e.headline_k], popularity=item_popularity(split), slices=slices,
        baselines=["champion"], bootstrap=e.bootstrap, seed=e.seed, headline_k=e.headline_k,
    )


def judge(report: dict, p: PromoteParams, headline_k: int) -> tuple[bool, str, dict]:
    """(promote?, why, figures) from a `compare` report."""
    headline = f"ndcg@{headline_k}"
    if not report["customers"]:  # a small catalogue can leave a variant (new items) without anyone to score
        return False, f"no test customer in the {p.variant} variant: nothing to compare on", {"variant": p.variant,
                                                                                               "customers": 0}
    ch, champ = report["recommenders"]["challenger"], report["recommenders"]["champion"]
    paired = ch[f"{headline}_vs_best_baseline"]
    figures = {
        "variant": p.variant, "customers": report["customers"], "challenger": ch[headline], "champion": champ[headline],
        "diff": paired["diff"], "diff_ci": paired["ci"], "margin": p.margin, "slices": {},
    }
    drops = []
    for slice_name, labels in ch["slices"].items():
        for label, stats in labels.items():
            before = champ["slices"][slice_name][label][headline]
            key = f"{slice_name}={label}"
            figures["slices"][key] = {"customers": stats["customers"], "challenger": stats[headline], "champion": before}
            if stats["customers"] >= p.min_slice_customers and before - stats[headline] > p.max_slice_drop:
                drops.append(f"{key} {stats[headline]:.4f} vs {before:.4f}")
    gain = ch[headline] - champ[headline]
    summary = f"{headline} ({p.variant}) {ch[headline]:.4f} vs champion {champ[headline]:.4f} ({gain:+.4f}, margin {p.margin:g})"
    if gain < p.margin:
        return False, f"not better by the margin: {summary}", figures
    if drops:
        return False, f"slice regression beyond {p.max_slice_drop:g}: {'; '.join(drops)}", figures
    return True, f"better: {summary}", figures


def gate(
    tracking: TrackingParams, model_name: str, split: Split, slices: dict, p: PromoteParams, e: EvaluateParams,
    cache_dir: Path, *, version: str | None = None, force: bool = False,
) -> Decision:
    """Decide whether `version` (default: the challenger) replaces the champion; nothing is applied here."""
    cl = client(tracking)
    challenger = version or alias_version(cl, model_name, CHALLENGER)
    if challenger is None:
        raise MapwiseError(f"'{model_name}' has no challenger; run the register stage first")
    try:
        tags = cl.get_model_version(model_name, challenger).tags
    except Exception:  # noqa: BLE001  (MlflowException or a malformed version string)
        raise MapwiseError(f"'{model_name}' has no version {challenger}") from None
    champion = alias_version(cl, model_name, CHAMPION)
    decision = Decision("refuse", model_name, challenger, champion, champion, "")
    if tags.get(SERVED_REASON):
        decision.figures["served"] = tags[SERVED_REASON]
    if challenger == champion:
        decision.action, decision.reason = "keep", f"version {challenger} is already the champion"
    elif tags.get("parity") != "passed":
        decision.reason = f"version {challenger} did not pass the ONNX parity check"
    elif tags.get(BEATS_BASELINE) == "false" and not force:
        decision.reason = (f"version {challenger} ({tags.get('model')}) does not beat the best baseline of its run on the "
                           f"test window: {tags.get(SERVED_REASON)}")
    elif force:
        decision.action, decision.champion_after, decision.reason = "force", challenger, "promoted by hand, gate skipped"
    elif champion is None:
        decision.action, decision.champion_after, decision.reason = "promote", challenger, (
            "no champion yet" + (f"; {tags[SERVED_REASON]}" if tags.get(SERVED_BASELINE) == "true" else ""))
    elif why := forgotten_in(cl, model_name, champion, challenger):
        decision.action, decision.champion_after, decision.reason = "promote", challenger, why
    else:
        uri = tracking_uri(tracking)
        bundles = [load_bundle(download(uri, model_name, v, cache_dir)) for v in (challenger, champion)]
        promote, decision.reason, decision.figures = judge(compare(split, *bundles, slices, p, e), p, e.headline_k)
        if promote:
            decision.action, decision.champion_after = "promote", challenger
    return decision
