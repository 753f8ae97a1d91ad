"""Customer traits: declared in a mapping, typed and checked by the contract, read point in time."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.privacy.pseudonym import pseudonym
from mapwise.profiles.traits import traits_as_of, with_traits
from mapwise.sources.mapping.load import parse_mapping

from conftest import KEY, assert_balanced, run, write

CRM = "client,plan,balance,vip,seen\nc1,gold,10.5,yes,2024-01-01\nc1,silver,,no,2024-03-01\nc2,platinum,3,yes,\nc3,gold,abc,no,\n"


def _crm(**changes) -> dict:
    mapping = {
        "name": "crm",
        "read": {"pattern": "crm.csv"},
        "casts": {"balance": "float", "vip": "bool"},
        "timestamps": {"seen": {"format": "%Y-%m-%d"}},
        "identity": "client",
        "traits": {"plan": {"type": "category", "values": ["gold", "silver"]}, "balance": {"type": "number", "min": 0},
                   "vip": {"type": "flag"}},
        "tables": {"customer_traits": {"columns": {"plan": "plan", "balance": "balance", "vip": "vip", "observed_at": "seen"}}},
    }
    mapping.update(changes)
    return mapping


def test_traits_are_typed_columns_and_bad_values_are_quarantined(tmp_path):
    write(tmp_path / "crm.csv", CRM)
    result = run(tmp_path, _crm())
    assert_balanced(result)
    traits = result.tables[c.CUSTOMER_TRAITS]
    assert traits.schema["balance"] == pl.Float64 and traits.schema["vip"] == pl.Boolean
    assert traits["plan"].to_list() == ["gold", "silver"]
    reasons = result.quarantine[c.CUSTOMER_TRAITS].select(c.Q_LINE, c.Q_COLUMN, c.Q_REASON).rows()
    assert reasons == [(4, "plan", "failed check isin(['gold', 'silver'])"), (5, "balance", "cannot parse as float")]


def test_a_trait_must_be_declared_and_declared_alike(tmp_path):
    with pytest.raises(MapwiseError, match="column\\(s\\) tier not declared under traits"):
        parse_mapping(_crm(tables={"customer_traits": {"columns": {"tier": "plan", "plan": "plan", "balance": "balance",
                                                                    "vip": "vip"}}}), "crm.yaml")
    with pytest.raises(MapwiseError, match="traits: vip declared but not mapped"):
        parse_mapping(_crm(tables={"customer_traits": {"columns": {"plan": "plan", "balance": "balance"}}}), "crm.yaml")
    write(tmp_path / "crm.csv", CRM)
    other = _crm(name="crm2", traits={**_crm()["traits"], "vip": {"type": "category"}})
    with pytest.raises(MapwiseError, match="trait 'vip' is declared differently by mappings 'crm' and 'crm2'"):
        run(tmp_path, _crm(), other)


def test_traits_are_read_point_in_time(tmp_path):
    write(tmp_path / "crm.csv", CRM.replace("platinum", "gold").replace("abc", "1"))
    traits = run(tmp_path, _crm()).tables[c.CUSTOMER_TRAITS]
    c1, c2 = pseudonym("c1", KEY), pseudonym("c2", KEY)
    before = traits_as_of(traits, datetime(2024, 2, 1, tzinfo=UTC))
    assert before.filter(pl.col(c.CUSTOMER_ID) == c1).select("plan", "balance", "vip").row(0) == ("gold", 10.5, True)
    after = traits_as_of(traits, datetime(2024, 4, 1, tzinfo=UTC))  # the later row wins; its missing balance does not
    assert after.filter(pl.col(c.CUSTOMER_ID) == c1).select("plan", "balance", "vip").row(0) == ("silver", 10.5, False)
    profiles = pl.DataFrame({c.CUSTOMER_ID: [c2, "x" * 32]})
    joined = with_traits(profiles, traits, datetime(2024, 2, 1, tzinfo=UTC))
    assert joined.select("plan", "vip").rows() == [("gold", True), (None, None)]
