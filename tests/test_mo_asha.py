"""MO-ASHA (search/driver/mo_asha.py) on constructed rungs whose fronts are known, the objectives'
validation, the Pareto leaderboard, and one real multi-objective sweep."""
from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from search.definition import SweepConfigError, parse_objectives, parse_sweep
from search.analysis.leaderboard import LeaderboardError
from search.analysis.pareto import pareto_front, pareto_leaderboard
from search.driver.mo_asha import MultiObjectiveASHA, RungState
from search.definition.objectives import Objective

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
METRICS, MODES = ["best_val_ua", "params"], ["max", "min"]


def _scheduler(**kw) -> MultiObjectiveASHA:
    return MultiObjectiveASHA(METRICS, MODES, time_attr="epoch", **{"max_t": 4, "grace_period": 1,
                                                                     "reduction_factor": 2, **kw})


def _trials(*names: str) -> dict[str, Trial]:
    return {n: Trial("__fake", stub=True, trial_id=n) for n in names}


def _report(s: MultiObjectiveASHA, trial: Trial, epoch: int, val: float, params: float) -> str:
    return s.on_trial_result(None, trial, {"epoch": epoch, "best_val_ua": val, "params": params})


def test_exactly_the_non_dominated_trials_continue_at_each_rung():
    s = _scheduler()
    assert s.milestones == [1, 2, 4]
    t = _trials(*"ABCDE")
    for trial in t.values():
        s.on_trial_add(None, trial)
    # rung 1 (epoch 1), in arrival order; (val_ua, params)
    rung1 = {"A": (0.50, 100), "B": (0.40, 200),   # B: dominated by A
             "C": (0.60, 300), "D": (0.45, 50),    # C: most accurate, D: smallest; both trade off with A
             "E": (0.30, 400)}                     # E: dominated by every other trial
    decisions = {n: _report(s, t[n], 1, *v) for n, v in rung1.items()}
    assert {n for n, d in decisions.items() if d == CONTINUE} == {"A", "C", "D"}
    assert s.recorded(1) == {n: tuple(map(float, v)) for n, v in rung1.items()}
    # ... which is the front of everything recorded at rung 1
    from search.definition.objectives import pareto_mask
    front = pareto_mask(np.array(list(rung1.values()), dtype=float), MODES)
    assert {n for n, f in zip(rung1, front) if f} == {"A", "C", "D"}

    # rung 2: the survivors, with their epoch-2 validation UA (params does not change)
    rung2 = {"A": (0.70, 100), "C": (0.65, 300), "D": (0.60, 50)}  # C is now dominated by A
    decisions = {n: _report(s, t[n], 2, *v) for n, v in rung2.items()}
    assert decisions == {"A": CONTINUE, "C": STOP, "D": CONTINUE}
    # no rung at epoch 3; epoch 4 is max_t: the budget's end
    assert _report(s, t["A"], 3, 0.72, 100) == CONTINUE
    assert _report(s, t["D"], 3, 0.61, 50) == CONTINUE
    assert _report(s, t["A"], 4, 0.75, 100) == STOP and _report(s, t["D"], 4, 0.62, 50) == STOP
    assert s.recorded(4) == {}


def test_a_front_wider_than_the_top_fraction_keeps_its_ends_by_crowding_distance():
    s = _scheduler()
    t = _trials(*"ABCD")
    # all four are mutually non-dominated; D sits in the crowded middle of the trade-off
    assert _report(s, t["A"], 1, 0.50, 100) == CONTINUE
    assert _report(s, t["B"], 1, 0.60, 200) == CONTINUE   # n=2: tie (both ends) goes to the newcomer
    assert _report(s, t["C"], 1, 0.40, 50) == CONTINUE    # n=3: an end (inf crowding), 0 ahead < 1.5
    # n=4, top 2: ends B and C are inf, A's crowding 1.62 > D's 0.83 -> three ahead of D
    assert _report(s, t["D"], 1, 0.45, 70) == STOP


@pytest.mark.parametrize("rf", [2, 3, 4])
def test_single_objective_case_is_rank_based_halving(rf):
    """With the cost equal for every trial, dominance is the validation order, and a trial
    continues when it is in the top ceil(n / rf) of the n recorded at its rung (itself included):
    fewer than n / rf trials strictly ahead; a tie counts in its favour. This is the rank rule
    of ASHA's paper, not Ray's ASHAScheduler, which interpolates a percentile of the other
    trials' values (test_single_objective_case_differs_from_rays_percentile_cutoff)."""
    vals = [0.5, 0.4, 0.6, 0.45, 0.55, 0.6, 0.3, 0.52, 0.58]
    s = _scheduler(max_t=rf ** 2, reduction_factor=rf)
    t = _trials(*(f"t{i}" for i in range(len(vals))))
    got = [_report(s, t[f"t{i}"], 1, v, 10) for i, v in enumerate(vals)]
    want = [CONTINUE if sum(w > v for w in vals[:i + 1]) < (i + 1) / rf else STOP for i, v in enumerate(vals)]
    assert got == want
    # e.g. 0.52 (8th): 3 of 8 ahead, < 8/2 but not < 8/3; 0.55 (5th): 1 of 5 ahead, < 5/4
    assert got == {2: [CONTINUE, STOP, CONTINUE, STOP, CONTINUE, CONTINUE, STOP, CONTINUE, CONTINUE],
                   3: [CONTINUE, STOP, CONTINUE, STOP, CONTINUE, CONTINUE, STOP, STOP, CONTINUE],
                   4: [CONTINUE, STOP, CONTINUE, STOP, CONTINUE, CONTINUE, STOP, STOP, CONTINUE]}[rf]


@pytest.mark.parametrize("rf, vals, ours, rays", [
    # rf 3 (the sweep default): the third trial is second of three; the top ceil(3/3) = 1 goes on.
    # Ray's cutoff is the 66.7th percentile of the two others, 0.4 + (2/3)(0.5 - 0.4) = 0.467 <= 0.47.
    (3, [0.4, 0.5, 0.47], [CONTINUE, CONTINUE, STOP], [CONTINUE, CONTINUE, CONTINUE]),
    # rf 2, the other way: the fifth trial is third of five, in the top ceil(5/2) = 3; Ray's cutoff
    # is the median of the four others, (0.42 + 0.76) / 2 = 0.59 > 0.51.
    (2, [0.84, 0.76, 0.42, 0.26, 0.51], [CONTINUE, STOP, STOP, STOP, CONTINUE], [CONTINUE, STOP, STOP, STOP, STOP]),
])
def test_single_objective_case_differs_from_rays_percentile_cutoff(rf, vals, ours, rays):
    """By design (search/driver/mo_asha.py's docstring): MO-ASHA ranks, so its single-objective case is
    the rank rule above. Ray's ASHAScheduler stops a trial below np.nanpercentile of the OTHER
    trials' values at (1 - 1/rf) * 100, interpolated between them; that cutoff depends on the
    values, not only on their order, so no ranking can reproduce it (with one objective the two
    agree on most decisions, at every rf including 2, and differ either way)."""
    from ray.tune.schedulers import ASHAScheduler

    s = _scheduler(max_t=rf ** 2, reduction_factor=rf)
    ray_asha = ASHAScheduler(time_attr="epoch", metric="best_val_ua", mode="max", max_t=rf ** 2, grace_period=1,
                             reduction_factor=rf)
    t = _trials(*(f"t{i}" for i in range(len(vals))))
    assert [_report(s, t[f"t{i}"], 1, v, 10) for i, v in enumerate(vals)] == ours
    decisions = []
    for i, v in enumerate(vals):
        ray_asha.on_trial_add(None, t[f"t{i}"])
        decisions.append(ray_asha.on_trial_result(None, t[f"t{i}"], {"epoch": 1, "best_val_ua": v}))
    assert decisions == rays


def test_missing_or_nan_objective_ranks_behind_measured_trials():
    s = _scheduler()
    t = _trials("a", "d", "nan", "b", "c", "e")
    assert _report(s, t["a"], 1, 0.5, 100) == CONTINUE
    assert _report(s, t["d"], 1, 0.6, 200) == CONTINUE
    # behind both measured trials, though its params would put it on the front: n=3, 2 ahead
    assert s.on_trial_result(None, t["nan"], {"epoch": 1, "best_val_ua": math.nan, "params": 5}) == STOP
    # a result without `params` at all: n=4, still 2 ahead (unmeasured trials tie among themselves)
    assert s.on_trial_result(None, t["b"], {"epoch": 1, "best_val_ua": 0.9}) == STOP
    # None: n=5, the top ceil(5/2) = 3 has room beyond the two measured trials
    assert s.on_trial_result(None, t["c"], {"epoch": 1, "best_val_ua": 0.9, "params": None}) == CONTINUE
    assert s.recorded(1)["b"] == pytest.approx((0.9, math.nan), nan_ok=True)
    # the first trial at a rung always continues, even unmeasured
    assert s.on_trial_result(None, t["e"], {"epoch": 2, "best_val_ua": math.nan, "params": 1}) == CONTINUE
    # without the time attribute nothing is judged or recorded
    assert s.on_trial_result(None, t["a"], {"best_val_ua": 0.1, "params": 1}) == CONTINUE
    assert set(s.recorded(1)) == {"a", "d", "nan", "b", "c"} and set(s.recorded(2)) == {"e"}


def test_rungs_survive_pickling_and_the_snapshot_callback():
    s = _scheduler()
    t = _trials(*"ABC")
    _report(s, t["A"], 1, 0.5, 100)
    _report(s, t["B"], 1, 0.6, 300)
    # Tuner.restore unpickles the scheduler and the callbacks from one tuner.pkl: one object
    s2, cb = pickle.loads(pickle.dumps((s, RungState(s))))
    assert cb.scheduler is s2
    # a fresh (start-of-sweep) scheduler given the snapshot's callback state judges as before
    fresh = _scheduler()
    RungState(fresh).set_state(pickle.loads(pickle.dumps(RungState(s).get_state())))
    assert fresh.recorded(1) == s.recorded(1)
    assert _report(fresh, t["C"], 1, 0.4, 400) == STOP == _report(s2, t["C"], 1, 0.4, 400)
    # and an empty one would have let C through (the state matters)
    assert _report(_scheduler(), t["C"], 1, 0.4, 400) == CONTINUE
    with pytest.raises(ValueError):
        _scheduler(max_t=8).load_state(s.state())  # other rungs: refused, not mixed


def test_rungs_go_through_tunes_callback_snapshot(tmp_path):
    """Tune's own save / restore of callback states (what an experiment snapshot and a resume do)."""
    from ray.tune.callback import CallbackList

    from search.driver.study import StudyMirror

    s = _scheduler()
    t = _trials("A", "B")
    _report(s, t["A"], 1, 0.5, 100)
    CallbackList([StudyMirror("mo"), RungState(s)]).save_to_dir(str(tmp_path), session_str="x")
    resumed = _scheduler()  # as unpickled from tuner.pkl: the rungs of the sweep's start
    callbacks = CallbackList([StudyMirror("mo"), RungState(resumed)])
    assert callbacks.can_restore(str(tmp_path))
    callbacks.restore_from_dir(str(tmp_path))
    assert resumed.recorded(1) == {"A": (0.5, 100.0)}
    assert _report(resumed, t["B"], 1, 0.4, 200) == STOP


def test_scheduler_save_restore(tmp_path):
    s = _scheduler()
    t = _trials("A", "B")
    _report(s, t["A"], 1, 0.5, 100)
    s.save(str(tmp_path / "s.pkl"))
    other = _scheduler()
    other.restore(str(tmp_path / "s.pkl"))
    assert _report(other, t["B"], 1, 0.4, 200) == STOP


def test_scheduler_refuses_a_tune_config_metric():
    s = _scheduler()
    assert s.set_search_properties(None, None) is True
    assert s.set_search_properties("best_val_ua", "max") is False
    with pytest.raises(ValueError):
        MultiObjectiveASHA(["a"], ["max"])
    with pytest.raises(ValueError):
        MultiObjectiveASHA(["a", "a"], ["max", "min"])


# ---------------------------------------------------------------------------- config

SWEEP = """
[sweep]
name = "mo"
num_samples = 4
{extra}
[data]
prepared = "."
[scheduler]
max_epochs = 3
[space]
lr = {{ low = 1e-4, high = 1e-3, log = true }}
"""


def _sweep(extra: str):
    return parse_sweep(SWEEP.format(extra=extra))


def test_objectives_parse_and_are_recorded():
    cfg = _sweep('objectives = ["val_ua:max", " latency_ms : min", "params:min"]\nsampler = "nsga2"')
    assert cfg.sweep.objective_list() == [Objective("val_ua", "max"), Objective("latency_ms", "min"),
                                         Objective("params", "min")]
    raw = cfg.as_raw()  # what sweep.json holds, and what the dashboard reads the objectives from
    assert raw["sweep"]["objectives"] == ["val_ua:max", "latency_ms:min", "params:min"]
    assert raw["sweep"]["sampler"] == "nsga2"
    assert cfg.settings()["sweep.objectives"] == ["val_ua:max", "latency_ms:min", "params:min"]
    from search.definition.objectives import objectives_from_record
    assert objectives_from_record({"sweep": raw}) == cfg.sweep.objective_list()
    assert objectives_from_record({"sweep": _sweep("").as_raw()}) is None


def test_a_single_objective_sweep_records_what_it_did_before():
    raw = _sweep("").as_raw()["sweep"]
    assert "objectives" not in raw and "sampler" not in raw  # sweep.json unchanged
    assert _sweep("").sweep.objective_list() is None


@pytest.mark.parametrize("extra, needle", [
    ('objectives = ["val_ua:max"]', "at least two"),
    ('objectives = ["params:min", "val_ua:max"]', "first objective must be a validation metric"),
    ('objectives = ["val_ua:max", "flops:min"]', "'flops:min': later objectives are model costs"),
    ('objectives = ["val_ua:max", "val_wa:max"]', "val_wa can only come first"),
    ('objectives = ["val_ua:max", "params:min", "params:min"]', "params listed twice"),
    ('objectives = ["val_ua:min", "params:min"]', "write val_ua:max"),
    ('objectives = ["val_ua:max", "params"]', "'metric:max' or 'metric:min'"),
    ('sampler = "nsga2"', "several objectives"),
    ('objectives = ["val_ua:max", "params:min"]\nwarm_start = ["../earlier"]', "cannot be combined with objectives"),
    ('objectives = ["val_ua:max", "params:min"]\nsampler = "random"', "sampler"),
])
def test_bad_objectives_are_clear_errors(extra, needle):
    with pytest.raises(SweepConfigError) as e:
        _sweep(extra)
    assert needle in str(e.value)


def test_parse_objectives_lists_every_problem():
    with pytest.raises(ValueError) as e:
        parse_objectives(["params:min", "macs:max", "macs:min"])
    msg = str(e.value)
    assert "first objective" in msg and "write macs:min" in msg and "macs listed twice" in msg


# ---------------------------------------------------------------------------- leaderboard

def _rows(spec):
    cols = ["trial_id", "sweep", "config_key", "status", "val_ua", "params", "latency_ms"]
    df = pd.DataFrame(spec, columns=cols)
    for m in ("val_wa", "test_ua", "test_wa", "test_f1_macro"):
        df[m] = df["val_ua"]
    return df


def test_pareto_front_lists_exactly_the_non_dominated_configurations():
    trials = _rows([
        ("t1", "mo", "k1", "completed", 0.80, 9000, 3.0),
        ("t2", "mo", "k1", "completed", 0.70, 9000, 3.0),   # k1's mean val_ua 0.75
        ("t3", "mo", "k2", "completed", 0.60, 1000, 1.0),   # smallest: on the front
        ("t4", "mo", "k3", "completed", 0.55, 5000, 2.0),   # dominated by k2
        ("t5", "mo", "k4", "completed", 0.70, 4000, 2.0),   # trade-off: on the front
        ("t6", "mo", "k5", "pruned", 0.99, 10, 0.1),       # would dominate all, but was stopped
    ])
    objectives = [Objective("val_ua", "max"), Objective("params", "min")]
    front = pareto_front(trials, objectives)
    assert front["config_key"].tolist() == ["k1", "k4", "k2"]  # by val_ua, best first
    assert front["val_ua_mean"].tolist() == pytest.approx([0.75, 0.70, 0.60])
    assert front["params"].tolist() == [9000, 4000, 1000]
    assert "rank" not in front.columns
    # with latency as a third objective k3 is still dominated (by k4: better on all three)
    three = pareto_front(trials, objectives + [Objective("latency_ms", "min")])
    assert set(three["config_key"]) == {"k1", "k2", "k4"}
    with pytest.raises(LeaderboardError, match="macs"):
        pareto_front(trials, [Objective("val_ua", "max"), Objective("macs", "min")])


def test_pareto_leaderboard_needs_a_sweep_with_objectives():
    trials = _rows([("t1", "plain", "k1", "completed", 0.8, 10, 1.0)])
    with pytest.raises(LeaderboardError, match="needs a sweep with \\[sweep\\] objectives"):
        pareto_leaderboard(trials, {"plain": None})
    both = pd.concat([trials, _rows([("t2", "mo", "k9", "completed", 0.5, 5, 1.0)])])
    front, skipped = pareto_leaderboard(both, {"plain": None, "mo": [Objective("val_ua", "max"),
                                                                      Objective("params", "min")]})
    assert front["config_key"].tolist() == ["k9"] and skipped == ["plain"]


# ---------------------------------------------------------------------------- a real sweep

MO_SWEEP = """
[sweep]
name = "mo"
num_samples = 6
max_concurrent_trials = 2
seed = 3
objectives = ["val_ua:max", "params:min"]

[data]
prepared = "{prepared}"
max_train_clips = 64

[scheduler]
max_epochs = 3
grace_period = 1
reduction_factor = 2

[resources]
cpus_per_trial = 1

[space]
"model.d_model" = {{ choices = [8, 16, 32] }}
"model.ff_dim" = {{ choices = [16, 64] }}
lr = {{ low = 1e-3, high = 3e-3, log = true }}
batch_size = 32
seed = 0

[base]
device = "cpu"
model = {{ name = "cnn_transformer", channels = [4, 8, 8, 8], n_heads = 2, n_layers = 1 }}
frontend = {{ n_mels = 32 }}
"""


def test_a_real_multi_objective_sweep_has_a_front_and_prunes_in_optuna(synthetic_prepared, tmp_path):
    import ray

    from search.definition import load_sweep
    from search.driver import run_sweep

    path = tmp_path / "mo.toml"
    path.write_text(MO_SWEEP.format(prepared=synthetic_prepared))
    sweep = load_sweep(path)
    try:
        outcome = run_sweep(sweep, str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    assert len(trials) == 6 and set(trials["status"]) <= {"completed", "pruned"}
    assert trials["params"].notna().all()
    record = json.loads((tmp_path / "results" / "mo" / "sweep.json").read_text())
    assert record["sweep"]["sweep"]["objectives"] == ["val_ua:max", "params:min"]

    # the study is multi-objective; trials stopped early are PRUNED there as in Parquet
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{outcome.study_path}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for _, row in trials.iterrows():
        ot = by_tune[row["trial_id"]]
        if row["status"] == "pruned":
            assert ot.state == optuna.trial.TrialState.PRUNED and ot.values is None
            assert ot.user_attrs["ser_search_pruned_at_epoch"] == row["epochs_run"] < 3
            assert ot.user_attrs["ser_search_pruned_values"]["params"] == row["params"]
        else:
            assert ot.state == optuna.trial.TrialState.COMPLETE
            assert ot.values == pytest.approx([row["val_ua"], row["params"]])
    assert (trials["status"] == "pruned").any(), "MO-ASHA should stop some of 6 trials at rf 2"

    cli = subprocess.run([sys.executable, "-m", "search.cli", "leaderboard", str(tmp_path / "results"), "--pareto",
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    assert len(rows) >= 2, rows
    done = trials[trials["status"] == "completed"]
    for r in rows:  # every listed configuration is completed and dominated by no completed one
        assert not ((done["val_ua"] >= r["val_ua_mean"]) & (done["params"] <= r["params"])
                    & ((done["val_ua"] > r["val_ua_mean"]) | (done["params"] < r["params"]))).any()
    assert [r["val_ua_mean"] for r in rows] == sorted((r["val_ua_mean"] for r in rows), reverse=True)


def test_the_pareto_demo_sweep_loads_and_varies_model_size():
    from pathlib import Path

    from search.definition import load_sweep

    cfg = load_sweep(Path(__file__).resolve().parents[1] / "search" / "sweeps" / "pareto_demo.toml")
    assert [str(o) for o in cfg.sweep.objective_list()] == ["val_ua:max", "params:min"]
    assert {"model.d_model", "model.ff_dim", "model.n_layers"} <= set(cfg.searched_axes())
    small = cfg.trial_config({"model.d_model": 16, "model.ff_dim": 32, "model.n_layers": 1, "lr": 1e-3,
                              "loss_family": "cross_entropy", "frontend": "mel", "batch_size": 32, "seed": 0})
    large = cfg.trial_config({"model.d_model": 64, "model.ff_dim": 128, "model.n_layers": 2, "lr": 1e-3,
                              "loss_family": "cross_entropy", "frontend": "mel", "batch_size": 32, "seed": 0})
    assert (small.model.d_model, large.model.d_model) == (16, 64) and large.model.n_layers == 2


def test_tuner_restore_brings_the_rungs_back(tmp_path):
    """Through Ray Tune itself: a finished experiment restored with Tuner.restore finds its
    scheduler with the rung records of the last snapshot (tuner.pkl alone holds the empty
    start-of-sweep scheduler)."""
    import ray
    from ray import tune

    table = {0: (0.5, 100), 1: (0.4, 200), 2: (0.6, 300), 3: (0.3, 400)}

    def train(config):
        v, p = table[config["i"]]
        for epoch in range(1, 4):
            tune.report({"epoch": epoch, "best_val_ua": v + 0.01 * epoch, "params": p})

    def tuner_for(scheduler):
        return tune.Tuner(train, param_space={"i": tune.grid_search(list(table))},
                          tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                          run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                                    callbacks=[RungState(scheduler)]))

    from search.driver import connect

    connect(None, num_cpus=2)
    try:
        s = MultiObjectiveASHA(METRICS, MODES, time_attr="epoch", max_t=3, grace_period=1, reduction_factor=2)
        grid = tuner_for(s).fit()
        stopped = {r.metrics["epoch"] for r in grid}
        assert stopped == {1, 3}  # trials 1 and 3 are dominated at rung 1, 0 and 2 run to max_t
        before = s.recorded(1)
        assert len(before) == 4
        # what Tune itself kept of the scheduler: the start-of-sweep one, rungs empty
        import ray.cloudpickle as cloudpickle

        kept = cloudpickle.loads((tmp_path / "exp" / "tuner.pkl").read_bytes())["_tune_config"].scheduler
        assert kept.recorded(1) == {}
        restored = tune.Tuner.restore(str(tmp_path / "exp"), trainable=train)
        restored.fit()
        again = restored._local_tuner._tune_config.scheduler
        assert again is not s and again.recorded(1) == before and again.recorded(2) == s.recorded(2)
    finally:
        ray.shutdown()
