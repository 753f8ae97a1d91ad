"""DVC stage `promote`: the gate moves alias `champion` to the challenger only if it is better on the same test data (params: promote)."""

from __future__ import annotations

import sys

from mapwise.gate import gate
from mapwise.params import Params
from mapwise.registry import apply
from mapwise.recommend.slices import customer_slices
from mapwise.recommend.split import load_split
from pipelines._stage import run, write_json


def stage(params: Params) -> None:
    split = load_split(params.split.out_dir)
    decision = gate(params.tracking, params.register.model_name, split, customer_slices(params), params.promote,
                    params.evaluate, params.serve.cache_dir)
    apply(params.tracking, decision)
    write_json(params.promote.report, decision.as_dict())
    print(f"promote {decision.model_name} version {decision.challenger}: {decision.action} ({decision.reason}); "
          f"champion is version {decision.champion_after}")


def main(argv: list[str] | None = None) -> int:
    return run("promote", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
