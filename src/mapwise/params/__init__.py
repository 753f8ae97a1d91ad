"""The typed model of `params.yaml`: one section per stage, unknown keys rejected.

Each module holds the sections of one family (sources, recommend, lifecycle, serving, orchestrate, targeting,
synth, privacy); this one assembles them into `Params` and reads the file. Import any section from here.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from pydantic import ValidationError

from mapwise.bounded_yaml import read_yaml
from mapwise.errors import MapwiseError, describe
from mapwise.params.base import Section
from mapwise.params.lifecycle import ExportParams, PromoteParams, RegisterParams, TrackingParams
from mapwise.params.orchestrate import OrchestrateParams, WarmStartParams
from mapwise.params.privacy import ConsentParams, KAnonymityParams, PrivacyParams
from mapwise.params.recommend import (
    RANKER,
    EvaluateParams,
    Fitting,
    FittingOverride,
    LightGBMParams,
    ModelName,
    ModelParams,
    RankerParams,
    RecommenderName,
    SearchChoice,
    SearchRange,
    SplitParams,
    TrainParams,
    TuneParams,
)
from mapwise.params.serving import RetrievalParams, ScoreParams, ServeParams
from mapwise.params.sources import DaskParams, IngestParams, ProfileParams
from mapwise.params.synth import GanParams, SynthParams
from mapwise.params.targeting import (
    AugmentParams,
    FitParams,
    PrivateParams,
    PropensityParams,
    PropensityTask,
    TargetParams,
    UpliftParams,
)

__all__ = [
    "AugmentParams",
    "ConsentParams",
    "DaskParams",
    "EvaluateParams",
    "ExportParams",
    "FitParams",
    "Fitting",
    "FittingOverride",
    "GanParams",
    "IngestParams",
    "KAnonymityParams",
    "LightGBMParams",
    "ModelName",
    "ModelParams",
    "OrchestrateParams",
    "Params",
    "PrivacyParams",
    "PrivateParams",
    "ProfileParams",
    "PromoteParams",
    "PropensityParams",
    "PropensityTask",
    "RANKER",
    "RankerParams",
    "RecommenderName",
    "RegisterParams",
    "RetrievalParams",
    "ScoreParams",
    "SearchChoice",
    "SearchRange",
    "Section",
    "ServeParams",
    "SplitParams",
    "SynthParams",
    "TargetParams",
    "TrackingParams",
    "TrainParams",
    "TuneParams",
    "UpliftParams",
    "WarmStartParams",
    "load_params",
    "parse_params",
    "read_params",
    "with_overrides",
]


with warnings.catch_warnings():  # the `register` section shadows pydantic's (ABC) classmethod `register`: harmless
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(Section):
        """All of params.yaml."""

        ingest: IngestParams
        profile: ProfileParams
        split: SplitParams
        train: TrainParams
        tracking: TrackingParams = TrackingParams()
        evaluate: EvaluateParams
        tune: TuneParams
        propensity: PropensityParams | None = None
        uplift: UpliftParams | None = None
        target: TargetParams = TargetParams()
        export: ExportParams = ExportParams()
        register: RegisterParams = RegisterParams()
        promote: PromoteParams = PromoteParams()
        serve: ServeParams = ServeParams()
        score: ScoreParams = ScoreParams()
        orchestrate: OrchestrateParams = OrchestrateParams()
        synth: SynthParams | None = None
        privacy: PrivacyParams = PrivacyParams()


def parse_params(data: object, origin: str = "params.yaml") -> Params:
    """Validate params; a wrong key or type fails with one line naming it."""
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise MapwiseError(describe(err, Params, origin)) from None


def read_params(path: Path = Path("params.yaml")) -> dict:
    """params.yaml as plain data, not yet validated."""
    return read_yaml(path)


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_params(path), str(path))


def with_overrides(data: dict, overrides: dict[str, object], origin: str = "overrides") -> dict:
    """`data` with dotted keys set (`{"train.max_epochs": 3}`); the result must still validate as Params."""
    merged = copy.deepcopy(data)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = merged
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MapwiseError(f"{origin}: '{key}': {'.'.join(parents[: i + 1])} is a value, not a section")
            node = child
        node[leaf] = value
    try:
        Params.model_validate(merged)
    except ValidationError as err:
        raise MapwiseError(describe(err, Params, origin)) from None
    return merged
