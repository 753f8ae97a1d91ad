"""The typed model of `params.yaml`: one section per stage, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mapwise.errors import MapwiseError, describe


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestParams(_Section):
    """`ingest`: which sources to map, from where, into where."""

    raw_dir: Path = Field(description="folder the mappings' file patterns are relative to")
    mappings_dir: Path = Path("mappings")
    sources: list[str] = Field(min_length=1, description="mapping names, i.e. <mappings_dir>/<name>.yaml")
    canonical_dir: Path = Path("data/canonical")
    quarantine_dir: Path = Path("data/quarantine")
    report: Path = Path("reports/ingest.json")
    key_file: Path = Field(Path(".mapwise/hmac.key"), description="used when $MAPWISE_HMAC_KEY is unset")


class Params(_Section):
    """All of params.yaml."""

    ingest: IngestParams


def parse_params(data: object, origin: str = "params.yaml") -> Params:
    """Validate params; a wrong key or type fails with one line naming it."""
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise MapwiseError(f"{origin}: {describe(err)}") from None


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MapwiseError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError:
        raise MapwiseError(f"{path}: invalid YAML") from None
    return parse_params(data, str(path))
