"""Hyper-parameter search with Optuna over the space declared in params (`tune`).

Each trial trains with `train_model`, is pruned early through a Lightning callback when its
validation NDCG lags, and is logged as an MLflow child run under one parent run per study.
The best configuration is written as a params fragment a user can paste into params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import optuna
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from mapwise.recommend.models.module import VAL_METRIC
from mapwise.recommend.models.training import train_model
from mapwise.params import Params, SearchChoice, SearchRange, TrainParams
from mapwise.recommend.split import Split
from mapwise.tracking import artifact_location, tracking_uri


class PruneOnValidation(Callback):
    """Report validation NDCG to the trial at each validation; stop the trial when Optuna says so.

    Reports are numbered by validation (0, 1, ...), not by optimizer step: trials with other batch
    sizes or window lengths validate at other steps, and the pruner compares reports of equal number.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.validations = trial, 0

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or VAL_METRIC not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[VAL_METRIC]), self.validations)
        self.validations += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")


def suggest(trial: optuna.Trial, train: TrainParams, space: dict[str, SearchRange | SearchChoice]) -> TrainParams:
    """The trial's training params: the base params with each searched key replaced."""
    top: dict[str, object] = {}
    model: dict[str, object] = {}
    for key, spec in space.items():
        if isinstance(spec, SearchChoice):
            value = trial.suggest_categorical(key, spec.choices)
        elif isinstance(spec.low, int) and isinstance(spec.high, int) and not spec.log:
            value = trial.suggest_int(key, spec.low, spec.high)
        else:
            value = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
        if key.startswith("model."):
            model[key.removeprefix("model.")] = value
        else:
            top[key] = value
    return train.model_copy(update={**top, "model": train.model.model_copy(update=model)})


@dataclass(frozen=True)
class TuneResult:
    """The best trial and the study it came from."""

    best_value: float
    best_params: dict
    trials: int
    pruned: int
    parent_run_id: str


def tune(split: Split, params: Params, *, work_dir: Path, trials: int | None = None) -> TuneResult:
    """Run the study declared in `params.tune` on the split's validation window."""
    t = params.tune
    uri = tracking_uri(params.tracking)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(params.tracking.experiment, artifact_location=artifact_location())
    )
    parent = client.create_run(experiment_id, run_name=f"tune-{t.model}", tags={"mapwise.stage": "tune"})
    base = params.train.for_model(t.model).model_copy(update={"max_epochs": t.max_epochs, "models": [t.model], "per_model": {}})

    def objective(trial: optuna.Trial) -> float:
        trial_params = suggest(trial, base, t.space)
        child = client.create_run(
            experiment_id,
            run_name=f"trial-{trial.number}",
            tags={"mlflow.parentRunId": parent.info.run_id, "mapwise.stage": "tune", "model": t.model},
        )
        logger = MLFlowLogger(tracking_uri=uri, run_id=child.info.run_id)
        logger.log_hyperparams(trial.params)
        try:
            result = train_model(
                t.model, split, trial_params, work_dir=work_dir, logger=logger,
                callbacks=[PruneOnValidation(trial)], progress=False,
            )
        except optuna.TrialPruned:
            client.set_terminated(child.info.run_id, status="KILLED")
            raise
        return result.best_score

    sampler = optuna.samplers.TPESampler(seed=params.train.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=optuna.pruners.MedianPruner(n_warmup_steps=2))
    study.optimize(objective, n_trials=trials or t.trials, timeout=t.timeout_minutes * 60 if t.timeout_minutes else None)
    client.log_metric(parent.info.run_id, "best_val_ndcg10", study.best_value)
    client.set_terminated(parent.info.run_id)
    pruned = sum(tr.state == optuna.trial.TrialState.PRUNED for tr in study.trials)
    return TuneResult(study.best_value, study.best_params, len(study.trials), pruned, parent.info.run_id)


def params_fragment(best: dict) -> dict:
    """The best values shaped like params.yaml's `train` section, ready to adopt."""
    train: dict[str, object] = {}
    for key, value in best.items():
        if key.startswith("model."):
            train.setdefault("model", {})[key.removeprefix("model.")] = value
        else:
            train[key] = value
    return {"train": train}
