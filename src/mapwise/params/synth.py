"""`synth`: the GAN for synthetic profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mapwise.params.base import Section


class GanParams(Section):
    """A conditional tabular GAN (CTGAN-style, Xu et al. 2019), trained with Lightning."""

    epochs: int = Field(300, ge=1, description="passes over the real rows")
    batch_size: int = Field(500, ge=2, description="rows per step (a multiple of pac)")
    embedding_dim: int = Field(128, ge=1, description="noise dimension")
    generator: list[int] = Field([256, 256], description="widths of the generator's residual layers")
    discriminator: list[int] = Field([256, 256], description="widths of the critic's layers")
    lr: float = Field(0.0002, gt=0)
    weight_decay: float = Field(0.000001, ge=0)
    pac: int = Field(10, ge=1, description="rows the critic sees together (PacGAN): fights mode collapse")
    discriminator_steps: int = Field(1, ge=1, description="critic updates per generator update")
    max_modes: int = Field(10, ge=1, description="Gaussian mixture modes per number (mode-specific normalisation)")
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "32-true"

    @model_validator(mode="after")
    def _pac_divides(self) -> GanParams:
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of pac {self.pac}")
        return self


class SynthParams(Section):
    """`synth`: synthetic customer profiles from a GAN, judged beside two baselines on shape, utility and privacy."""

    numeric: list[str] = Field(description="profile columns generated as numbers")
    categorical: list[str] = Field(description="profile columns generated as categories")
    utility_target: str = Field(description="a categorical column predicted from the others: train on synthetic, "
                                "test on real, against train on real")
    holdout_share: float = Field(0.2, gt=0, lt=0.5, description="real rows the generators never see (privacy baseline, utility test)")
    baselines: list[Literal["gaussian_copula", "independent"]] = ["gaussian_copula", "independent"]
    gan: GanParams = GanParams()
    min_distance_quantile: float = Field(0.01, ge=0, lt=1, description="a synthetic row closer to a training row than "
                                         "this quantile of holdout rows' distances is a near-copy: dropped and redrawn")
    seed: int = 0
    out_dir: Path = Path("models/synth")
    out: Path = Path("data/synthetic/profiles.parquet")
    report: Path = Path("reports/synth.json")
    html: Path = Path("reports/synth.html")
    plots_dir: Path = Path("reports/plots/synth")
