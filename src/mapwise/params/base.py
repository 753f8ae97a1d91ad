"""The base of every params section: unknown keys are rejected, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One section (or sub-section) of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
