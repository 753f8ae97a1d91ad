"""`propensity`, `uplift`, `target`: campaign targeting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mapwise.params.base import Section
from mapwise.params.synth import GanParams


class FitParams(Section):
    """How a targeting network is trained (Lightning, early stopping on validation loss)."""

    hidden: list[int] = Field([128, 64], description="widths of the shared hidden layers")
    head: list[int] = Field([32], description="widths of each arm's head (uplift)")
    dropout: float = Field(0.1, ge=0, lt=1)
    embedding_dim: int = Field(32, ge=1, description="item embedding and GRU width of the purchase-sequence encoder")
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.001, gt=0)
    weight_decay: float = Field(0.00001, ge=0)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(5, ge=1, description="epochs without a lower validation loss before training stops")
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "32-true"


class AugmentParams(Section):
    """Synthetic rows for scarce segments of a propensity task's training rows (never validation or test)."""

    segment: str = Field(description="a categorical feature column: its values are the segments")
    min_rows: int = Field(200, ge=1, description="segments with fewer training rows get synthetic rows up to this many")
    gan: GanParams = GanParams()


class PrivateParams(Section):
    """Differentially private training (DP-SGD, Opacus) of the propensity networks."""

    epsilon: float = Field(3.0, gt=0, description="the privacy budget spent over the whole training")
    delta: float | None = Field(None, gt=0, lt=1, description="null = 1 / (10 x training rows), well below 1/n")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example gradients are clipped to this norm")
    epochs: int = Field(10, ge=1, description="a fixed number of passes: the noise is calibrated to it (no early stop)")


class PropensityTask(Section):
    """One propensity model: what a positive is, from which canonical table."""

    kind: Literal["next_purchase", "campaign_response", "session_purchase"] = Field(description=(
        "next_purchase: a customer with purchases buys again within horizon_days of the cutoff (events); "
        "campaign_response: a contacted customer responds (campaign_exposures of campaign_id); "
        "session_purchase: a web session ends in a purchase (sessions)"))
    horizon_days: int = Field(30, ge=1, description="next_purchase: the window after the cutoff a purchase must fall in")
    snapshots: int = Field(3, ge=1, description="next_purchase: training cutoffs, horizon_days apart, before validation's")
    sequence: bool = Field(True, description="next_purchase: encode the recent purchase sequence with a GRU")
    campaign_id: str | None = Field(None, description="campaign_response: the campaign whose exposures are the rows")
    outcome: Literal["conversion", "visit"] = Field("conversion", description="campaign_response: the response")
    exclude: list[str] = Field([], description="columns never used as features (e.g. ones known only afterwards)")

    @model_validator(mode="after")
    def _campaign(self) -> PropensityTask:
        if self.kind == "campaign_response" and not self.campaign_id:
            raise ValueError("campaign_response needs campaign_id")
        return self


class _Tabular(Section):
    """What the targeting stages share: feature encoding, bootstrap and seed."""

    max_categories: int = Field(50, ge=2, description="text columns with more distinct values are not features")
    numeric_bins: int = Field(0, ge=0, description="> 0: each number also gets a piecewise-linear encoding over this "
                              "many quantile bins (all models see it)")
    bootstrap: int = Field(1000, ge=10, description="resamples per interval")
    seed: int = 0


class PropensityParams(_Tabular):
    """`propensity`: who is likely to buy or respond; neural models beside scikit-learn baselines."""

    tasks: dict[str, PropensityTask] = Field(description="task name -> definition")
    validation_share: float = Field(0.2, gt=0, lt=0.5, description="random (stratified) tasks: share for validation")
    test_share: float = Field(0.2, gt=0, lt=0.5, description="random (stratified) tasks: share held out for test")
    baselines: list[Literal["logistic", "gradient_boosting"]] = ["logistic", "gradient_boosting"]
    calibrate: bool = Field(True, description="isotonic calibration on validation, kept when it lowers validation log loss")
    fit: FitParams = FitParams()
    private: PrivateParams | None = Field(None, description="train the neural model with DP-SGD (its utility cost "
                                          "is measured against the same model trained without)")
    augment: dict[str, AugmentParams] = Field({}, description="task -> synthetic rows for its scarce segments "
                                              "(measured against the same model without)")
    out_dir: Path = Path("models/propensity")
    report: Path = Path("reports/propensity.json")
    html: Path = Path("reports/propensity.html")
    plots_dir: Path = Path("reports/plots/propensity")

    @model_validator(mode="after")
    def _augment(self) -> PropensityParams:
        unknown = sorted(set(self.augment) - set(self.tasks))
        if unknown:
            raise ValueError(f"augment: unknown task(s) {', '.join(unknown)} (tasks: {', '.join(self.tasks)})")
        if self.augment and self.private is not None:
            raise ValueError("augment and private cannot be combined: the GAN would see the training rows without DP")
        return self


class UpliftParams(_Tabular):
    """`uplift`: treatment effects of a randomised campaign, per arm against control."""

    campaign_id: str = Field(description="campaign_exposures.campaign_id of a randomised trial")
    control_arm: str = "control"
    outcomes: list[Literal["visit", "conversion", "spend"]] = ["visit", "conversion", "spend"]
    models: list[Literal["t_learner", "tarnet", "dragonnet"]] = ["t_learner", "tarnet", "dragonnet"]
    baselines: list[Literal["two_model", "class_transformation"]] = ["two_model", "class_transformation"]
    validation_share: float = Field(0.2, gt=0, lt=0.5)
    test_share: float = Field(0.3, gt=0, lt=0.5, description="held out, stratified by arm")
    exclude: list[str] = Field([], description="columns never used as features")
    fit: FitParams = FitParams(hidden=[64], head=[32], dropout=0.2, batch_size=512)
    out_dir: Path = Path("models/uplift")
    report: Path = Path("reports/uplift.json")
    html: Path = Path("reports/uplift.html")
    plots_dir: Path = Path("reports/plots/uplift")


class TargetParams(Section):
    """`target`: next best action per customer: the arm with the highest uplift net of its cost, or no contact."""

    outcome: Literal["visit", "conversion", "spend"] = Field("spend", description="the uplift that is weighed")
    contact_cost: float = Field(0.1, ge=0, description="cost of one contact, in units of the outcome")
    out: Path = Path("data/audience/next_best_action.parquet")
    report: Path = Path("reports/target.json")
