"""Where the Optuna study lives: beside local results, in a configured storage URL, or for results
on an object store (here a real pyarrow filesystem behind a file:// URI) in a private local SQLite
file copied to the results — never in a per-machine cache shared by sweep name. Real Optuna."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.runner import SweepError, open_study
from search.study import (FAILED_ATTR, FINISHED_ATTR, ERROR_ATTR, StudyMirror, bound, finish_study, locate_study,
                          unbind)


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """A home of its own: a study written to ~/.cache would show up here."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    yield home
    unbind("s")


def _add_trials(location, n: int) -> None:
    study = optuna.create_study(study_name=location.name, storage=location.storage(), load_if_exists=True)
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(i))


def test_local_results_keep_the_study_beside_them(tmp_path, private_home):
    sweep_dir = str(tmp_path / "results" / "s")
    location = open_study(sweep_dir, "s", None, resume=False)
    _add_trials(location, 1)
    assert location.local_file == Path(sweep_dir) / "optuna.db" and location.local_file.exists()
    assert location.mirror is None and bound("s") is location
    assert not (private_home / ".cache").exists()


def test_object_store_results_get_the_study_copied_to_them_and_back(tmp_path, private_home):
    bucket_a, bucket_b = f"file://{tmp_path}/bucket-a/results/s", f"file://{tmp_path}/bucket-b/results/s"
    a = open_study(bucket_a, "s", None, resume=False)
    b = locate_study(bucket_b, "s")
    # each driver has a private file: two buckets' sweeps of one name never share a study
    assert a.local_file != b.local_file and not str(a.local_file).startswith(str(private_home))
    _add_trials(a, 2)
    mirror = StudyMirror("s")
    mirror.get_state()  # Tune's snapshot time: the changed study goes to the store
    stored = tmp_path / "bucket-a" / "results" / "s" / "optuna.db"
    assert stored.exists() and not (tmp_path / "bucket-b" / "results" / "s" / "optuna.db").exists()
    copied = stored.stat().st_mtime_ns
    mirror.get_state()  # unchanged: not copied again
    assert stored.stat().st_mtime_ns == copied
    assert not (private_home / ".cache").exists()

    # the head node is gone: a new driver (new local file) resumes from the store's copy
    a.local_file.unlink()
    unbind("s")
    again = open_study(bucket_a, "s", None, resume=True)
    assert again.local_file != a.local_file
    assert [t.value for t in again.load().trials] == [0.0, 1.0]
    # a new sweep must not reuse a stored study of its name
    unbind("s")
    with pytest.raises(SweepError, match="already holds an Optuna study"):
        open_study(bucket_a, "s", None, resume=False)
    with pytest.raises(FileNotFoundError, match="not at"):
        open_study(bucket_b, "s", None, resume=True)


def test_a_study_kept_by_an_older_version_in_the_cache_is_taken_once(tmp_path, private_home):
    legacy = private_home / ".cache" / "ser-search" / "s" / "optuna.db"
    legacy.parent.mkdir(parents=True)
    _add_trials(locate_study(str(legacy.parent), "s", f"sqlite:///{legacy}"), 1)
    bucket = f"file://{tmp_path}/bucket/results/s"
    location = open_study(bucket, "s", None, resume=True)
    assert len(location.load().trials) == 1
    assert (tmp_path / "bucket" / "results" / "s" / "optuna.db").exists()  # stored with the results now


def test_configured_storage_holds_the_study_and_guards_its_owner(tmp_path, private_home):
    url = f"sqlite:///{tmp_path / 'shared' / 'studies.db'}"
    (tmp_path / "shared").mkdir()
    bucket = f"file://{tmp_path}/bucket/results/s"
    location = open_study(bucket, "s", url, resume=False)
    study = optuna.create_study(study_name="s", storage=location.storage())
    study.set_user_attr("ser_search_results", bucket)
    assert location.configured and location.mirror is None
    StudyMirror("s").get_state()
    assert not (tmp_path / "bucket" / "results" / "s" / "optuna.db").exists()  # the study stays in the URL
    unbind("s")
    assert open_study(bucket, "s", url, resume=True).load().study_name == "s"
    unbind("s")
    with pytest.raises(SweepError, match="belongs to the sweep in"):
        open_study(f"file://{tmp_path}/other-bucket/results/s", "s", url, resume=True)
    with pytest.raises(SweepError, match="already holds an Optuna study named 's'"):
        open_study(f"file://{tmp_path}/other-bucket/results/s", "s", url, resume=False)
    assert not (private_home / ".cache").exists()


def test_finish_study_fails_what_is_left_running_with_the_reason(tmp_path):
    location = locate_study(str(tmp_path / "s"), "s")
    study = optuna.create_study(study_name="s", storage=location.storage())
    errored, lost, done = study.ask(), study.ask(), study.ask()
    errored.set_user_attr(ERROR_ATTR, True)
    study.tell(done, 0.5)
    assert finish_study(location) == 2
    trials = {t.number: t for t in location.load().trials}
    assert trials[errored.number].state == TrialState.FAIL and "errored" in trials[errored.number].user_attrs[FAILED_ATTR]
    assert trials[lost.number].state == TrialState.FAIL and FAILED_ATTR in trials[lost.number].user_attrs
    assert trials[done.number].state == TrialState.COMPLETE
    assert location.load().user_attrs[FINISHED_ATTR] is True
