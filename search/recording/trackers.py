"""Experiment trackers: the sweep file's [logging] section (search.definition.logging_section)
turned into Ray Tune's own logger callbacks, so MLflow, TensorBoard and Weights & Biases see one
run per trial (its parameters, every epoch's metrics, the best epoch's final_* metrics in its last
report) without an exporter of ser-search's own. The callbacks run on the driver, like the
Parquet recorder. A tracker's package is imported only when its key is set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from search.definition.logging_section import (  # noqa: F401 - this module's names before the move
    EXTRA, RESUME_NOTE, LoggingSection, TrackerError, check_installed, is_file_store, resolve_tracking_uri,
    same_trackers, stored_logging)
from search.results.location import is_uri

if TYPE_CHECKING:
    from ray import tune

    from ser_core.config import TrainConfig


def default_loggers() -> list[tune.Callback]:
    """The Tune loggers every run keeps: its CSV and JSON logs (progress.csv, result.json in each
    trial's directory), which Tune adds by itself unless told not to (runner._configure_tune)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # noqa: PLC0415

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def tracker_callbacks(logging: LoggingSection | None, *, run_name: str, stage: str, source_sweep: str,
                      to_config: Callable[[dict[str, Any]], TrainConfig],
                      experiment: str | None = None, run_dir: str | None = None,
                      n_folds: int | None = None) -> list[tune.Callback]:
    """Tune's logger callbacks for a run (a sweep or a confirmation): always its CSV and JSON
    logs (Tune's defaults, which it would add itself), plus each tracker [logging] names.
    Tune's default TensorBoard logger is not added unless asked for (see runner._configure_tune),
    so a sweep without [logging] writes no event files. `experiment` (the MLflow experiment /
    W&B project) defaults to [logging] experiment, else `run_name`; W&B writes under a local
    `run_dir` (<results>/<name>/wandb/). `n_folds` (the prepared data's) lets MLflow's parameters
    name a trial's validation and test folds as its trials row does."""
    callbacks = default_loggers()
    if logging is None or not logging.enabled():
        return callbacks
    check_installed(logging)
    name = experiment or logging.experiment or run_name
    tags = {"sweep": run_name, "stage": stage, "source_sweep": source_sweep}
    if logging.mlflow:
        from .mlflow_runs import TrialRunsMLflow  # noqa: PLC0415 - imports mlflow (seconds)

        callbacks.append(TrialRunsMLflow(logging.mlflow, to_config, n_folds, experiment_name=name, tags=tags))
    if logging.tensorboard:
        from ray.tune.logger import TBXLoggerCallback  # noqa: PLC0415

        callbacks.append(TBXLoggerCallback())
    if logging.wandb:
        from .wandb_runs import ModeWandb  # noqa: PLC0415 - imports wandb

        # excludes: the confusion matrices' JSON string is no metric; the rest W&B plots per epoch.
        # dir: wandb's offline files beside the results (its logging actor runs on the driver's node)
        where = {"dir": run_dir} if run_dir and not is_uri(run_dir) else {}
        callbacks.append(ModeWandb(logging.wandb, project=name, group=stage, tags=list(dict.fromkeys(tags.values())),
                                   excludes=["final_json"], **where))
    return callbacks
