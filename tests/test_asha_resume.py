"""ASHA's rungs across `Tuner.restore` (a single-objective `--resume`): Tune 2.60 pickles the
scheduler into tuner.pkl once, at the start, and a resumed sweep would judge with empty rungs;
search/driver/asha.py's AshaRungState carries them in Tune's experiment snapshots."""
from __future__ import annotations

import os
import signal

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from search.driver.asha import AshaRungState, asha_state, load_asha_state

pytestmark = pytest.mark.fault_tolerance  # kills and resumes: .ci/run's second tier (docs/testing.md)

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
RUNGS = {"time_attr": "epoch", "max_t": 4, "grace_period": 1, "reduction_factor": 2}  # rungs 1, 2, 4
# trial i reports SCORES[i] + 0.01 * epoch; run in this order, one at a time
SCORES = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.4, 4: 0.65}
INTERRUPT_AFTER = 2  # the driver is interrupted when trial 2 has ended


def _asha() -> ASHAScheduler:
    s = ASHAScheduler(**RUNGS)
    s.set_search_properties("score", "max")  # as TuneConfig(metric=..., mode=...) does
    return s


def _rungs(s: ASHAScheduler) -> list[dict[float, dict[str, float]]]:
    """Every bracket's rung records: {milestone: {trial_id: metric_op * metric}}."""
    return [{m: dict(r) for m, r in b._rungs} for b in s._brackets]


# ---------------------------------------------------------------------------------- no Ray


def _trial(name: str) -> Trial:
    return Trial("__fake", stub=True, trial_id=name)


def test_state_round_trip_gives_a_fresh_scheduler_the_same_rungs_and_decisions():
    import pickle

    s = _asha()
    t = {n: _trial(n) for n in "ABCD"}
    for trial in t.values():
        s.on_trial_add(None, trial)
    for n, v in zip("ABC", (0.5, 0.6, 0.7)):
        assert s.on_trial_result(None, t[n], {"epoch": 1, "score": v}) == CONTINUE
    s.on_trial_result(None, t["A"], {"epoch": 2, "score": 0.55})
    s.on_trial_complete(None, t["B"], {"epoch": 1, "score": 0.6})
    state = pickle.loads(pickle.dumps(asha_state(s)))

    fresh = _asha()  # as unpickled from tuner.pkl: the rungs of the sweep's start
    AshaRungState(fresh).set_state(pickle.loads(pickle.dumps(AshaRungState(s).get_state())))
    assert _rungs(fresh) == _rungs(s) and _rungs(fresh)[0][1] == {"A": 0.5, "B": 0.6, "C": 0.7}
    assert fresh._num_stopped == s._num_stopped
    assert set(fresh._trial_info) == set(s._trial_info) == {"A", "C", "D"}  # B completed
    assert all(b is fresh._brackets[0] for b in fresh._trial_info.values())  # its own brackets
    # D judged at rung 1 as the uninterrupted scheduler judges it; an empty one lets it through
    assert fresh.on_trial_result(None, t["D"], {"epoch": 1, "score": 0.4}) == STOP
    assert s.on_trial_result(None, t["D"], {"epoch": 1, "score": 0.4}) == STOP
    empty = _asha()
    empty.on_trial_add(None, t["D"])
    assert empty.on_trial_result(None, t["D"], {"epoch": 1, "score": 0.4}) == CONTINUE

    # the callback and the scheduler come back from one tuner.pkl as one object
    s2, cb = pickle.loads(pickle.dumps((s, AshaRungState(s))))
    assert cb.scheduler is s2

    other = ASHAScheduler(**{**RUNGS, "max_t": 8})  # other rungs: refused, not mixed
    with pytest.raises(ValueError, match="rungs"):
        load_asha_state(other, state)
    assert AshaRungState(fresh).set_state({"other": 1}) is None  # not its state: ignored


# ---------------------------------------------------------------------------------- real Ray


def _interrupt_after(i: int):
    from ray import tune

    class InterruptDriver(tune.Callback):
        """Ctrl+C for the driver when trial `i` has ended: Tune saves its state and stops, the
        trials not yet run stay unfinished (a stop_all would mark the searcher finished)."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            if trial.config["i"] == i:
                os.kill(os.getpid(), signal.SIGUSR1)  # tune.run's interrupt, as SIGINT

    return InterruptDriver()


def _probe(scheduler: ASHAScheduler):
    from ray import tune

    class Probe(tune.Callback):
        """The scheduler's rungs when the (restored) experiment takes its first step."""

        def __init__(self) -> None:
            self.scheduler, self.first = scheduler, None

        def on_step_begin(self, iteration, trials, **info):
            if self.first is None:
                self.first = _rungs(self.scheduler)

    return Probe()


def test_tuner_restore_resumes_with_the_rungs_of_the_interrupted_sweep(tmp_path):
    import ray
    from ray import tune

    from search.driver import connect

    scores, max_t = dict(SCORES), RUNGS["max_t"]

    def train(config):  # defined here: Ray's workers get it by value (they cannot import tests/)
        for epoch in range(1, max_t + 1):
            tune.report({"epoch": epoch, "score": scores[config["i"]] + 0.01 * epoch})

    scheduler = ASHAScheduler(**RUNGS)  # as search/driver/sweep.py builds it, with its callback
    tuner = tune.Tuner(train, param_space={"i": tune.grid_search(list(scores))},
                       tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler,
                                                   max_concurrent_trials=1, reuse_actors=True),
                       run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                                 callbacks=[AshaRungState(scheduler), _probe(scheduler),
                                                            _interrupt_after(INTERRUPT_AFTER)]))
    connect(None, num_cpus=2)
    try:
        grid = tuner.fit()
        ended = {r.config["i"]: r.metrics["epoch"] for r in grid if r.metrics}
        assert ended == {0: 4, 1: 4, 2: 4}, ended  # interrupted before trial 3 reported
        before = _rungs(scheduler)
        assert [len(before[0][m]) for m in (1, 2, 4)] == [3, 3, 3]

        restored = tune.Tuner.restore(str(tmp_path / "exp"), trainable=train, resume_unfinished=True)
        grid = restored.fit()
        again = restored._local_tuner._tune_config.scheduler
        probe = next(c for c in restored._local_tuner._run_config.callbacks if hasattr(c, "first"))
        assert again is not scheduler and probe.scheduler is again
        # the restored scheduler starts with the rungs the interrupted one had ...
        assert probe.first == before
        # ... and judges the rest as the uninterrupted sweep does: trial 3 (0.41 below the rung-1
        # median of 0.51, 0.61, 0.71) stops at its first rung, trial 4 (0.66) runs to max_t
        epochs = {r.config["i"]: r.metrics["epoch"] for r in grid}
        assert epochs == {0: 4, 1: 4, 2: 4, 3: 1, 4: 4}, epochs
        after = _rungs(again)[0]
        new = {r.metrics["trial_id"] for r in grid if r.config["i"] >= 3}
        assert {m: {t: v for t, v in r.items() if t not in new} for m, r in after.items()} == before[0]
        assert [len(after[m]) for m in (1, 2, 4)] == [5, 4, 4]
    finally:
        ray.shutdown()
