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

After a killed driver (`restore`):
- the study is re-opened where this driver keeps it (`search.driver.study.bound`): the searcher's
  pickled state carries no storage, since its URL may hold a password and the study may now be
  another machine's copy of it (object-store results);
- a trial Optuna asked after the last snapshot is RUNNING in the study but unknown to Tune, so
  nothing would ever finish it: it is told FAIL with the reason, and a `cover_choices` point it
  had taken (Optuna keeps it as `fixed_params`) is enqueued again, so the point still runs;
- a trial asked after the last snapshot that *finished* before the driver died is COMPLETE or
  PRUNED in Optuna and has its Parquet row, but Tune's restored trial counter does not count it,
  so the resumed sweep would run one trial more than `num_samples`. The searcher adopts it (its
  storage id is kept in the pickled state, so a second resume does not count it twice) and
  `SweepSearchGenerator` adds the adopted trials to the restored counter.

Multi-objective studies (`[sweep] objectives`): Optuna 5.0 keeps no intermediate values for
them (`Trial.report` and `should_prune` raise NotImplementedError) and `study.tell(state=PRUNED)`
stores a pruned trial without values (it would take the last intermediate value, and there is
none; values cannot be passed with PRUNED). The scheduler (search/driver/mo_asha.py) stops trials; a
trial stopped early is still told PRUNED, by the same rule, with the objective values it had
reached and the epoch as user attributes (`ser_search_pruned_values`, `ser_search_pruned_at_epoch`)
for whoever reads the study. What the samplers make of it: multi-objective TPE puts pruned trials
without intermediate values behind every completed one (its `_split_trials`: completed trials
fill the good group first), so a stopped configuration counts as a bad one, not as an unknown;
NSGA-II builds its generations from COMPLETE trials only and ignores pruned ones. Writing the
intermediate values into the storage behind Optuna's back would not help: multi-objective TPE
then reads `study.direction`, which raises for such a study.

An errored trial is not told FAIL when Tune reports the error: a resume after a killed driver
retries errored trials (`resume_errored`), and Optuna cannot reopen a finished trial, so a retry
that completes would stay FAIL there while Parquet says completed. It stays RUNNING (TPE ignores
RUNNING and FAIL trials alike) with a mark, until the sweep ends (`search.driver.study.finish_study`).
"""
from __future__ import annotations

import logging
import math
import pickle
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search import SearchGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from .relocation import rebase_spec
from .study import ERROR_ATTR, FAILED_ATTR, REQUEUED_ATTR, TUNE_ID_ATTR, bound

logger = logging.getLogger(__name__)

# Multi-objective studies: what a pruned trial had reached when the scheduler stopped it.
PRUNED_AT_ATTR = "ser_search_pruned_at_epoch"
PRUNED_VALUES_ATTR = "ser_search_pruned_values"  # {tune metric: value at that epoch}


def _json_number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


class PruningAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, max_epochs: int, epoch_key: str = "epoch", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._epoch_key = epoch_key
        self._reported_steps: dict[str, set[int]] = {}
        self._last_values: dict[str, tuple[Any, list[Any]]] = {}  # multi-objective: (epoch, values)
        self._adopted: set[int] = set()  # storage ids: finished trials the restored Tune never knew
        self.adopted_on_restore = 0  # how many the last restore adopted (SweepSearchGenerator reads it)

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # lets Optuna's trials be matched with Tune's and Parquet's rows
            self._ot_trials[trial_id].set_user_attr(TUNE_ID_ATTR, trial_id)
        return params

    # Pickled (into Tune's tuner.pkl and every snapshot, both stored with the results) without
    # the study's storage: its URL may hold a password, and the study may live elsewhere when
    # the state is read back (another machine's temporary copy). Trials are kept by storage id.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_storage"] = state["_ot_study"] = None
        state["_ot_trials"] = {tid: t._trial_id for tid, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_last_values", {})  # pickled before multi-objective sweeps existed
        self.__dict__.setdefault("_adopted", set())  # pickled before finished orphans were adopted
        self.adopted_on_restore = 0
        if bound(self._study_name) is not None:
            self._reopen()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        self._reopen()
        self._fail_lost_trials()
        self._adopt_finished_trials()

    def _reopen(self) -> None:
        """Open the study where this driver keeps it (search.driver.study.bound) and its trials by id
        (the storage is the same database, or a copy of it)."""
        location = bound(self._study_name)
        if location is None:
            raise RuntimeError(f"no Optuna storage is bound for study {self._study_name!r} in this driver "
                               "(search.driver.study.bind); the searcher's state does not carry one")
        storage = location.storage()
        sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
        study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=sampler,
                                  pruner=optuna.pruners.NopPruner())
        self._storage, self._ot_study = storage, study
        self._ot_trials = {tid: optuna.Trial(study, t if isinstance(t, int) else t._trial_id)
                           for tid, t in self._ot_trials.items()}

    def _fail_lost_trials(self) -> None:
        known = {t._trial_id for t in self._ot_trials.values()}
        study = self._ot_study
        for lost in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if lost._trial_id in known:
                continue
            if lost.user_attrs.get(TUNE_ID_ATTR):
                reason = ("asked after the last experiment snapshot of a driver that died: Tune does not know it, "
                          "so no trial would ever finish it")
            else:  # killed between Optuna's ask and suggest() returning (ask and its params are several writes)
                reason = ("asked by a driver that died before handing it to Ray Tune: no Tune trial ran it, "
                          "so no trial would ever finish it")
            study._storage.set_trial_user_attr(lost._trial_id, FAILED_ATTR, reason)
            study.tell(lost.number, state=TrialState.FAIL, skip_if_finished=True)
            point = lost.system_attrs.get("fixed_params")
            if point:  # a cover_choices point: ask it again
                study.enqueue_trial(point, user_attrs={REQUEUED_ATTR: lost.number})
            logger.warning("Optuna trial %d (Tune trial %s) %s; told FAIL%s", lost.number,
                           lost.user_attrs.get(TUNE_ID_ATTR) or "none", reason,
                           f", its point {point} enqueued again" if point else "")

    def _adopt_finished_trials(self) -> None:
        """Count the trials asked after the last snapshot that finished before the driver died
        (module doc): Optuna and Parquet hold their outcome, Tune's restored counter does not."""
        known = {t._trial_id for t in self._ot_trials.values()} | self._adopted
        finished = self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        # a Tune id marks a trial this sweep ran (warm-start trials have none)
        orphans = [t for t in finished if t._trial_id not in known and t.user_attrs.get(TUNE_ID_ATTR)]
        self._adopted |= {t._trial_id for t in orphans}
        self.adopted_on_restore = len(orphans)
        for t in orphans:
            logger.warning("Optuna trial %d (Tune trial %s) finished after the last experiment snapshot of a driver "
                           "that died; its result is kept and it counts toward num_samples", t.number,
                           t.user_attrs[TUNE_ID_ATTR])

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, list)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.multi_objective:
            # Optuna keeps no intermediate values for a multi-objective study (Trial.report
            # raises); the last values are kept here, for the pruned trial's record (module doc).
            if trial_id not in self._completed_trials and result:
                self._last_values[trial_id] = (result.get(self._epoch_key), [result.get(m) for m in self.metric])
            return
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

    def _record_pruned_values(self, trial_id: str, ot_trial: optuna.Trial) -> None:
        """A multi-objective trial about to be told PRUNED: its objective values at the epoch it
        was stopped, as user attributes (Optuna stores no values for a pruned trial of such a
        study, and no intermediate values at all)."""
        epoch, values = self._last_values.pop(trial_id, (None, None))
        if values is None:
            return
        try:
            ot_trial.set_user_attr(PRUNED_AT_ATTR, None if epoch is None else int(epoch))
            ot_trial.set_user_attr(PRUNED_VALUES_ATTR, dict(zip(self.metric, map(_json_number, values))))
        except UpdateFinishedTrialError:
            pass  # a replayed trial Optuna already holds as finished: the tell below skips it too

    def _already_finished(self, trial_id: str) -> None:
        logger.info("trial %s finished in Optuna before the sweep was restored; its replay is not told", trial_id)
        self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error and trial_id not in self._completed_trials:
            # FAIL is told when the sweep ends (module doc): a resume may still retry this trial.
            try:
                self._ot_trials[trial_id].set_user_attr(ERROR_ATTR, True)
            except UpdateFinishedTrialError:
                self._already_finished(trial_id)
            return
        epochs = None if not result else result.get(self._epoch_key)
        stopped_early = (not error) and epochs is not None and int(epochs) < self._max_epochs
        if not stopped_early or trial_id in self._completed_trials:
            self._last_values.pop(trial_id, None)
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        ot_trial = self._ot_trials[trial_id]
        # Make sure the last result is among the intermediate values before pruning.
        self.on_trial_result(trial_id, result)
        if self.multi_objective:
            self._record_pruned_values(trial_id, ot_trial)
        # skip_if_finished: a replayed trial that repeated only epochs Optuna had already seen
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)
        logger.debug("trial %s stopped at epoch %s of %s: told Optuna it was pruned",
                     trial_id, epochs, self._max_epochs)


class SweepSearchGenerator(SearchGenerator):
    """Tune's SearchGenerator, whose restored trial counter also counts the trials the searcher
    adopted on restore (finished after the last snapshot; module doc), so a resumed sweep runs
    `num_samples` trials in all, not one more per such trial; and whose new trials go where the
    sweep is restored from (search.driver.relocation)."""

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        rebase_spec(self._experiment.spec)  # new trials go where the run is restored from
        base: Searcher = self.searcher
        while hasattr(base, "searcher"):  # a ConcurrencyLimiter around it
            base = base.searcher
        self._counter += getattr(base, "adopted_on_restore", 0)
