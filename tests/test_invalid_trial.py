"""A trial whose sampled configuration fails a cross-field check (two searched axes that are
each valid alone) becomes an `error` row and an Optuna FAIL; the sweep goes on with the others.

Real Ray, real Optuna, real Parquet: the sweep covers every combination of the two axes, one of
which is invalid (d_model 36 is not divisible by 8 heads)."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import ray

from search.definition import load_sweep
from search.driver import run_sweep


def _sweep_file(path, prepared):
    path.write_text(f"""
[sweep]
name = "heads"
num_samples = 4
max_concurrent_trials = 2
seed = 1
cover_choices = true

[data]
prepared = "{prepared}"
max_train_clips = 48

[scheduler]
max_epochs = 1
grace_period = 1
reduction_factor = 2

[resources]
cpus_per_trial = 1

[space]
loss_family = "cross_entropy"
frontend = "mel"
lr = 1e-3
batch_size = 32
seed = 0
"model.d_model" = {{ choices = [32, 36] }}
"model.n_heads" = {{ choices = [2, 8] }}

[base]
device = "cpu"
model = {{ name = "cnn_transformer", channels = [8, 16, 16, 16], n_layers = 1, ff_dim = 64 }}
frontend = {{ n_mels = 32 }}
""")
    return path


def test_invalid_combination_is_an_error_row_and_the_sweep_goes_on(synthetic_prepared, tmp_path, capsys):
    # Each value is valid on its own (the file loads); only 36 x 8 is not.
    sweep = load_sweep(_sweep_file(tmp_path / "heads.toml", synthetic_prepared))
    try:
        # echo on: the driver's one-line summary of an error row must not crash the sweep
        outcome = run_sweep(sweep, str(tmp_path / "results"), num_cpus=2, echo=True)
    finally:
        ray.shutdown()
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    assert len(trials) == 4 and outcome.num_trials == 4
    bad = trials[trials["status"] == "error"]
    assert len(bad) == 1, trials[["trial_id", "status", "error"]]
    row = bad.iloc[0]
    assert "model.d_model (36) must be divisible by model.n_heads (8)" in row["error"]
    # the row still says what was tried: the sweep's fixed axes and the sampled ones
    assert (row["loss_family"], row["frontend"], row["lr"]) == ("cross_entropy", "mel", pytest.approx(1e-3))
    assert json.loads(row["config_json"])["model.d_model"] == 36
    good = trials[trials["status"] != "error"]
    assert set(good["status"]) == {"completed"} and good["test_ua"].notna().all()
    assert sorted((json.loads(c)["model"]["d_model"], json.loads(c)["model"]["n_heads"])
                  for c in good["config_json"]) == [(32, 2), (32, 8), (36, 2)]

    study = optuna.load_study(study_name="heads", storage=f"sqlite:///{outcome.study_path}")
    states = {(t.params["model.d_model"], t.params["model.n_heads"]): t.state for t in study.trials}
    assert states == {(32, 2): optuna.trial.TrialState.COMPLETE, (32, 8): optuna.trial.TrialState.COMPLETE,
                      (36, 2): optuna.trial.TrialState.COMPLETE, (36, 8): optuna.trial.TrialState.FAIL}
    out = capsys.readouterr().out
    assert "error" in out and "must be divisible" in out


def test_a_searched_value_invalid_with_base_fails_when_the_file_loads(tmp_path):
    """The other shape of the same mistake, a fixed [base] value that a searched value cannot go
    with, needs no trial to find: the file is refused before Ray starts, naming the value."""
    from search.definition import SweepConfigError

    path = _sweep_file(tmp_path / "heads.toml", tmp_path)
    text = path.read_text().replace('"model.d_model" = { choices = [32, 36] }\n', "").replace(
        'n_layers = 1,', 'n_layers = 1, d_model = 36,')
    path.write_text(text)
    with pytest.raises(SweepConfigError, match=r"space\.model\.n_heads.*choice 8 gives an invalid trial: .*"
                                               r"model\.d_model \(36\) must be divisible by model\.n_heads \(8\)"):
        load_sweep(path)
    assert not ray.is_initialized()
