"""DVC stage `profile`: one point-in-time profile per customer (traits joined), with an HTML report (params: profile, ingest)."""

from __future__ import annotations

import sys


from mapwise import columns as c
from mapwise.atomic import write_parquet
from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.profiles.report import print_profile_summary, write_profile_report
from mapwise.profiles.build import build_profiles, default_as_of
from mapwise.profiles.traits import with_traits
from pipelines._stage import read_canonical, run


def stage(params: Params) -> None:
    p = params.profile
    events, customers, items = (read_canonical(params.ingest.canonical_dir, t) for t in (c.EVENTS, c.CUSTOMERS, c.ITEMS))
    as_of = p.as_of or default_as_of(events)
    profiles = build_profiles(events, customers, items, as_of=as_of, sequence_length=p.sequence_length,
                              category_tokens=p.category_tokens)
    if profiles.is_empty():
        raise MapwiseError(f"no customer purchased before {as_of.isoformat()}: nothing to profile")
    traits = params.ingest.canonical_dir / f"{c.CUSTOMER_TRAITS}.parquet"
    if traits.exists():  # canonical tables from before traits existed have none
        profiles = with_traits(profiles, read_canonical(params.ingest.canonical_dir, c.CUSTOMER_TRAITS), as_of)
    write_parquet(p.out, profiles)
    write_profile_report(profiles, p.report)
    print_profile_summary(profiles)
    print(f"profiles: {p.out}  report: {p.report}")


def main(argv: list[str] | None = None) -> int:
    return run("profile", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
