"""`ser-search sweep FILE --outer-fold F`: one outer fold of a nested cross-validation from an
untouched sweep file. Fold F is held out of the whole sweep, every other fold of the prepared data
is a selection fold, and the sweep is named <name>-fF, so a claims arm can name all the outer folds'
sweeps. Impossible designs are refused before Ray starts."""
from __future__ import annotations

import pandas as pd
import pytest

from search.cli import main
from search.definition import SweepConfigError, load_sweep

from sweep_helpers import write_sweep


def test_an_outer_fold_holds_its_fold_out_and_selects_on_every_other(tmp_path, small_prepared):
    sweep = load_sweep(write_sweep(tmp_path / "s.toml", small_prepared, name="quick"))
    outer = sweep.with_outer_fold(2, 5)
    assert outer.sweep.name == "quick-f2"
    assert outer.data.test_folds == [2] and outer.data.folds == [0, 1, 3, 4] and outer.data.fold == 0
    assert outer.data.max_train_clips == sweep.data.max_train_clips  # the rest of [data] is kept
    assert sweep.sweep.name == "quick" and sweep.data.test_folds is None  # the original is unchanged
    assert outer.settings() != sweep.with_outer_fold(3, 5).settings()  # a resume of another fold is refused


@pytest.mark.parametrize("fold, n_folds, message", [
    (5, 5, "the prepared data has folds 0..4"),
    (-1, 5, "the prepared data has folds 0..4"),
    (0, 2, "needs at least 3 folds"),
])
def test_an_impossible_outer_fold_is_refused(tmp_path, small_prepared, fold, n_folds, message):
    sweep = load_sweep(write_sweep(tmp_path / "s.toml", small_prepared))
    with pytest.raises(SweepConfigError, match=message):
        sweep.with_outer_fold(fold, n_folds)


def test_an_outer_fold_of_a_cross_corpus_sweep_is_refused_naming_the_key(tmp_path, small_prepared):
    path = write_sweep(tmp_path / "s.toml", small_prepared)
    path.write_text(path.read_text().replace("[data]\n", '[data]\ntrain_corpora = ["synthetic"]\n'))
    with pytest.raises(SweepConfigError, match="(?s)--outer-fold 0:.*data.folds needs the within-corpus protocol"):
        load_sweep(path).with_outer_fold(0, 3)


def test_the_cli_refuses_a_fold_the_prepared_data_lacks_before_ray_starts(tmp_path, small_prepared, capsys):
    import ray

    path = write_sweep(tmp_path / "s.toml", small_prepared)
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--outer-fold", "3"]) == 2
    assert "--outer-fold 3: the prepared data has folds 0..2" in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "r").exists()


def test_an_outer_fold_sweep_runs_nested_and_says_so_in_its_rows(tmp_path, small_prepared):
    path = write_sweep(tmp_path / "s.toml", small_prepared, name="quick", num_samples=2, max_epochs=2,
                       families=("cross_entropy",))
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--outer-fold", "1"]) == 0
    trials = pd.read_parquet(tmp_path / "r" / "quick-f1" / "trials.parquet")
    assert len(trials) == 2
    for _, row in trials.iterrows():
        assert list(row["test_folds"]) == [1] and list(row["val_folds"]) == [0, 2]
        assert not row["selection_exposed"]
