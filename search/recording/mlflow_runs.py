"""Ray's MLflowLoggerCallback with one MLflow run per Tune trial across resumes, and parameters
that say what the trial ran. Its own module because importing it imports mlflow (seconds):
search/recording/trackers.py imports it only when [logging] mlflow is set; tuner.pkl names it on restore."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from ray.air.integrations.mlflow import MLflowLoggerCallback

from search.definition.logging_section import is_file_store
from search.results.schema import design_columns

if TYPE_CHECKING:
    from ser_core.config import TrainConfig


def _mlflow_params(trial_config: dict[str, Any], cfg: TrainConfig | None,
                   n_folds: int | None = None) -> dict[str, Any]:
    """A trial's MLflow parameters: its sampled (and fixed) axes as Tune gave them, and the
    settings a reader filters runs by even where the sweep fixes them in [base]. A confirmation
    run's whole config (config_json, thousands of characters) is replaced by those settings.
    The folds are the trials row's (search.results.schema.design_columns): `test_folds` and
    `val_folds`, and `fold` only for a design with one test fold; `data.fold` itself would say 0
    for a cross-validated or held-out trial that never tested on fold 0."""
    params = {k: v for k, v in trial_config.items() if k != "config_json" and v is not None}
    if cfg is not None:
        params.update({"model": cfg.model.name, "frontend": cfg.frontend.kind, "loss_family": cfg.loss.family,
                       "lr": cfg.optim.lr, "batch_size": cfg.optim.batch_size, "epochs": cfg.optim.epochs,
                       "seed": cfg.seed})
        design = design_columns(cfg, n_folds)
        params.update({k: ",".join(str(f) for f in design[k]) for k in ("test_folds", "val_folds")
                       if design[k] is not None})
        if design["fold"] is not None:
            params["fold"] = design["fold"]
        if cfg.data.leave_out is not None:
            params["leave_out"] = cfg.data.leave_out
    return params


class TrialRunsMLflow(MLflowLoggerCallback):
    """Ray's MLflowLoggerCallback, one run per Tune trial for the life of a sweep: a trial
    resumed by a new driver (--resume) continues the run it started (found by its trial_id
    tag) rather than opening a second one; and a run's parameters say what the trial ran
    (model, frontend, loss family, ...), not only the axes Tune sampled."""

    def __init__(self, tracking_uri: str, to_config: Callable[[dict[str, Any]], TrainConfig],
                 n_folds: int | None = None, **kwargs: Any):
        super().__init__(tracking_uri, **kwargs)
        self.to_config = to_config
        self.n_folds = n_folds  # the prepared data's fold count: what names a design's validation folds

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if is_file_store(self.tracking_uri):
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked
            # for; the sweep file asked for it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().setup(*args, **kwargs)

    def _existing_run(self, trial: Any) -> str | None:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        runs = MlflowClient(self.tracking_uri).search_runs(
            [self.mlflow_util.experiment_id], filter_string=f"tags.trial_id = '{trial.trial_id}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs:
            run_id = self._existing_run(trial)
            if run_id is None:
                tags = {**self.tags, "trial_name": str(trial), "trial_id": trial.trial_id}
                run_id = self.mlflow_util.start_run(tags=tags, run_name=str(trial)).info.run_id
            self._trial_runs[trial] = run_id
        try:
            cfg = self.to_config(trial.config)
        except Exception:  # noqa: BLE001 - the trial itself reports a bad config; log what Tune has
            cfg = None
        self.mlflow_util.log_params(run_id=self._trial_runs[trial],
                                    params_to_log=_mlflow_params(trial.config, cfg, getattr(self, "n_folds", None)))  # pickled before n_folds
