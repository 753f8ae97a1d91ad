"""The typed model of `params.yaml`: one section per stage, unknown keys rejected."""

from __future__ import annotations

import copy
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mapwise.errors import MapwiseError, describe, yaml_problem


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaskParams(_Section):
    """`ingest.dask`: the Dask cluster that maps partitions when `ingest.engine` is dask."""

    address: str | None = Field(None, description="scheduler of a running cluster (tcp://host:8786); null starts a "
                                "LocalCluster on this machine for the stage")
    workers: int = Field(2, ge=1, description="LocalCluster worker processes (ignored with an address)")
    threads_per_worker: int = Field(1, ge=1, description="LocalCluster threads per worker (ignored with an address)")
    memory_limit: str = Field("auto", description="LocalCluster memory per worker, e.g. 4GiB; auto = the machine's "
                              "memory shared among the workers")
    connect_timeout_s: float = Field(30, gt=0, description="how long to wait for the scheduler at `address`")


class IngestParams(_Section):
    """`ingest`: which sources to map, from where, into where."""

    raw_dir: Path = Field(description="folder the mappings' file patterns are relative to")
    batches_dir: Path = Field(Path("data/batches"), description="accepted batches, <batches_dir>/<source>/<file>, read after raw_dir")
    mappings_dir: Path = Path("mappings")
    sources: list[str] = Field(min_length=1, description="mapping names, i.e. <mappings_dir>/<name>.yaml")
    canonical_dir: Path = Path("data/canonical")
    quarantine_dir: Path = Path("data/quarantine")
    report: Path = Path("reports/ingest.json")
    key_file: Path = Field(Path(".mapwise/hmac.key"), description="used when $MAPWISE_HMAC_KEY is unset")
    max_file_mb: float = Field(2048, gt=0, description="largest raw file once decompressed, in MiB: a bound on memory "
                                                         "and against decompression bombs")
    chunk_mb: float = Field(64, gt=0, description="delimited files are read (and decompressed) this many MiB at a "
                            "time, each chunk an independent partition: a bound on memory that changes no result")
    engine: Literal["local", "dask"] = Field("local", description="where chunks are mapped and checked: in the "
                                             "stage's process, or on the Dask cluster of `dask` (same results)")
    dask: DaskParams = DaskParams()
    future_tolerance_days: float = Field(1, ge=0, description="timestamps later than the time of ingestion plus this "
                                                               "are quarantined")
    min_timestamp: datetime = Field(datetime(1900, 1, 1, tzinfo=UTC), description="earlier timestamps are quarantined "
                                    "(a zero or garbled epoch, a two-digit year read as year 0024)")
    trusted_dirs: list[Path] = Field([Path(".dvc/cache")], description="folders besides raw_dir and batches_dir that "
                                     "raw files may link into (DVC's cache, for cache.type symlink)")

    @field_validator("min_timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ProfileParams(_Section):
    """`profile`: customer profiles as of one point in time."""

    as_of: datetime | None = Field(None, description="UTC cutoff; null = just after the last event")
    sequence_length: int = Field(20, ge=1, description="most recent items kept per customer")
    category_tokens: int = Field(40, ge=2, description="categories derived from title words, when items have none")
    out: Path = Path("data/profiles/profiles.parquet")
    report: Path = Path("reports/profile.html")


class SplitParams(_Section):
    """`split`: leakage-free train / validation / test."""

    method: Literal["temporal", "leave_last_out"] = "temporal"
    cutoff: datetime = Field(description="T: test targets are bought in [T, T + horizon)")
    validation_days: int = Field(30, ge=1, description="validation window [T - days, T)")
    horizon_days: int = Field(30, ge=1)
    min_history: int = Field(1, ge=1, description="purchases needed before a window to be evaluated")
    out_dir: Path = Path("data/split")
    report: Path = Path("reports/split.json")


class ModelParams(_Section):
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


class LightGBMParams(_Section):
    """The ranker's LambdaRank trees (LightGBM)."""

    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(8, ge=1, le=16, description="each step of depth is one gather per tree when the graph runs in torch")
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    max_rounds: int = Field(500, ge=1, description="the budget of boosting rounds ...")
    early_stopping_rounds: int = Field(50, ge=1, description="... stopped after this many without a validation gain")
    truncation_level: int = Field(20, ge=1, description="LambdaRank: pairs beyond this rank are not optimised")


class RankerParams(_Section):
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


class Fitting(_Section):
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


class FittingOverride(_Section):
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


class SearchRange(_Section):
    """A numeric range to search: integers when both ends are integers (and not log)."""

    low: int | float
    high: int | float
    log: bool = False


class SearchChoice(_Section):
    """A set of values to choose from."""

    choices: list[int | float | str]


class TuneParams(_Section):
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


class TrackingParams(_Section):
    """MLflow: where runs and the registry live ($MLFLOW_TRACKING_URI overrides uri)."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "mapwise"


class EvaluateParams(_Section):
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


class ExportParams(_Section):
    """`export`: ONNX graphs proven equal to the trained networks, bundled with what serving needs."""

    out_dir: Path = Path("models/export")
    top_k: int | None = Field(10, ge=1, description="top-K built into the graph (outputs top_items, top_scores); null = scores only")
    parity_customers: int = Field(1000, ge=1, description="test customers whose real histories the parity check scores")
    atol: float = Field(1e-4, gt=0, description="largest allowed |torch - onnxruntime| score difference")
    min_top10_agreement: float = Field(0.99, gt=0, le=1, description="share of customers whose top-10 must agree")
    cold_start_window_days: int = Field(30, ge=1, description="popularity window for customers with no history")
    baselines: bool = Field(True, description="also bundle every evaluate baseline, so a baseline can be what serves "
                            "when no learned model beats it")
    baseline_max_len: int = Field(200, ge=2, description="purchases a served baseline reads (the evaluate stage's "
                                  "baselines read the whole history)")
    report: Path = Path("reports/export.json")


class RegisterParams(_Section):
    """`register`: the selected export becomes a version of the registered model, alias `challenger`."""

    model_name: str = Field("mapwise-recommender", min_length=1)
    candidate: Literal["best", "gru", "caser", "sasrec", "repeatnet", "ranker"] = Field(
        "best", description="best = highest validation NDCG")
    target_prefix: str = Field("mapwise", min_length=1, description="targeting models are registered as "
                               "<prefix>-propensity-<task> and <prefix>-uplift")
    report: Path = Path("reports/register.json")


class PromoteParams(_Section):
    """`promote`: the gate that moves `champion` to the challenger, on the same test data for both."""

    variant: Literal["all_items", "new_items"] = "all_items"
    margin: float = Field(0.001, ge=0, description="headline NDCG gain the challenger needs over the champion")
    max_slice_drop: float = Field(0.02, ge=0, description="largest NDCG drop allowed on any slice")
    min_slice_customers: int = Field(50, ge=1, description="smaller slices are reported but do not block")
    target_margin: float = Field(0.0, ge=0, description="targeting models: ROC AUC (propensity) or mean Qini (uplift) "
                                 "gain the challenger needs over the champion on the same held-out rows")
    report: Path = Path("reports/promote.json")


class RetrievalParams(_Section):
    """`serve.retrieval`: how the recommender finds its top items.

    exact scores the whole catalogue; ann asks an approximate nearest-neighbour index (faiss IVF, inner
    product, built when the model loads) for `candidates` items and ranks those by their exact scores.
    ann needs a dot-product model (GRU4Rec, Caser, SASRec); RepeatNet's mixture is always scored exactly.
    """

    method: Literal["auto", "exact", "ann"] = Field("auto", description="auto = ann from ann_min_items items up")
    ann_min_items: int = Field(50_000, ge=1, description="auto: the catalogue size from which ann is used")
    candidates: int = Field(200, ge=1, description="items the index returns, re-ranked by exact score")
    nlist: int | None = Field(None, ge=1, description="index cells (k-means); null = 4 * sqrt(items)")
    nprobe: int = Field(16, ge=1, description="cells searched per request: more = better recall, slower")


class ServeParams(_Section):
    """`mapwise serve`: the HTTP service on onnxruntime."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model: str | None = Field(None, description="models:/<name>@<alias>, or a bundle folder; null = champion")
    poll_seconds: float = Field(10, gt=0, description="how often the champion alias is checked")
    workers: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per worker")
    max_k: int = Field(100, ge=1)
    max_recent_items: int = Field(100, ge=1)
    max_list_items: int = Field(1000, ge=1, description="longest allow / deny / category list")
    max_body_bytes: int = Field(65536, ge=1024)
    max_header_bytes: int = Field(16384, ge=1024, description="request line and headers; over it: 431, connection closed")
    request_timeout_seconds: float = Field(10, gt=0, description="to receive a whole request (headers and body) from "
                                           "the connection or its first byte; over it: 408, connection closed")
    cache_dir: Path = Field(Path(".mapwise/serving"), description="downloaded versions, shared by the workers")
    targets: dict[str, str] | None = Field(None, description=(
        "targeting models: 'propensity/<task>' (or just '<task>') and 'uplift' -> models:/<name>@<alias> or a bundle "
        "folder; null = every registered mapwise-propensity-<task> and mapwise-uplift with a champion alias"))
    max_explain_rows: int = Field(100, ge=1, description="most rows one targeting request may ask reasons for")
    retrieval: RetrievalParams = RetrievalParams()

    @field_validator("targets")
    @classmethod
    def _target_names(cls, targets: dict[str, str] | None) -> dict[str, str] | None:
        import re

        for name in targets or {}:
            if not re.fullmatch(r"uplift|(propensity/)?[A-Za-z0-9_.-]{1,64}", name) or name == "propensity":
                raise ValueError(f"'{name}': expected 'uplift', 'propensity/<task>' or '<task>' "
                                 "(letters, digits, _ . -)")
        return targets


class ScoreParams(_Section):
    """`mapwise score`: top-K for every customer (or a segment), for campaign tools."""

    k: int = Field(10, ge=1)
    exclude_purchased: bool = True
    out: Path = Path("data/audience/recommendations.parquet")


class WarmStartParams(_Section):
    """The retrain flow (a batch arrived): fine-tune the champion's architecture from its weights instead of training
    every model from scratch; the scheduled run (`pipeline/scheduled`) still trains every model from scratch."""

    enabled: bool = Field(True, description="false = a batch arriving retrains every model from scratch too")
    max_steps: int = Field(50, ge=1, description="fine-tuning budget in optimizer steps (train.max_steps for the run)")
    val_every_steps: int = Field(25, ge=1, description="validation interval while fine-tuning")
    patience: int = Field(2, ge=1, description="validations without a gain before fine-tuning stops")
    warmup_steps: int = Field(10, ge=1, description="learning-rate warm-up while fine-tuning")


class OrchestrateParams(_Section):
    """Prefect flows (`flows/`), their deployments (`deploy/serve_flows.py`) and the local stack (`make up`)."""

    incoming: str = Field("data/incoming", description="drop folder <incoming>/<source>/<file>, or an fsspec URL such as s3://bucket/prefix")
    quarantine_dir: Path = Field(Path("data/rejected"), description="rejected batches, each with <file>.reason.json")
    ledger: Path = Field(Path("data/ledger.jsonl"), description="content hash of every batch seen, and what became of it")
    max_bad_share: float = Field(0.05, ge=0, le=1, description="a batch with a larger share of rows quarantined for a "
                                 "counted reason, in any table, is rejected whole")
    uncounted_reasons: list[str] = Field(["excluded by filter", "customer_id: missing value"], description=(
        "quarantine reasons ('column: reason', matched from the start) that are by design, not damage, and do not "
        "count against max_bad_share: a mapping's filter, records without a customer (guest checkouts)"))
    max_broken_lines: int = Field(0, ge=0, description="records whose structure cannot be parsed (a quote never "
                                  "closed, a wrong number of fields, bytes invalid in the encoding, malformed JSON) "
                                  "a batch may hold; more and it is rejected whole as damaged")
    poll_seconds: float = Field(5, gt=0, description="how often `mapwise watch` lists the drop folder")
    schedule: str | None = Field("0 3 * * 1", description="cron of the scheduled retrain; null = none")
    timezone: str = "UTC"
    record: bool = Field(True, description="record each run that changed something as a DVC experiment (`dvc exp save`): "
                         "the commit its registered model versions point at")
    push: bool = Field(True, description="`dvc push` to the default remote after each run that changed something")
    warm_start: WarmStartParams = WarmStartParams()
    retries: int = Field(2, ge=0, description="retries of a stage that failed for a transient reason")
    retry_delay_seconds: float = Field(10, ge=0, description="first retry delay; it doubles on each retry")
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    mlflow_ui: str = Field("http://127.0.0.1:5000", description="MLflow UI the flow's artifacts link to")


class FitParams(_Section):
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


class GanParams(_Section):
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


class AugmentParams(_Section):
    """Synthetic rows for scarce segments of a propensity task's training rows (never validation or test)."""

    segment: str = Field(description="a categorical feature column: its values are the segments")
    min_rows: int = Field(200, ge=1, description="segments with fewer training rows get synthetic rows up to this many")
    gan: GanParams = GanParams()


class PrivateParams(_Section):
    """Differentially private training (DP-SGD, Opacus) of the propensity networks."""

    epsilon: float = Field(3.0, gt=0, description="the privacy budget spent over the whole training")
    delta: float | None = Field(None, gt=0, lt=1, description="null = 1 / (10 x training rows), well below 1/n")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example gradients are clipped to this norm")
    epochs: int = Field(10, ge=1, description="a fixed number of passes: the noise is calibrated to it (no early stop)")


class PropensityTask(_Section):
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


class _Tabular(_Section):
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


class TargetParams(_Section):
    """`target`: next best action per customer: the arm with the highest uplift net of its cost, or no contact."""

    outcome: Literal["visit", "conversion", "spend"] = Field("spend", description="the uplift that is weighed")
    contact_cost: float = Field(0.1, ge=0, description="cost of one contact, in units of the outcome")
    out: Path = Path("data/audience/next_best_action.parquet")
    report: Path = Path("reports/target.json")


class SynthParams(_Section):
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


class ConsentParams(_Section):
    """Which consent flags (customers contract) a customer needs before any marketing score or audience."""

    require: list[Literal["consent_email", "consent_sms", "consent_phone"]] = Field(
        ["consent_email"], description="every listed flag must be true")
    unknown: Literal["allow", "deny"] = Field("allow", description="a customer whose flag is missing (no source maps "
                                              "it): allow (counted in reports) or deny")


class KAnonymityParams(_Section):
    """Every exported audience or synthetic table must hide each customer among at least k with the same
    quasi-identifiers."""

    k: int = Field(5, ge=2)
    quasi_identifiers: list[str] = Field(["country", "age_band", "gender"], description="columns an outsider could "
                                         "link (from customers, traits or profiles); those a table lacks are skipped")
    on_fail: Literal["refuse", "suppress"] = Field("refuse", description="refuse the export, or drop the rows of "
                                                   "groups smaller than k (counted)")


class PrivacyParams(_Section):
    """`privacy`: forgetting, consent and k-anonymity."""

    forget_log: Path = Field(Path("data/privacy/forget.jsonl"), description="append-only log of forget requests "
                             "(pseudonyms, never raw ids); ingest leaves these customers out")
    consent: ConsentParams = ConsentParams()
    k_anonymity: KAnonymityParams = KAnonymityParams()


with warnings.catch_warnings():  # the `register` section shadows pydantic's (ABC) classmethod `register`: harmless
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(_Section):
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
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MapwiseError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise MapwiseError(f"{path}: {yaml_problem(err)}") from None


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
