"""Warm-started sweeps (`[sweep] warm_start`): an earlier sweep's COMPLETE and PRUNED trials join the
new Optuna study with their values and intermediate values, under the new distributions; an
earlier range that does not fit the new [space] is refused naming the parameter, before Ray
starts; a parameter new to the space is sampled fresh; Parquet holds only the new sweep's trials;
a resume adds nothing again. Real Optuna (pure studies for the conversion), and one real small
sweep pair under a local Ray."""
from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from sweep_helpers import TINY_BASE, write_sweep

from search.config import SweepConfigError, load_sweep, parse_sweep
from search.results import ResultsStore
from search.runner import (
    SweepError,
    check_resume_unchanged,
    open_study,
    record_start,
    run_sweep,
)
from search.study import TUNE_ID_ATTR, WARM_ATTR, locate_study, unbind
from search.warm_start import (
    WARM_NUMBER_ATTR,
    EarlierSweep,
    WarmStartError,
    add_warm_start,
    load_earlier,
    new_distributions,
    warm_trials,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sweep(name: str, space: str, *, warm: list[str] | None = None, max_epochs: int = 4) -> str:
    warm_line = f"warm_start = {warm!r}".replace("'", '"') if warm else ""
    return f"""
[sweep]
name = "{name}"
num_samples = 8
seed = 3
{warm_line}
[data]
prepared = "/nonexistent"
[scheduler]
max_epochs = {max_epochs}
[space]
{space}
""" + TINY_BASE.replace(", ff_dim = 64", "")  # ff_dim is free to be searched


OLD_SPACE = """
loss_family = { choices = ["cross_entropy", "center"] }
center_lambda = { low = 1e-3, high = 0.3, log = true }
lr = { low = 5e-4, high = 3e-3, log = true }
batch_size = { choices = [16, 32] }
dropout = 0.2
seed = 0
"""


def _earlier(tmp_path: Path | None = None, space: str = OLD_SPACE, n: int = 9) -> EarlierSweep:
    """An earlier sweep's study as ser-search leaves it: define-by-run trials, each reporting one
    value per epoch; COMPLETE, PRUNED (after 2 epochs), FAIL and one left RUNNING."""
    old = parse_sweep(_sweep("old", space), source="old.toml")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}") if tmp_path else None
    study = optuna.create_study(study_name="old", direction="maximize", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        trial = study.ask()
        old.define_by_run(trial)
        trial.set_user_attr(TUNE_ID_ATTR, f"tune_{i}")
        epochs = 4 if i % 3 == 0 else 2
        for epoch in range(1, epochs + 1):
            trial.report(0.3 + 0.01 * i + 0.02 * epoch, epoch)
        if i % 3 == 0:
            study.tell(trial, 0.3 + 0.01 * i + 0.08)
        elif i % 3 == 1:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
    study.ask()  # RUNNING: never added
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    return EarlierSweep("/results/old", old, finished, "old.db")


def test_finished_trials_join_with_values_intermediates_and_the_new_distributions():
    earlier = _earlier()
    new = parse_sweep(_sweep("new", OLD_SPACE.replace("low = 5e-4", "low = 1e-4")  # a wider lr range
                             .replace("dropout = 0.2", "dropout = { low = 0.0, high = 0.5 }")
                             .replace('choices = [16, 32]', 'choices = [8, 16, 32]')
                             + "weight_decay = { low = 1e-6, high = 1e-3, log = true }\n"), source="new.toml")
    warm = warm_trials(new, [earlier])
    assert len(warm.trials) == len(earlier.trials) == 6  # 3 completed + 3 pruned; FAIL and RUNNING left out
    dists = new_distributions(new)
    for old, added in zip(earlier.trials, warm.trials):
        assert added.state == old.state and added.value == old.value
        assert added.intermediate_values == old.intermediate_values and added.intermediate_values
        assert added.user_attrs == {WARM_ATTR: "/results/old", WARM_NUMBER_ATTR: old.number}  # no tune_trial_id
        assert added.datetime_start == old.datetime_start
        # the earlier sweep's fixed dropout is searched now: it joins as a parameter with its value
        assert added.params == {**old.params, "dropout": 0.2}
        assert all(added.distributions[n] == dists[n] for n in added.params)
        assert "weight_decay" not in added.params  # new to the space: TPE samples it fresh
    assert added.distributions["lr"] == FloatDistribution(1e-4, 3e-3, log=True)
    assert added.distributions["batch_size"] == CategoricalDistribution([8, 16, 32])
    assert "6 trials from /results/old (3 completed, 3 pruned)" in warm.notes[0]


def test_parameters_the_new_sweep_fixes_or_lacks_are_dropped_and_counted():
    earlier = _earlier()
    new = parse_sweep(_sweep("new", """
loss_family = { choices = ["cross_entropy", "center"] }
center_lambda = { low = 1e-3, high = 0.3, log = true }
batch_size = 32
seed = 0
""", max_epochs=6), source="new.toml")  # lr not in the space any more; batch_size fixed
    warm = warm_trials(new, [earlier])
    assert len(warm.trials) == 6
    assert all(set(t.params) <= {"loss_family", "center_lambda"} for t in warm.trials)
    at_16 = sum(t.params["batch_size"] == 16 for t in earlier.trials)
    assert 0 < at_16 < 6
    assert f"batch_size ({at_16})" in warm.notes[0] and "up to 4 epochs, this one 6" in warm.notes[0]


def test_an_earlier_range_outside_the_new_one_is_refused_naming_each_parameter():
    earlier = _earlier()
    narrower = OLD_SPACE.replace("high = 3e-3", "high = 1e-3").replace('["cross_entropy", "center"]',
                                                                     '["cross_entropy", "center", "bce"]')
    narrower = narrower.replace("choices = [16, 32]", "choices = [32, 64]").replace("dropout = 0.2",
                                                                                 "dropout = { low = 0.3, high = 0.5 }")
    new = parse_sweep(_sweep("new", narrower), source="new.toml")
    with pytest.raises(WarmStartError) as e:
        warm_trials(new, [earlier])
    msg = str(e.value)
    assert "lr: /results/old had float range 0.0005..0.003, log, this sweep has float range 0.0005..0.001, log" in msg
    assert "batch_size: /results/old had choices [16, 32], this sweep has choices [32, 64] ([16] are not among" in msg
    assert "dropout: /results/old had fixed value 0.2" in msg
    assert "loss_family" not in msg  # more choices now: compatible
    assert "3 parameter range(s)" in msg


def test_int_grids_and_kinds_must_match():
    earlier = _earlier(space=OLD_SPACE + "model.ff_dim = { low = 16, high = 64, step = 16 }\n")
    ok = parse_sweep(_sweep("new", OLD_SPACE + "model.ff_dim = { low = 8, high = 128, step = 8 }\n"), source="n")
    assert len(warm_trials(ok, [earlier]).trials) == 6
    bad = parse_sweep(_sweep("new", OLD_SPACE + "model.ff_dim = { low = 16, high = 80, step = 32 }\n"), source="n")
    with pytest.raises(WarmStartError, match="model.ff_dim: .* not all on the new grid of step 32"):
        warm_trials(bad, [earlier])
    choices = parse_sweep(_sweep("new", OLD_SPACE + "model.ff_dim = { choices = [16, 32, 48, 64] }\n"), source="n")
    with pytest.raises(WarmStartError, match="model.ff_dim: .*a range then, choices now"):
        warm_trials(choices, [earlier])


def test_added_trials_feed_tpe_in_a_real_study_and_are_added_once(tmp_path):
    earlier = _earlier()
    new = parse_sweep(_sweep("new", OLD_SPACE + "weight_decay = { low = 1e-6, high = 1e-3, log = true }\n"),
                      source="new.toml")
    warm = warm_trials(new, [earlier])
    location = locate_study(str(tmp_path / "new"), "new")
    assert add_warm_start(location, warm) == 6
    assert add_warm_start(location, warm) == 0  # already there: not twice
    study = optuna.load_study(study_name="new", storage=location.storage(),
                              sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    for _ in range(3):  # TPE models from the added trials at once; the storage accepts every parameter
        trial = study.ask()
        params = new.define_by_run(trial)
        assert "lr" in trial.params and 1e-6 <= trial.params["weight_decay"] <= 1e-3, params
        study.tell(trial, 0.5)
    assert sum(WARM_ATTR in t.user_attrs for t in study.trials) == 6 and len(study.trials) == 9


def _results_dir(tmp_path: Path, earlier: EarlierSweep) -> Path:
    """A results directory as a finished sweep leaves it: sweep.json and optuna.db."""
    sweep_dir = tmp_path / "results" / "old"
    record_start(ResultsStore(str(tmp_path / "results"), "old"), earlier.sweep, "abc")
    study = optuna.create_study(study_name="old", direction="maximize",
                                storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    study.add_trials(earlier.trials)
    return sweep_dir


def test_the_earlier_study_is_read_beside_its_results_and_warm_start_is_relative_to_the_sweep_file(tmp_path):
    sweep_dir = _results_dir(tmp_path, _earlier())
    # a trial the earlier study itself got from a warm start is not carried on (list that sweep too)
    study = optuna.load_study(study_name="old", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={WARM_ATTR: "/elsewhere"}))
    loaded = load_earlier(str(sweep_dir))
    assert loaded.sweep.sweep.name == "old" and len(loaded.trials) == 6
    assert [t.value for t in loaded.trials] == [t.value for t in _earlier().trials]

    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    path = sweeps / "new.toml"
    path.write_text(_sweep("new", OLD_SPACE, warm=["../results/old"]))
    assert load_sweep(path).sweep.warm_start == [str(sweep_dir)]
    path.write_text(_sweep("new", OLD_SPACE, warm=["../results/old", "../results/old"]))
    with pytest.raises(SweepConfigError, match="listed twice"):
        load_sweep(path)

    with pytest.raises(WarmStartError, match="not a directory"):
        load_earlier(str(tmp_path / "results" / "missing"))
    (sweep_dir / "optuna.db").unlink()
    with pytest.raises(WarmStartError, match="the Optuna study 'old' of .* is not in"):
        load_earlier(str(sweep_dir))


def test_a_changed_warm_start_is_a_changed_sweep_on_resume(tmp_path):
    (tmp_path / "a").mkdir()
    path = tmp_path / "s.toml"
    path.write_text(_sweep("s", OLD_SPACE, warm=["a"]))
    store = ResultsStore(str(tmp_path / "results"), "s")
    record_start(store, load_sweep(path), "id")
    check_resume_unchanged(store, load_sweep(path), "id")
    path.write_text(_sweep("s", OLD_SPACE, warm=["a", "b"]))
    with pytest.raises(SweepError, match="sweep.warm_start"):
        check_resume_unchanged(store, load_sweep(path), "id")


def test_a_start_that_died_after_adding_warm_trials_starts_afresh(tmp_path):
    sweep_dir = str(tmp_path / "results" / "new")
    location = locate_study(sweep_dir, "new")
    new = parse_sweep(_sweep("new", OLD_SPACE), source="new.toml")
    add_warm_start(location, warm_trials(new, [_earlier()]))
    try:
        again = open_study(sweep_dir, "new", None, resume=False)  # not refused: no trial of its own finished
        assert again.load() is None
    finally:
        unbind("new")


# ----------------------------------------------------------------- a real sweep pair under local Ray

def test_warm_started_sweep_under_ray(synthetic_prepared, tmp_path):
    results = tmp_path / "results"
    old_file = write_sweep(tmp_path / "old.toml", synthetic_prepared, name="old", num_samples=4, max_epochs=2,
                           families=("cross_entropy", "center"), max_train_clips=48)
    text = write_sweep(tmp_path / "new.toml", synthetic_prepared, name="new", num_samples=3, max_epochs=2,
                       families=("cross_entropy", "center"), max_train_clips=48).read_text()
    text = text.replace("seed = 1", 'seed = 7\nwarm_start = ["results/old"]')
    text = text.replace("[space]\n", "[space]\nweight_decay = { low = 1e-6, high = 1e-3, log = true }\n")
    new_file = tmp_path / "new.toml"
    new_file.write_text(text)
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text(text.replace('name = "new"', 'name = "bad"').replace("low = 5e-4, high = 3e-3",
                                                                            "low = 1e-3, high = 3e-3"))
    try:
        run_sweep(load_sweep(old_file), str(results), num_cpus=2, echo=False)
        with pytest.raises(WarmStartError, match=r"lr: .*old had float range 0\.0005\.\.0\.003"):
            run_sweep(load_sweep(bad_file), str(results), num_cpus=2, echo=False)
        assert not (results / "bad").exists()  # refused before a study, a record or Ray's state was made
        outcome = run_sweep(load_sweep(new_file), str(results), num_cpus=2, echo=False)
        assert outcome.num_trials == 3
        # the sweep has ended; a resume finds nothing to run and adds nothing again
        run_sweep(load_sweep(new_file), str(results), resume=True, num_cpus=2, echo=False)
    finally:
        ray.shutdown()

    old_study = optuna.load_study(study_name="old", storage=f"sqlite:///{results / 'old' / 'optuna.db'}")
    new_study = optuna.load_study(study_name="new", storage=f"sqlite:///{results / 'new' / 'optuna.db'}")
    old_done = old_study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    added = [t for t in new_study.trials if WARM_ATTR in t.user_attrs]
    own = [t for t in new_study.trials if WARM_ATTR not in t.user_attrs]
    assert len(old_done) == 4 and len(added) == 4  # added once, the resume did not repeat them
    assert [t.number for t in added] == [0, 1, 2, 3]  # before the first trial the searcher asked
    for old, warm in zip(old_done, added):
        assert (warm.state, warm.value, warm.intermediate_values) == (old.state, old.value, old.intermediate_values)
        assert warm.params == old.params and warm.user_attrs[WARM_ATTR] == str(results / "old")
        assert TUNE_ID_ATTR not in warm.user_attrs
    # num_samples counted only the new trials; every one ran, with the new axis sampled
    assert len(own) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in own)
    assert all(1e-6 <= t.params["weight_decay"] <= 1e-3 for t in own)
    # cover_choices' points (Ray's points_to_evaluate, enqueued after the added trials) still ran first
    points = load_sweep(new_file).covering_points()
    assert points and [t.system_attrs.get("fixed_params") for t in own[:len(points)]] == points
    trials = pd.read_parquet(results / "new" / "trials.parquet")
    assert len(trials) == 3 and set(trials["trial_id"]) == {t.user_attrs[TUNE_ID_ATTR] for t in own}
    assert set(trials["sweep"]) == {"new"}
    old_ids = set(pd.read_parquet(results / "old" / "trials.parquet")["trial_id"])
    assert not old_ids & set(trials["trial_id"])
    epochs = pd.read_parquet(results / "new" / "epochs.parquet")
    assert set(epochs["trial_id"]) <= set(trials["trial_id"])
