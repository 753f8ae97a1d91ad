"""An audience leaves only without forgotten customers, with consent, and k-anonymous (refused or suppressed)."""

from __future__ import annotations

import polars as pl
import pytest

from mapwise.errors import MapwiseError
from mapwise.params import ConsentParams, KAnonymityParams, PrivacyParams
from mapwise.privacy.forget import append_requests
from mapwise.privacy.release import held_back, release

IDS = [f"{i:032x}" for i in range(12)]


def _customers() -> pl.DataFrame:
    return pl.DataFrame({
        "customer_id": IDS,
        "consent_email": [True] * 9 + [False, None, True],
        "country": ["UK"] * 6 + ["FR"] * 5 + ["IS"],
    })


def _audience() -> pl.DataFrame:  # two rows per customer, as a top-2 recommendation audience
    return pl.DataFrame({"customer_id": [i for i in IDS for _ in range(2)], "item_id": ["a", "b"] * len(IDS)})


def _params(tmp_path, **k) -> PrivacyParams:
    return PrivacyParams(forget_log=tmp_path / "forget.jsonl", consent=ConsentParams(unknown="allow"),
                         k_anonymity=KAnonymityParams(k=3, quasi_identifiers=["country", "age_band"], **k))


def test_forgotten_and_refusing_customers_are_held_back_and_counted(tmp_path):
    p = _params(tmp_path, on_fail="suppress")
    append_requests(p.forget_log, [IDS[0]], "cli")
    out, held = release(_audience(), p, customers=_customers(), context=[_customers()], what="the audience")
    kept = out["customer_id"].unique().sort().to_list()
    # IDS[0] forgotten, IDS[9] refused e-mail, IDS[11] alone in IS (k=3); IDS[10] unknown consent: allowed, counted
    assert kept == [IDS[i] for i in (1, 2, 3, 4, 5, 6, 7, 8, 10)]
    assert out.height == 2 * len(kept) and out.columns == ["customer_id", "item_id"]
    assert held["forgotten_customers"] == 1
    assert held["consent"]["withheld"]["no consent_email"]["customers"] == 1
    assert held["consent"]["allowed_unknown"]["customers"] == 1
    assert held["k_anonymity"]["suppressed_rows"] == 1 and held["k_anonymity"]["skipped"] == ["age_band"]
    assert held_back(held) == "; held back: 1 forgotten, 1 without consent, 1 in groups smaller than k"


def test_an_audience_that_is_not_k_anonymous_is_refused_with_the_smallest_group(tmp_path):
    with pytest.raises(MapwiseError, match=r"the audience.*k=3.*country=IS.*on_fail: suppress"):
        release(_audience(), _params(tmp_path), customers=_customers(), context=[_customers()], what="the audience")


def test_denying_unknown_consent_holds_back_customers_the_table_does_not_know(tmp_path):
    p = PrivacyParams(forget_log=tmp_path / "forget.jsonl", consent=ConsentParams(unknown="deny"),
                      k_anonymity=KAnonymityParams(k=2, quasi_identifiers=["age_band"]))  # absent: not checked
    stranger = pl.DataFrame({"customer_id": ["f" * 32, IDS[1], IDS[10]], "item_id": ["a", "a", "a"]})
    out, held = release(stranger, p, customers=_customers(), context=[_customers()], what="x")
    assert out["customer_id"].to_list() == [IDS[1]]
    assert held["consent"]["withheld"]["consent_email unknown"]["customers"] == 2
    assert held["k_anonymity"]["checked"] is False
