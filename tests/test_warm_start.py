"""Warm-started sweeps (`[sweep] warm_start`): an earlier sweep's COMPLETE and PRUNED trials join the
new Optuna study with their values and intermediate values, under the new distributions; an
earlier range that does not fit the new [space] is refused naming the parameter, before Ray
starts; a parameter new to the space is sampled fresh; Parquet holds only the new sweep's trials;
a resume adds nothing again. Real Optuna (pure studies for the conversion), and one real small
sweep pair under a local Ray."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from sweep_helpers import TINY_BASE, write_sweep

from search.definition import SweepConfigError, load_sweep, parse_sweep
from search.results import ResultsStore
from search.driver import SweepError, run_sweep
from search.driver.run_record import check_resume_unchanged, open_study, record_start
from search.driver.study import TUNE_ID_ATTR, WARM_ATTR, locate_study, unbind
from search.driver.warm_start import (
    WARM_NUMBER_ATTR,
    EarlierSweep,
    WarmStartError,
    add_warm_start,
    load_earlier,
    new_distributions,
    prepare_warm_start,
    warm_trials,
)
from ser_core.corpus import PreparedCorpus

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
dropout = 0.2
""", max_epochs=6), source="new.toml")  # lr not in the space any more; batch_size fixed
    warm = warm_trials(new, [earlier])
    assert len(warm.trials) == 6
    assert all(set(t.params) <= {"loss_family", "center_lambda"} for t in warm.trials)
    at_16 = sum(t.params["batch_size"] == 16 for t in earlier.trials)
    assert 0 < at_16 < 6
    assert f"batch_size ({at_16})" in warm.notes[0] and "up to 4 epochs, this one 6" in warm.notes[0]
    # the earlier sweep's constant dropout (0.2) left out: this sweep's trials run at the default
    # (0.1), another experiment, refused unless allowed (the experiment check below)
    text = _sweep("new", "lr = { low = 5e-4, high = 3e-3, log = true }\nseed = 0\n", warm=["/results/old"])
    with pytest.raises(WarmStartError, match=r"base.model.dropout: /results/old had 0.2 \(\[space\] dropout\), "
                                             r"this sweep has 0.1"):
        warm_trials(parse_sweep(text, source="new.toml"), [earlier])
    allowed = text.replace("warm_start = ", 'warm_start_allow = ["base.model.dropout"]\nwarm_start = ')
    warm = warm_trials(parse_sweep(allowed, source="new.toml"), [earlier])
    assert len(warm.trials) == 6 and "differs as warm_start_allow allows: base.model.dropout" in warm.notes[0]


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


# ----------------------------------------------------------------- the experiment, not only the space

RECORDED_ID = "9f1c0ffee123"  # the prepared_id an earlier sweep on another corpus recorded
SHARED_SPACE = """
lr = { low = 5e-4, high = 3e-3, log = true }
batch_size = { choices = [16, 32] }
seed = 0
"""
# RAVDESS (utterance folds: its own preparation, hence its own prepared_id), one test fold,
# CNN-BiRNN on the STFT
RAVDESS_DATA = 'fold = 1\ntrain_corpora = ["ravdess"]\neval_corpora = ["ravdess"]\n'
RAVDESS_BASE = """
[base]
device = "cpu"
model = { name = "cnn_birnn", channels = [8, 16, 16, 16], rnn_hidden = 32 }
frontend = { kind = "stft" }
"""
# EmoDB cross-validated over three test folds, CNN-Transformer on the mel spectrogram
EMODB_DATA = "folds = [0, 1, 2]\nmax_train_clips = 24\n"


def _experiment(name: str, prepared: Path | str, data: str, base: str, *, warm: list[str] | None = None,
                allow: list[str] | None = None, space: str = SHARED_SPACE) -> str:
    lines = [f"warm_start = {warm!r}".replace("'", '"') if warm else "",
             f"warm_start_allow = {allow!r}".replace("'", '"') if allow is not None else ""]
    return f"""
[sweep]
name = "{name}"
num_samples = 1
seed = 3
{chr(10).join(lines)}
[data]
prepared = "{prepared}"
{data}
[scheduler]
max_epochs = 1
[space]
{space}
{base}"""


def _earlier_results(results: Path, name: str, text: str, prepared_id: str | None, *, n: int = 4,
                     row_ids: bool = True) -> Path:
    """A finished sweep's results directory as the runner leaves it: sweep.toml and sweep.json
    (record_start, with the prepared corpus's id), optuna.db with its trials (each carrying its Tune
    trial id), and trials.parquet with one row per trial recording the prepared_id it ran on."""
    sweep = parse_sweep(text, source=f"{name}.toml")
    store = ResultsStore(str(results), name)
    record_start(store, sweep, prepared_id)
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=f"sqlite:///{results / name / 'optuna.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        trial = study.ask()
        sweep.define_by_run(trial)
        trial.set_user_attr(TUNE_ID_ATTR, f"{name}_{i}")
        trial.report(0.4 + 0.01 * i, 1)
        study.tell(trial, 0.4 + 0.01 * i)
        store.upsert_trial({"trial_id": f"{name}_{i}", "status": "completed", "stage": "search",
                            "val_ua": 0.4 + 0.01 * i, "prepared_id": prepared_id if row_ids else None})
    return results / name


def _refused_keys(message: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in message.splitlines()
                  if line.startswith("  ") and ": " in line)


def _constructed_case(tmp_path: Path, synthetic_prepared: Path, allow: list[str] | None = None) -> Path:
    """RAVDESS utterance-fold CNN-BiRNN/STFT trials named as the warm start of an EmoDB
    cross-validated CNN-Transformer/Mel sweep (the same [space])."""
    _earlier_results(tmp_path / "results", "ravdess",
                     _experiment("ravdess", tmp_path / "ravdess-utterance", RAVDESS_DATA, RAVDESS_BASE), RECORDED_ID)
    path = tmp_path / "emodb.toml"
    path.write_text(_experiment("emodb-cv", synthetic_prepared, EMODB_DATA, TINY_BASE, warm=["results/ravdess"],
                                allow=allow))
    return path


def test_another_corpus_model_frontend_and_fold_design_is_refused_with_exit_2(tmp_path, synthetic_prepared,
                                                                              capsys):
    from search.cli import main

    path = _constructed_case(tmp_path, synthetic_prepared)
    try:
        rc = main(["sweep", str(path), "--results", str(tmp_path / "results")])
    finally:
        ray.shutdown()  # (only started if the sweep was wrongly let through)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not (tmp_path / "results" / "emodb-cv").exists()  # refused before a study, a record or Ray
    new_id = PreparedCorpus.load(synthetic_prepared).prepared_id
    assert "ser-search sweep: error: [sweep] warm_start:" in err
    assert f"data.prepared: {tmp_path / 'results' / 'ravdess'} had prepared corpus {RECORDED_ID}" in err
    assert f"this sweep has prepared corpus {new_id}" in err
    assert "data.folds: " in err and "had none, this sweep has [0, 1, 2]" in err
    assert "data.fold: " in err and "had 1, this sweep has 0" in err
    assert "data.train_corpora: " in err and "had ['ravdess'], this sweep has none" in err
    assert "base.model.name: " in err and "had 'cnn_birnn', this sweep has 'cnn_transformer'" in err
    assert "base.frontend.kind: " in err and "had 'stft', this sweep has 'mel'" in err
    assert "warm_start_allow" in err


def test_every_differing_key_is_named_once_with_both_values(tmp_path, synthetic_prepared):
    path = _constructed_case(tmp_path, synthetic_prepared)
    with pytest.raises(WarmStartError) as e:
        prepare_warm_start(load_sweep(path), str(tmp_path / "results" / "emodb-cv"))
    keys = _refused_keys(str(e.value))
    assert keys == sorted({
        "data.prepared", "data.fold", "data.folds", "data.max_train_clips", "data.train_corpora",
        "data.eval_corpora",
        "base.model.name", "base.model.d_model", "base.model.n_heads", "base.model.n_layers", "base.model.ff_dim",
        "base.model.rnn_hidden", "base.frontend.kind", "base.frontend.n_mels"}), str(e.value)
    # where a trial runs is no difference of the experiment; nor is the searched [space] (its own rules)
    assert "device" not in str(e.value) and "base.optim.lr" not in str(e.value)


def test_warm_start_allow_accepts_the_named_differences(tmp_path, synthetic_prepared):
    allow = ["data.prepared", "data.fold", "data.folds", "data.max_train_clips", "data.train_corpora",
             "data.eval_corpora", "base.model", "base.frontend.kind", "base.frontend.n_mels"]
    path = _constructed_case(tmp_path, synthetic_prepared, allow=allow)
    sweep = load_sweep(path)
    assert sweep.sweep.warm_start_allow == allow
    warm = prepare_warm_start(sweep, str(tmp_path / "results" / "emodb-cv"))
    assert len(warm.trials) == 4
    note = warm.notes[0]
    assert "4 trials from" in note and "differs as warm_start_allow allows: data.prepared, data.fold" in note
    assert "base.model.name" in note
    # one key left out of the list: refused again, naming only that key
    path.write_text(path.read_text().replace(', "base.frontend.n_mels"', ""))
    with pytest.raises(WarmStartError) as e:
        prepare_warm_start(load_sweep(path), str(tmp_path / "results" / "emodb-cv"))
    assert _refused_keys(str(e.value)) == ["base.frontend.n_mels"]


def test_warm_start_allow_is_validated(tmp_path):
    def load(allow: list[str], warm: list[str] | None = ("a",)) -> None:
        (tmp_path / "a").mkdir(exist_ok=True)
        path = tmp_path / "s.toml"
        path.write_text(_experiment("s", "/nonexistent", "", TINY_BASE, warm=list(warm or []) or None, allow=allow))
        load_sweep(path)

    with pytest.raises(SweepConfigError, match=r"sweep.warm_start_allow: unknown key 'base.model.nme' "
                                               r"\(did you mean 'base.model.name'\?\)"):
        load(["base.model.nme"])
    with pytest.raises(SweepConfigError, match=r"unknown key 'data.corpus'"):
        load(["data.corpus", "base.frontend"])
    with pytest.raises(SweepConfigError, match=r"'base.device' is not compared: where a trial runs"):
        load(["base.device"])
    with pytest.raises(SweepConfigError, match="listed twice"):
        load(["data.folds", "data.folds"])
    with pytest.raises(SweepConfigError, match="warm_start_allow without warm_start"):
        load(["data.folds"], warm=None)
    load(["data", "base.optim", "base.loss.family", "data.prepared"])  # tables allow every key below them


def test_the_same_experiment_still_warm_starts(tmp_path, synthetic_prepared):
    """Same corpus (by identity: a copy at another path is the same preparation), same [data],
    [base] and objective; only the [space] and the TPE seed changed: accepted as before."""
    _earlier_results(tmp_path / "results", "old", _experiment("old", synthetic_prepared, EMODB_DATA, TINY_BASE),
                     PreparedCorpus.load(synthetic_prepared).prepared_id)
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_prepared, copy)
    path = tmp_path / "new.toml"
    path.write_text(_experiment("new", copy, EMODB_DATA, TINY_BASE, warm=["results/old"],
                                space=SHARED_SPACE.replace("[16, 32]", "[16, 32, 64]")
                                + "weight_decay = { low = 1e-6, high = 1e-3, log = true }\n")
                    .replace("seed = 3", "seed = 4"))
    warm = prepare_warm_start(load_sweep(path), str(tmp_path / "results" / "new"))
    assert len(warm.trials) == 4
    assert warm.notes == [f"warm start: 4 trials from {tmp_path / 'results' / 'old'} (4 completed, 0 pruned)"]


def test_an_unknown_earlier_corpus_is_compared_by_path_and_said_so(tmp_path, synthetic_prepared):
    """Rows and a record written before prepared_id existed (a trials.parquet without the column,
    a sweep.json without the key) do not crash the check: the corpus is unknown, so the recorded
    path is compared instead, and the note says so."""
    import pyarrow.parquet as pq

    from search.results import TRIALS_SCHEMA

    old = _earlier_results(tmp_path / "results", "old",
                           _experiment("old", synthetic_prepared, EMODB_DATA, TINY_BASE), None)
    table = pq.read_table(old / "trials.parquet")
    pq.write_table(table.drop_columns(["prepared_id"]).replace_schema_metadata(TRIALS_SCHEMA.metadata),
                   old / "trials.parquet")
    record = json.loads((old / "sweep.json").read_text())
    del record["prepared_id"]
    (old / "sweep.json").write_text(json.dumps(record))
    path = tmp_path / "new.toml"
    path.write_text(_experiment("new", synthetic_prepared, EMODB_DATA, TINY_BASE, warm=["results/old"]))
    warm = prepare_warm_start(load_sweep(path), str(tmp_path / "results" / "new"))
    assert len(warm.trials) == 4
    assert "prepared corpus unknown (no prepared_id recorded); compared by path" in warm.notes[0]

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_prepared, copy)
    path.write_text(_experiment("new", copy, EMODB_DATA, TINY_BASE, warm=["results/old"]))
    with pytest.raises(WarmStartError) as e:
        prepare_warm_start(load_sweep(path), str(tmp_path / "results" / "new"))
    assert _refused_keys(str(e.value)) == ["data.prepared"]
    assert f"had {synthetic_prepared} (prepared_id unknown), this sweep has {copy}" in str(e.value)


def test_a_value_fixed_in_space_counts_as_the_sweeps_value_and_the_objective_is_compared():
    """A [space] constant is the sweep's value of the key it sets: against the other sweep's [base]
    it is compared like [base] (fixed in both [space]s it stays a note, as before). An earlier
    multi-objective sweep is another objective, which no allowance admits."""
    earlier = _earlier(space=OLD_SPACE + 'frontend = "stft"\n')
    with pytest.raises(WarmStartError) as e:
        warm_trials(parse_sweep(_sweep("new", OLD_SPACE), source="new.toml"), [earlier])
    assert _refused_keys(str(e.value)) == ["base.frontend.kind"]
    assert "base.frontend.kind: /results/old had 'stft' ([space] frontend), this sweep has 'mel'" in str(e.value)
    both = warm_trials(parse_sweep(_sweep("new", OLD_SPACE + 'frontend = "mel"\n'), source="new.toml"), [earlier])
    assert len(both.trials) == 6 and "at another value of a parameter this sweep fixes: frontend (6)" in both.notes[0]

    multi = parse_sweep(_sweep("old", OLD_SPACE).replace("seed = 3", 'seed = 3\nobjectives = ["val_ua:max", '
                                                                     '"params:min"]'), source="old.toml")
    with pytest.raises(WarmStartError) as e:
        warm_trials(parse_sweep(_sweep("new", OLD_SPACE), source="new.toml"),
                    [EarlierSweep("/results/old", multi, earlier.trials, "old.db")])
    assert "sweep.objectives: /results/old had ['val_ua:max', 'params:min'], this sweep has val_ua:max" in str(e.value)
    assert "sweep.objectives cannot be allowed" in str(e.value)
