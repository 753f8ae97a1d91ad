"""`split`, `train`, `tune`, `evaluate`: the recommenders, from the split to the honest evaluation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mapwise.params.base import Section


class SplitParams(Section):
    """`split`: leakage-free train / validation / test."""

    method: Literal["temporal", "leave_last_out"] = "temporal"
    cutoff: datetime = Field(description="T: test targets are bought in [T, T + horizon)")
    validation_days: int = Field(30, ge=1, description="validation window [T - days, T)")
    horizon_days: int = Field(30, ge=1)
    min_history: int = Field(1, ge=1, description="purchases needed before a window to be evaluated")
    out_dir: Path = Path("data/split")
    report: Path = Path("reports/split.json")


class ModelParams(Section):
    """Sizes shared by the sequence models, and each model's own."""

    max_len: int = Field(20, ge=2, le=1000, description="most recent items a model reads")
    embedding_dim: int = Field(64, ge=8)
    dropout: float = Field(0.2, ge=0, lt=1)
    gru_layers: int = Field(1, ge=1)
    gru_dropout_embed: float = Field(0.0, ge=0, lt=1, description="GRU4Rec: dropout on the embedded input items")
    caser_window: int = Field(5, ge=2, description="Caser reads the last L items")
    caser_h_filters: int = Field(16, ge=1)
    caser_v_filters: int = Field(4, ge=1)
    sasrec_layers: int = Field(2, ge=1)
    sasrec_heads: int = Field(2, ge=1)


ModelName = Literal["gru", "caser", "sasrec", "repeatnet"]


RANKER = "ranker"


RecommenderName = Literal["gru", "caser", "sasrec", "repeatnet", "ranker"]  # the sequence networks and the ranker


class LightGBMParams(Section):
    """The ranker's LambdaRank trees (LightGBM)."""

    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(8, ge=1, le=16, description="each step of depth is one gather per tree when the graph runs in torch")
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    max_rounds: int = Field(500, ge=1, description="the budget of boosting rounds ...")
    early_stopping_rounds: int = Field(50, ge=1, description="... stopped after this many without a validation gain")
    truncation_level: int = Field(20, ge=1, description="LambdaRank: pairs beyond this rank are not optimised")


class RankerParams(Section):
    """`train.ranker`: the two-stage recommender: candidate generators, then LightGBM LambdaRank over their features."""

    max_len: int = Field(200, ge=2, description="purchases of the window the generators and features read")
    candidates_per_generator: int = Field(50, ge=1, description="top items taken from each generator (own history, "
                                          "EASE, item-kNN, recent popularity); duplicates are merged")
    half_life: float = Field(20, gt=0, description="own-history generator: a purchase this many purchases back weighs half")
    knn_neighbours: int = Field(100, ge=1)
    ease_l2: float = Field(500, gt=0)
    ease_max_items: int = Field(10_000, ge=1, description="the EASE generator is left out above this catalogue size")
    popularity_window_days: int = Field(30, ge=1, description="recent popularity and trend: purchases in these last days")
    max_customers: int = Field(20_000, ge=1, description="customers per label window the trees learn from (a seeded "
                               "sample when more): the rows are customers x candidates, so this bounds the fit")
    trees: LightGBMParams = LightGBMParams()


class Fitting(Section):
    """How one model is fitted: the optimizer and loss (set for all models, or per model)."""

    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate, reached after the warm-up")
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "adagrad"] = Field("adam", description="adagrad: with momentum, as GRU4Rec's authors train it")
    momentum: float = Field(0.0, ge=0, lt=1, description="adagrad's momentum")
    loss: Literal["softmax", "sampled_softmax", "gbce"] = Field(
        "softmax", description="softmax: over the whole catalogue; sampled_softmax or gbce (gSASRec): over sampled "
        "negatives, for large catalogues")
    negatives: int = Field(256, ge=1, description="sampled negatives per batch (sampled_softmax, gbce)")
    negative_alpha: float = Field(0.0, ge=0, le=1, description="0 = uniform negatives; else popularity ** alpha, "
                                  "with the log-Q correction")
    gbce_t: float = Field(0.75, ge=0, le=1, description="gbce's calibration t (gSASRec)")
    target_horizon: int = Field(1, ge=1, description="each position's target is drawn from the next N purchases: 1 = "
                                "the next item; more = what the customer buys soon (PinnerFormer's dense all-action loss)")


class FittingOverride(Section):
    """Per-model replacements of `train` values (unset = the shared value)."""

    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    optimizer: Literal["adam", "adamw", "adagrad"] | None = None
    momentum: float | None = Field(None, ge=0, lt=1)
    loss: Literal["softmax", "sampled_softmax", "gbce"] | None = None
    negatives: int | None = Field(None, ge=1)
    negative_alpha: float | None = Field(None, ge=0, le=1)
    gbce_t: float | None = Field(None, ge=0, le=1)
    target_horizon: int | None = Field(None, ge=1)
    val_every_steps: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1)
    model: dict[str, int | float] | None = Field(None, description="model sizes for this model only")

    @field_validator("model")
    @classmethod
    def _model_keys(cls, value: dict | None) -> dict | None:
        if value is not None:
            ModelParams(**value)
        return value


class TrainParams(Fitting):
    """`train`: which sequence models, how long, and on what hardware (Lightning Trainer arguments).

    The budget is counted in optimizer steps: max_epochs passes over the training windows, but at
    least min_steps (and at most max_steps). Validation runs every val_every_steps steps (at least
    once a pass) and training stops at a plateau, `patience` validations without a gain.
    """

    models: list[RecommenderName] = Field(min_length=1)
    model: ModelParams = ModelParams()
    ranker: RankerParams = RankerParams()
    per_model: dict[ModelName, FittingOverride] = Field({}, description="values for one model only, e.g. gru: {lr: 0.05}")
    max_epochs: int = Field(200, ge=1, description="the budget: passes over the training windows")
    min_steps: int = Field(1000, ge=0, description="... but at least this many optimizer steps")
    max_steps: int | None = Field(None, ge=1, description="... and at most this many (null = no cap)")
    val_every_steps: int = Field(100, ge=1, description="validation interval in optimizer steps (at least once a pass)")
    val_customers: int = Field(10_000, ge=1, description="validation scores a fixed random sample of this many customers "
                               "(all, when fewer): its cost stays bounded as data grows")
    patience: int = Field(5, ge=1, description="validations without validation NDCG gain before stopping (a plateau)")
    min_gain: float = Field(0.001, ge=0, description="a validation NDCG gain smaller than this does not count as one")
    warmup_steps: int = Field(100, ge=0, description="learning rate rises linearly to lr over these steps")
    lr_schedule: Literal["inverse_sqrt", "constant"] = Field(
        "inverse_sqrt", description="after the warm-up: decay as 1/sqrt(step), or stay")
    refit: bool = Field(True, description="after selection, retrain on training + validation for the chosen steps")
    init_from: str | None = Field(None, pattern=r"^models:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)$", description=(
        "warm start: fine-tune from this registered version's weights (models:/<name>/<version> or "
        "models:/<name>@<alias>), its item table extended to the split's items; null = from scratch. The retrain "
        "flow sets it (orchestrate.warm_start); a version that lacks weights or is another architecture or size "
        "is not used: the model trains from scratch and the reason is logged"))
    seed: int = 42
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = Field("auto", description="auto = bf16-mixed on a bf16 GPU, else 32-true")
    out_dir: Path = Path("models/trained")
    report: Path = Path("reports/train.json")

    @model_validator(mode="after")
    def _decay_needs_warm_up(self) -> TrainParams:
        if self.lr_schedule == "inverse_sqrt" and self.warmup_steps < 1:
            raise ValueError("lr_schedule inverse_sqrt decays from the end of the warm-up: set warmup_steps >= 1 "
                             "(or lr_schedule: constant)")
        return self

    def for_model(self, name: str) -> TrainParams:
        """These params with `per_model[name]` applied (the shared values where it sets none)."""
        override = self.per_model.get(name)
        if override is None:
            return self
        values = override.model_dump(exclude_none=True, exclude={"model"})
        model = self.model.model_copy(update=override.model or {})
        return self.model_copy(update={**values, "model": model})


class SearchRange(Section):
    """A numeric range to search: integers when both ends are integers (and not log)."""

    low: int | float
    high: int | float
    log: bool = False


class SearchChoice(Section):
    """A set of values to choose from."""

    choices: list[int | float | str]


class TuneParams(Section):
    """`mapwise tune`: an Optuna study over a space of `train` keys ("lr", "model.embedding_dim", ...)."""

    model: ModelName = "sasrec"
    trials: int = Field(20, ge=1)
    max_epochs: int = Field(10, ge=1)
    timeout_minutes: float | None = Field(None, gt=0)
    space: dict[str, SearchRange | SearchChoice]
    out: Path = Path("reports/tune.json")

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space: dict) -> dict:
        for key in space:
            section, _, name = key.rpartition(".")
            fields = ModelParams.model_fields if section == "model" else TrainParams.model_fields
            if section not in ("", "model") or name not in fields or name in ("model", "models"):
                raise ValueError(f"'{key}' is not a train parameter (e.g. lr, model.embedding_dim)")
        return space


class EvaluateParams(Section):
    """`evaluate`: full-ranking metrics for models and baselines."""

    ks: list[int] = Field([5, 10, 20], min_length=1)
    headline_k: int = Field(10, ge=1, description="K of the headline NDCG (with intervals); one of ks")
    baselines: list[Literal["popularity", "personal_popularity", "recency_frequency", "item_knn", "ease"]] = [
        "popularity", "personal_popularity", "recency_frequency", "item_knn", "ease"]
    popularity_window_days: int = Field(30, ge=1)
    knn_neighbours: int = Field(100, ge=1)
    recency_half_life: float = Field(20, gt=0, description="recency_frequency: purchases after which a purchase weighs half")
    ease_l2: float = Field(500, gt=0, description="EASE: L2 regularisation (lambda) of the item-item weights")
    ease_max_items: int = Field(10_000, ge=1, description="EASE is skipped above this many items (a dense n x n inverse)")
    bootstrap: int = Field(1000, ge=100)
    seed: int = 0
    report: Path = Path("reports/evaluate.json")
    plots_dir: Path = Path("reports/plots")
