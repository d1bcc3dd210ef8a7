"""The ASHA → Optuna bridge.

When ASHA stops a trial, Ray Tune calls `Searcher.on_trial_complete` with the trial's last
(low-epoch) result, and Ray's stock OptunaSearch then tells Optuna the trial COMPLETED with
that truncated score: TPE learns from a 2-epoch number as if it were a final one. Here a
trial that ends before the sweep's epoch budget without an error is told to Optuna as
PRUNED; Optuna then keeps its intermediate values (already reported epoch by epoch) and
takes the last one as its value, which is how TPE expects pruned trials to look.

The rule "ended before the budget, no error ⇒ pruned" needs no shared state with the
scheduler, so it survives `Tuner.restore` unchanged: a trainable here only ever ends early
because the scheduler stopped it.

Optuna's storage is written at once, Tune's experiment snapshot every few seconds: a restored
sweep may replay a trial Optuna already holds as finished. Its replayed results and outcome
are ignored; Optuna keeps the first.
"""
from __future__ import annotations

import logging
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


class PruningAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, max_epochs: int, epoch_key: str = "epoch", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._epoch_key = epoch_key
        self._reported_steps: dict[str, set[int]] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Report intermediate values against our own epoch counter, which stays correct
        # after a trial is restored from a checkpoint (training_iteration may not).
        if trial_id in self._completed_trials or self.metric not in result:
            return
        step = int(result.get(self._epoch_key, result.get("training_iteration", 0)))
        seen = self._reported_steps.setdefault(trial_id, set())
        if step not in seen:  # a restored trial may repeat an epoch; Optuna keeps the first
            try:
                self._ot_trials[trial_id].report(float(result[self.metric]), step)
            except UpdateFinishedTrialError:
                self._already_finished(trial_id)
                return
            seen.add(step)

    def _already_finished(self, trial_id: str) -> None:
        logger.info("trial %s finished in Optuna before the sweep was restored; its replay is not told", trial_id)
        self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        epochs = None if not result else result.get(self._epoch_key)
        stopped_early = (not error) and epochs is not None and int(epochs) < self._max_epochs
        if not stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        ot_trial = self._ot_trials[trial_id]
        # Make sure the last result is among the intermediate values before pruning.
        self.on_trial_result(trial_id, result)
        # skip_if_finished: a replayed trial that repeated only epochs Optuna had already seen
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)
        logger.debug("trial %s stopped at epoch %s of %s: told Optuna it was pruned",
                     trial_id, epochs, self._max_epochs)
