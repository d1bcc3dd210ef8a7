"""Ray's ASHA across `Tuner.restore`: the rungs of a single-objective sweep in Tune's snapshots.

Tune 2.60 pickles the scheduler into tuner.pkl once, when the sweep starts, and never saves it
again; `Tuner.restore` brings back the searcher's and the callbacks' states, not the scheduler's.
A resumed sweep's `ASHAScheduler` would start with empty rungs, so the first trial to reach a
rung after the resume always continues (nothing to compare it with) and a trial that the
uninterrupted sweep stops runs on. `AshaRungState` is the single-objective twin of
search/driver/mo_asha.py's `RungState`: a Tune callback holding the scheduler, whose state (every
bracket's rung records, which bracket each live trial is in, the stop count) goes into each
experiment snapshot with the callback states. Scheduler and callback come back from the same
tuner.pkl, so the restored callback holds the restored scheduler and gives it back its rungs as
of the last snapshot, before Tune re-adds the snapshot's trials.

The state is what `ray.tune.schedulers.async_hyperband` (Ray 2.60) keeps: `_brackets` (each
`_Bracket._rungs`, a list of (milestone, {trial_id: metric_op * metric}) with the highest
milestone first), `_trial_info` (trial_id -> its bracket), `_num_stopped` and `_counter`. The
metric, mode, time attribute and rung layout are the scheduler's own (from tuner.pkl and the
TuneConfig), not state: a state from other rungs is refused, not mixed.

One limit, not reached by this project's sweeps (one bracket): Tune re-adds every trial of the
snapshot through `on_trial_add`, which with several brackets draws a resumed trial's bracket
again; its rung records are kept either way.
"""
from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers.async_hyperband import AsyncHyperBandScheduler

STATE_KEY = "asha"
VERSION = 1


def _milestones(scheduler: AsyncHyperBandScheduler) -> list[list[float]]:
    return [[m for m, _ in b._rungs] for b in scheduler._brackets]


def asha_state(scheduler: AsyncHyperBandScheduler) -> dict[str, Any]:
    """The rung records and counters of `scheduler` (copies: plain, picklable data)."""
    brackets = scheduler._brackets
    index = {id(b): i for i, b in enumerate(brackets)}
    return {
        "version": VERSION,
        "rungs": [[(m, dict(r)) for m, r in b._rungs] for b in brackets],
        "trial_bracket": {tid: index[id(b)] for tid, b in scheduler._trial_info.items() if id(b) in index},
        "num_stopped": scheduler._num_stopped,
        "counter": scheduler._counter,
    }


def load_asha_state(scheduler: AsyncHyperBandScheduler, state: dict[str, Any]) -> None:
    """Put a state from `asha_state` back into `scheduler` (one with the same rungs)."""
    stored = [[m for m, _ in rungs] for rungs in state["rungs"]]
    if stored != _milestones(scheduler):
        raise ValueError(f"stored ASHA rungs {stored} are not this scheduler's {_milestones(scheduler)}")
    for bracket, rungs in zip(scheduler._brackets, state["rungs"]):
        bracket._rungs = [(m, dict(r)) for m, r in rungs]
    scheduler._trial_info = {tid: scheduler._brackets[i] for tid, i in state["trial_bracket"].items()}
    scheduler._num_stopped = int(state.get("num_stopped", 0))
    scheduler._counter = int(state.get("counter", 0))


class AshaRungState(tune.Callback):
    """Carries an ASHAScheduler's rungs in Tune's experiment snapshots (module docstring)."""

    def __init__(self, scheduler: AsyncHyperBandScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {STATE_KEY: asha_state(self.scheduler)}

    def set_state(self, state: dict[str, Any]) -> None:
        if STATE_KEY in state:
            load_asha_state(self.scheduler, state[STATE_KEY])
