"""DVC stage `target`: the next best action for every customer the uplift model knows (an arm, or no contact),
written for a campaign tool once it passes the privacy checks: no forgotten customer, consent, k-anonymity
(params: target, uplift.out_dir, privacy, ingest.canonical_dir, profile.out)."""

from __future__ import annotations

import sys

from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.privacy.release import context_tables, held_back, release
from mapwise.serving.audience import empty_actions, next_best_actions, write_actions
from mapwise.bundles.format import MODEL_FILE
from mapwise.serving.targeting import TargetModel
from pipelines._stage import run, write_json


def stage(params: Params) -> None:
    t = params.target
    folder = params.uplift.out_dir if params.uplift is not None else None
    if folder is None or not folder.is_dir():
        raise MapwiseError(f"no uplift model in {folder}; run the uplift stage first")
    if not (folder / MODEL_FILE).is_file():  # the uplift stage skipped: no campaign is mapped
        done = write_actions(empty_actions(), t.out)
        write_json(t.report, {**done, "status": f"skipped: no uplift model in {folder} (the uplift stage skipped)"})
        print(f"target: skipped: no uplift model in {folder}")
        return
    customers, context = context_tables(params.ingest.canonical_dir, params.profile.out)
    actions, held = release(next_best_actions(TargetModel(folder)), params.privacy, customers=customers, context=context,
                            what=f"the audience {t.out}")
    done = write_actions(actions, t.out)
    write_json(t.report, {**done, "model": str(folder), "outcome": t.outcome, "contact_cost": t.contact_cost,
                          "privacy": held})
    print(f"target: {done['customers']:,} customers -> {done['out']} ("
          + ", ".join(f"{k} {v:,}" for k, v in done["actions"].items()) + ")" + held_back(held))


def main(argv: list[str] | None = None) -> int:
    return run("target", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
