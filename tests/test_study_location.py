"""Where the Optuna study lives: beside local results, in a configured storage URL, or for results
on an object store (here a real pyarrow filesystem behind a file:// URI) in a private local SQLite
file copied to the results — never in a per-machine cache shared by sweep name. Real Optuna."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.driver import SweepError

from search.driver.run_record import open_study
from search.driver.study import (FAILED_ATTR, FINISHED_ATTR, ERROR_ATTR, StudyMirror, bound, finish_study, locate_study,
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


# ------------------------------------------------------------ a start that died before Tune's first state
# The searcher creates the study (and the runner marks it with the results it belongs to) before
# Tune writes tuner.pkl: a driver killed in between leaves a study but nothing to resume. Re-running
# the same sweep must start it afresh; a study with finished trials or of other results is refused.

def _dead_start(location, owner: str | None, running: int = 0, waiting: int = 0) -> None:
    """What the searcher of a start that died leaves behind: the study it created (as in
    search/driver/sweep.py: the real PruningAwareOptunaSearch, then the results attribute), and
    trials it asked (RUNNING) or enqueued (WAITING) but never finished."""
    from search.driver.searcher import PruningAwareOptunaSearch  # noqa: PLC0415 - imports Ray Tune (no cluster)

    PruningAwareOptunaSearch(space=lambda trial: {"x": trial.suggest_float("x", 0, 1)}, metric="m", mode="max",
                             storage=location.storage(), study_name=location.name, max_epochs=3)
    study = location.load()
    if owner is not None:
        study.set_user_attr("ser_search_results", owner)
    for _ in range(running):
        study.ask().suggest_float("x", 0, 1)
    for i in range(waiting):
        study.enqueue_trial({"x": 0.1 * (i + 1)})


@pytest.mark.parametrize("owned, running, waiting", [(True, 0, 0), (True, 2, 1), (False, 0, 0)],
                         ids=["empty", "running-and-waiting", "died-before-it-was-marked"])
def test_a_new_sweep_starts_afresh_over_the_study_of_its_own_dead_start(tmp_path, caplog, owned, running, waiting):
    sweep_dir = str(tmp_path / "results" / "s")
    _dead_start(locate_study(sweep_dir, "s"), sweep_dir if owned else None, running, waiting)
    with caplog.at_level("WARNING", logger="search.driver.study"):
        location = open_study(sweep_dir, "s", None, resume=False)
    said = [r.getMessage() for r in caplog.records if r.name == "search.driver.study"]
    assert len(said) == 1 and "deleted" in said[0] and str(location.local_file) in said[0], said
    assert f"{running} running" in said[0] and f"{waiting} waiting" in said[0]
    # the dead start's trials are gone: the new searcher creates the study again, empty
    assert location.load() is None
    _dead_start(location, sweep_dir)
    assert location.load().trials == [] and bound("s") is location


def test_a_new_sweep_refuses_a_study_of_its_results_that_holds_finished_trials(tmp_path):
    sweep_dir = str(tmp_path / "results" / "s")
    location = locate_study(sweep_dir, "s")
    _dead_start(location, sweep_dir, running=1)
    _add_trials(location, 1)  # one COMPLETE trial: Optuna's history of a sweep whose Tune state is gone
    with pytest.raises(SweepError, match="already holds an Optuna study") as e:
        open_study(sweep_dir, "s", None, resume=False)
    message = str(e.value)
    assert "1 finished trial" in message and "nothing was deleted" in message
    assert f"optuna delete-study --study-name s --storage sqlite:///{location.local_file}" in message
    assert len(location.load().trials) == 2  # refused, and lost nothing
    assert bound("s") is None


def test_a_new_sweep_refuses_an_unfinished_study_of_other_results_in_a_configured_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'studies.db'}"
    (tmp_path / "shared").mkdir()
    theirs, ours = f"file://{tmp_path}/bucket-a/results/s", f"file://{tmp_path}/bucket-b/results/s"
    _dead_start(locate_study(theirs, "s", url), theirs, running=1)
    with pytest.raises(SweepError, match="belongs to the sweep in") as e:
        open_study(ours, "s", url, resume=False)
    assert theirs in str(e.value) and f"--storage {url}" in str(e.value) and "[sweep] name" in str(e.value)
    # whose it is cannot be told without the mark: refused as well
    unmarked = f"sqlite:///{tmp_path / 'shared' / 'unmarked.db'}"
    _dead_start(locate_study(theirs, "s", unmarked), None)
    with pytest.raises(SweepError, match="does not say which results it belongs to"):
        open_study(ours, "s", unmarked, resume=False)
    assert locate_study(theirs, "s", url).load().trials[0].state == TrialState.RUNNING  # untouched
    assert locate_study(theirs, "s", unmarked).load() is not None


def test_a_new_sweep_on_an_object_store_starts_afresh_over_its_stored_dead_start(tmp_path, caplog):
    bucket = f"file://{tmp_path}/bucket/results/s"
    dead = locate_study(bucket, "s")
    _dead_start(dead, bucket, running=1)
    dead.push()  # the copy on the store is all that is left of that driver
    stored = tmp_path / "bucket" / "results" / "s" / "optuna.db"
    assert stored.exists()
    with caplog.at_level("WARNING", logger="search.driver.study"):
        location = open_study(bucket, "s", None, resume=False)
    assert [r for r in caplog.records if r.name == "search.driver.study" and "deleted" in r.getMessage()]
    assert not location.stored() and not stored.exists() and location.load() is None
