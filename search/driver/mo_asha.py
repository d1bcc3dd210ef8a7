"""Asynchronous successive halving for several objectives: early stopping for Pareto sweeps.

Optuna cannot stop trials of a multi-objective study: `Trial.report` and `should_prune` raise
for one, and every Optuna pruner compares one intermediate value. Ray's ASHA compares one
metric too. A sweep with `[sweep] objectives` (val_ua up, latency down, ...) would otherwise
train every trial to the full budget. This scheduler is MO-ASHA (Schmucker et al. 2021,
"Multi-objective Asynchronous Successive Halving", arXiv:2106.12639): the rungs and the
asynchronous promotion of ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning"), with the ranking at a rung by non-dominated sorting instead of by one number.

The rule, at each rung `grace_period * reduction_factor**k` below `max_t` (Ray's ASHA rungs):
a trial reaching the rung is recorded there with its objective values, and the n trials
recorded at that rung (itself included) are ordered by

1. non-dominated rank (NSGA-II's fast non-dominated sort, search/definition/objectives.py), then
2. within a rank, NSGA-II's crowding distance, larger first (Deb et al. 2002).

It continues when fewer than n / reduction_factor trials are strictly ahead of it, i.e. when it
is in the top ceil(n / reduction_factor) — the top 1/rf of the rung, as in ASHA. A trial tied
with others (same rank and crowding) is placed ahead of them, as ASHA continues a trial equal
to its cutoff. The first trial at a rung always continues (ASHA too: nothing to compare with).

With one objective (a cost equal for every trial) this is rank-based halving, the rule of ASHA's
paper; it is NOT Ray's ASHAScheduler's decision rule, which stops a trial below the (1 - 1/rf)
percentile of the OTHER trials' values, interpolated between them (np.nanpercentile). That cutoff
depends on the values, not only on their order, so no ranking reproduces it: the two agree on
most decisions and differ either way at every rf (tests/test_mo_asha.py has cases at rf 2 and 3).

Why crowding distance, not MO-ASHA's default ε-net: Schmucker et al. study both (their
"NSGA-II" and "EpsNet" selections); the ε-net's farthest-first choice depends on the starting
point and on how the objectives are scaled, the crowding distance only on ranks within each
objective's range on the front, and it is the rule the NSGA-II sampler of the same sweep uses,
so the scheduler and the sampler agree on which trials are worth keeping. Both keep the ends of
a trade-off (the most accurate trial and the cheapest) ahead of its crowded middle.

What ASHA's numbers become here: a cost objective (params, macs, latency) is one number per
trial, the same at every rung, so the halving is on the trade-off between the validation
metric so far and the model's cost. A result without an objective, or with a NaN or None
there, ranks behind every trial measured on all of them (search/definition/objectives.py), so it continues only
while the rung has too few measured trials to fill its top 1/rf; a result without the time
attribute is not judged (continue), as in Ray's ASHA.

State across `Tuner.restore`: Tune 2.60 pickles the scheduler into tuner.pkl once, when the
sweep starts, and never saves it again, so Ray's ASHA resumes with empty rungs. `RungState` is a
Tune callback that holds the scheduler: Tune saves callback states in every experiment snapshot
(and both objects come back from the same tuner.pkl, so the callback still holds the restored
scheduler), and a resumed sweep continues with the rungs as of the last snapshot.
"""
from __future__ import annotations

import logging
import math
import pickle
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from search.definition.objectives import SENSES, crowding_distance, non_dominated_ranks

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)


def _number(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


class MultiObjectiveASHA(FIFOScheduler):
    """MO-ASHA over `metrics` (each better by its `modes` entry, "max" or "min"); see the module
    docstring for the rule. `time_attr`, `max_t`, `grace_period`, `reduction_factor` and
    `stop_last_trials` mean what they mean for Ray's AsyncHyperBandScheduler (one bracket)."""

    def __init__(self, metrics: Sequence[str], modes: Sequence[str], *, time_attr: str = "training_iteration",
                 max_t: int = 100, grace_period: int = 1, reduction_factor: float = 4,
                 stop_last_trials: bool = True) -> None:
        if len(metrics) < 2 or len(metrics) != len(modes):
            raise ValueError(f"give two or more metrics and one mode each; got metrics {list(metrics)}, "
                             f"modes {list(modes)}")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"a metric is listed twice: {list(metrics)}")
        if any(m not in SENSES for m in modes):
            raise ValueError(f"modes must be 'max' or 'min', got {list(modes)}")
        if not (max_t > 0 and 0 < grace_period <= max_t and reduction_factor > 1):
            raise ValueError(f"need 0 < grace_period ({grace_period}) <= max_t ({max_t}) and reduction_factor "
                             f"({reduction_factor}) > 1")
        super().__init__()
        self._metrics = list(metrics)
        self._modes = list(modes)
        self._time_attr = time_attr
        self._max_t = max_t
        self._rf = float(reduction_factor)
        self._stop_last_trials = stop_last_trials
        n_rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)  # as Ray's _Bracket
        # milestone -> {trial_id: objective values at that rung}, highest milestone first
        self._rungs: list[tuple[float, dict[str, tuple[float, ...]]]] = [
            (grace_period * reduction_factor ** k, {}) for k in reversed(range(n_rungs))]
        self._num_stopped = 0
        self._warned_missing: set[str] = set()

    # ------------------------------------------------------------------ Tune's scheduler API

    # `metric` stays TrialScheduler's None: Tune checks a scheduler's metric as one result key
    # (TuneController._validate_result_metrics); the searcher's list is checked there already.
    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # The objectives are this scheduler's own; a TuneConfig metric/mode would be a second,
        # single objective (Tune then says the scheduler has its own).
        return metric is None and mode is None

    def on_trial_add(self, tune_controller: "TuneController", trial: Trial) -> None:
        pass  # nothing per trial: a trial's rung records are made when it reaches each rung

    def on_trial_result(self, tune_controller: "TuneController", trial: Trial, result: dict) -> str:
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        if self._stop_last_trials and t >= self._max_t:
            action = TrialScheduler.STOP
        else:
            action = self._on_result(trial.trial_id, t, self._values(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: "TuneController", trial: Trial, result: dict) -> None:
        if result and self._time_attr in result:  # record its last rung if it ended on one
            self._on_result(trial.trial_id, result[self._time_attr], self._values(result))

    def on_trial_remove(self, tune_controller: "TuneController", trial: Trial) -> None:
        pass

    def debug_string(self) -> str:
        rungs = " | ".join(f"t={m:g}: {len(r)} recorded" for m, r in reversed(self._rungs))
        return f"MultiObjectiveASHA over {self._metrics}: {self._num_stopped} stopped; {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.load_state(pickle.load(f))

    # ------------------------------------------------------------------ rungs

    def state(self) -> dict[str, Any]:
        """The rung records and counters: what a restored sweep needs to judge as before."""
        return {"rungs": [(m, dict(r)) for m, r in self._rungs], "num_stopped": self._num_stopped}

    def load_state(self, state: dict[str, Any]) -> None:
        stored = {m: r for m, r in state["rungs"]}
        mine = [m for m, _ in self._rungs]
        if sorted(stored) != sorted(mine):
            raise ValueError(f"stored rungs {sorted(stored)} are not this scheduler's {sorted(mine)}")
        self._rungs = [(m, dict(stored[m])) for m in mine]
        self._num_stopped = int(state.get("num_stopped", 0))

    def recorded(self, milestone: float) -> dict[str, tuple[float, ...]]:
        """The trials recorded at the rung at `milestone`, with their objective values."""
        for m, r in self._rungs:
            if m == milestone:
                return dict(r)
        raise KeyError(f"no rung at {milestone}; rungs: {[m for m, _ in reversed(self._rungs)]}")

    @property
    def milestones(self) -> list[float]:
        return [m for m, _ in reversed(self._rungs)]

    def _values(self, result: dict) -> tuple[float, ...]:
        out = []
        for m in self._metrics:
            if m not in result and m not in self._warned_missing:
                self._warned_missing.add(m)
                logger.warning("MultiObjectiveASHA: a result has no %r; such trials rank behind every trial "
                               "measured on all objectives", m)
            out.append(_number(result.get(m)))
        return tuple(out)

    def _on_result(self, trial_id: str, t: float, values: tuple[float, ...]) -> str:
        for milestone, recorded in self._rungs:  # highest milestone first: the rung it has reached
            if t < milestone or trial_id in recorded:
                continue
            recorded[trial_id] = values
            return TrialScheduler.CONTINUE if self._promotable(recorded, trial_id) else TrialScheduler.STOP
        return TrialScheduler.CONTINUE  # below the first rung, or judged at its rung already

    def _promotable(self, recorded: dict[str, tuple[float, ...]], trial_id: str) -> bool:
        ids = list(recorded)
        me = ids.index(trial_id)
        return ahead_count(np.array([recorded[i] for i in ids], dtype=float), self._modes, me) < len(ids) / self._rf


def ahead_count(values: np.ndarray, senses: Sequence[str], i: int) -> int:
    """How many trials are strictly ahead of trial i at a rung: on a better non-dominated front,
    or on its front with a larger crowding distance."""
    ranks = non_dominated_ranks(values, senses)
    crowd = crowding_distance(values, senses, ranks)
    ahead = (ranks < ranks[i]) | ((ranks == ranks[i]) & (crowd > crowd[i]))
    return int(ahead.sum())


class RungState(tune.Callback):
    """Carries a MultiObjectiveASHA's rungs in Tune's experiment snapshots (module docstring):
    Tune saves and restores callback states, not the scheduler's."""

    def __init__(self, scheduler: MultiObjectiveASHA) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {"mo_asha": self.scheduler.state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if "mo_asha" in state:
            self.scheduler.load_state(state["mo_asha"])
