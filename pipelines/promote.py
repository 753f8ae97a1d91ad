"""DVC stage `promote`: the gate moves alias `champion` to the challenger only if it is better on the same test data (params: promote)."""

from __future__ import annotations

import sys

import polars as pl

from mapwise.recommend.gate import gate
from mapwise.targeting.gate import target_gate
from pipelines.register import target_bundles
from mapwise.params import Params
from mapwise.bundles.registry import apply
from mapwise.recommend.slices import customer_slices
from mapwise.recommend.split import load_split
from pipelines._stage import run, write_json

TEST_ROWS = "test.parquet"  # beside each targeting bundle: the held-out rows both versions are scored on


def stage(params: Params) -> None:
    split = load_split(params.split.out_dir)
    decision = gate(params.tracking, params.register.model_name, split, customer_slices(params), params.promote,
                    params.evaluate, params.serve.cache_dir)
    apply(params.tracking, decision)
    print(f"promote {decision.model_name} version {decision.challenger}: {decision.action} ({decision.reason}); "
          f"champion is version {decision.champion_after}")
    targets = {}
    for model_name, bundle in target_bundles(params).items():
        test = pl.read_parquet(bundle / TEST_ROWS)
        target = apply(params.tracking, target_gate(params.tracking, model_name, test, params.promote.target_margin,
                                                    params.serve.cache_dir))
        targets[model_name] = target.as_dict()
        print(f"promote {model_name} version {target.challenger}: {target.action} ({target.reason}); "
              f"champion is version {target.champion_after}")
    write_json(params.promote.report, {**decision.as_dict(), "targets": targets})


def main(argv: list[str] | None = None) -> int:
    return run("promote", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
