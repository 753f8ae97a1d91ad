"""DVC stage `synth`: a conditional tabular GAN over the customer profiles beside two baselines (a Gaussian copula,
independent columns), each judged against real holdout profiles none of them saw: column shapes, pair trends,
utility (train on synthetic, test on real) and privacy (distance to the closest real record, near-copies redrawn).
The GAN is saved for `mapwise synth --rows N` (params: synth, profile.out)."""

from __future__ import annotations

import sys

import numpy as np
import polars as pl

from mapwise.atomic import replacing_folder
from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.synth.baselines import GENERATORS
from mapwise.synth.gan import CTGAN
from mapwise.synth.profiles import sample_profiles
from mapwise.synth.quality import distance_threshold, evaluate
from mapwise.synth.report import write_synth_report
from mapwise.synth.transform import check_columns
from pipelines._stage import lineage, run, write_json

GAN = "ctgan"
META_FILE = "synth.json"  # beside the GAN's files: what `mapwise synth` needs to sample and check


def holdout_split(frame: pl.DataFrame, share: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training and holdout rows, drawn at random (seeded)."""
    order = np.random.default_rng(seed).permutation(frame.height)
    cut = frame.height - max(1, round(share * frame.height))
    return frame[np.sort(order[:cut])], frame[np.sort(order[cut:])]


def stage(params: Params) -> None:
    s = params.synth
    if s is None:
        raise MapwiseError("params.yaml has no `synth` section: nothing to generate")
    try:
        profiles = pl.read_parquet(params.profile.out)
    except (OSError, pl.exceptions.PolarsError):
        raise MapwiseError(f"{params.profile.out}: cannot read the profiles; run the profile stage first") from None
    columns = check_columns(profiles, s.numeric, s.categorical)
    if s.utility_target not in s.categorical:
        raise MapwiseError(f"synth.utility_target '{s.utility_target}' must be one of synth.categorical")
    if profiles.height < 20:
        raise MapwiseError(f"{params.profile.out}: {profiles.height} profiles; a generator needs at least 20")
    train_profiles, holdout_profiles = holdout_split(profiles, s.holdout_share, s.seed)
    train, holdout = train_profiles.select(columns), holdout_profiles.select(columns)
    threshold = distance_threshold(train, holdout, s.min_distance_quantile, s.numeric, s.categorical)
    models = {GAN: CTGAN.fit(train, s.numeric, s.categorical, s.gan, seed=s.seed)}
    models |= {name: GENERATORS[name].fit(train, s.numeric, s.categorical, seed=s.seed) for name in s.baselines}
    synthetic, near = {}, {}
    for name, model in models.items():
        rows, near[name] = sample_profiles(model, train.height, train_profiles, threshold, seed=s.seed)
        synthetic[name] = rows.select(columns)
    report = evaluate(train, holdout, synthetic, s.numeric, s.categorical, s.utility_target, s.seed)
    for name in models:
        report["generators"][name]["near_copies"] = near[name]
    report["generators"][GAN]["history"] = models[GAN].history
    report["lineage"] = lineage(params.profile.out)
    with replacing_folder(s.out_dir) as out:
        models[GAN].save(out)
        write_json(out / META_FILE, {"numeric": s.numeric, "categorical": s.categorical, "threshold": threshold,
                                     "training_rows": train.height, "seed": s.seed, "lineage": report["lineage"]})
    write_json(s.report, report)
    write_synth_report(report, s.plots_dir, s.html)
    for name, r in report["generators"].items():
        u, pr = r["utility"], r["privacy"]
        print(f"synth {name}: shape {r['shape']:.3f}, pair trends {r['pair_trends']:.3f}, ROC AUC trained on "
              f"synthetic {_num(u['tstr']['roc_auc'])} (on real {_num(u['trtr']['roc_auc'])}), distance to the closest "
              f"real row: median {pr['synthetic_median']:.3f} (holdout {pr['holdout_median']:.3f}), near-copies "
              f"redrawn {near[name]['dropped']}")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    return run("synth", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
