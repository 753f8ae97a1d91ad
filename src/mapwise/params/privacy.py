"""`privacy`: consent, k-anonymity and what the scans look for."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mapwise.params.base import Section


class ConsentParams(Section):
    """Which consent flags (customers contract) a customer needs before any marketing score or audience."""

    require: list[Literal["consent_email", "consent_sms", "consent_phone"]] = Field(
        ["consent_email"], description="every listed flag must be true")
    unknown: Literal["allow", "deny"] = Field("allow", description="a customer whose flag is missing (no source maps "
                                              "it): allow (counted in reports) or deny")


class KAnonymityParams(Section):
    """Every exported audience or synthetic table must hide each customer among at least k with the same
    quasi-identifiers."""

    k: int = Field(5, ge=2)
    quasi_identifiers: list[str] = Field(["country", "age_band", "gender"], description="columns an outsider could "
                                         "link (from customers, traits or profiles); those a table lacks are skipped")
    on_fail: Literal["refuse", "suppress"] = Field("refuse", description="refuse the export, or drop the rows of "
                                                   "groups smaller than k (counted)")


class PrivacyParams(Section):
    """`privacy`: forgetting, consent and k-anonymity."""

    forget_log: Path = Field(Path("data/privacy/forget.jsonl"), description="append-only log of forget requests "
                             "(pseudonyms, never raw ids); ingest leaves these customers out")
    consent: ConsentParams = ConsentParams()
    k_anonymity: KAnonymityParams = KAnonymityParams()
