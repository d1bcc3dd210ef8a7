"""Where a sweep's Optuna study lives, and how it outlives the driver that writes it.

The study is the searcher's memory: every trial Optuna asked, its intermediate values and its
outcome. It must live with the results, never in one machine's cache, or it is lost with the
head node and two sweeps of one name in two buckets would share it. Three places:

- a configured Optuna storage URL (`[sweep] optuna_storage` or `--optuna-storage`: PostgreSQL,
  MySQL, or an SQLite file on a disk that outlives the head node): the study is there;
- local results: `<results>/<name>/optuna.db`, an SQLite file beside the Parquet files;
- results on an object store (`s3://...`, any pyarrow filesystem URI): SQLite cannot run on an
  object store, so the study is a fresh local SQLite file (a new temporary directory per driver,
  never shared) that `StudyMirror` copies to `<results>/<name>/optuna.db` on the store whenever
  it changed, at each of Tune's experiment snapshots, after each trial ends and at the end. The
  copy is taken right after Tune saved the searcher's state and before that snapshot is
  uploaded, so the stored study is never older than the stored snapshot: a resume (which first
  copies the study back) finds every Optuna trial the restored searcher knows.

Tune pickles the searcher and the callbacks with the storage of the driver that saved them; a
resumed driver `bind`s the study's location for this process, and the restored searcher and the
mirror look it up by study name (`bound`).
"""
from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.trial import TrialState
from ray import tune

from search.definition import hide_password
from search.results.location import is_uri
from search.results.study_record import (  # noqa: F401 - the driver's names for them
    ERROR_ATTR, FAILED_ATTR, FINISHED_ATTR, REQUEUED_ATTR, RESULTS_ATTR, STUDY_FILE, TUNE_ID_ATTR, WARM_ATTR)

logger = logging.getLogger(__name__)


@dataclass
class StudyLocation:
    """One sweep's study: what Optuna connects to and, for object-store results, the copy."""

    name: str
    url: str                      # what Optuna connects to (may hold a password: never print it)
    shown: str                    # for messages: the file, the URL without password, or the store copy
    local_file: Path | None       # the SQLite file, when the study is one on this machine
    mirror: str | None = None     # path of the copy on the results store (object-store results)
    configured: bool = False      # a storage URL the user gave
    _fs: Any = field(default=None, repr=False)
    _storage: Any = field(default=None, repr=False)

    def storage(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            if self.local_file is not None:
                self.local_file.parent.mkdir(parents=True, exist_ok=True)
            self._storage = optuna.storages.RDBStorage(self.url)
        return self._storage

    def load(self) -> optuna.Study | None:
        """The study if it exists in this location (None if not)."""
        if self.local_file is not None and not self.local_file.exists():
            return None
        try:
            return optuna.load_study(study_name=self.name, storage=self.storage())
        except KeyError:
            return None

    # ------------------------------------------------------------ the object-store copy
    def _store(self) -> tuple[Any, str]:
        if self._fs is None:
            self._fs, path = pafs.FileSystem.from_uri(self.mirror)
            self._mirror_path = path
        return self._fs, self._mirror_path

    def stored(self) -> bool:
        """Whether the results store already holds a copy of a study (object-store results)."""
        if self.mirror is None:
            return False
        fs, path = self._store()
        return fs.get_file_info(path).type == pafs.FileType.File

    def pull(self) -> bool:
        """Copy the study from the results store to the local file; False if the store has none."""
        if self.mirror is None or self.local_file is None:
            return False
        fs, path = self._store()
        if fs.get_file_info(path).type != pafs.FileType.File:
            return False
        with fs.open_input_stream(path) as src:
            data = src.read()
        self.local_file.parent.mkdir(parents=True, exist_ok=True)
        self.local_file.write_bytes(data)
        return True

    def push(self) -> None:
        """Copy the local study to the results store, atomically (a reader or a resume sees the
        old copy or the new one). SQLite's backup API takes a consistent copy of a live file."""
        if self.mirror is None or self.local_file is None or not self.local_file.exists():
            return
        snapshot = self.local_file.with_name(f"{STUDY_FILE}.copy-{uuid.uuid4().hex}")
        try:
            src, dst = sqlite3.connect(self.local_file), sqlite3.connect(snapshot)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            fs, path = self._store()
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with fs.open_output_stream(tmp) as out:
                out.write(snapshot.read_bytes())
            fs.move(tmp, path)
        finally:
            snapshot.unlink(missing_ok=True)

    def signature(self) -> tuple[int, int] | None:
        """Changes whenever SQLite commits to the local file (it writes the main file on commit)."""
        try:
            st = self.local_file.stat() if self.local_file is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)


def legacy_cache_file(name: str) -> Path:
    """Where ser-search before this version kept the study of object-store results."""
    return Path.home() / ".cache" / "ser-search" / name / STUDY_FILE


def locate_study(sweep_dir: str, name: str, configured: str | None = None) -> StudyLocation:
    """The study's location for a sweep whose results are in `sweep_dir` (see the module doc)."""
    if configured:
        local = None
        if configured.startswith("sqlite:///"):
            local = Path(configured.removeprefix("sqlite:///"))
        return StudyLocation(name, configured, hide_password(configured), local, configured=True)
    if not is_uri(sweep_dir):
        path = Path(sweep_dir) / STUDY_FILE
        return StudyLocation(name, f"sqlite:///{path}", str(path), path)
    # Object store: a private local file for this driver only; the study's home is the store.
    path = Path(tempfile.mkdtemp(prefix="ser-search-study-")) / STUDY_FILE
    mirror = f"{sweep_dir.rstrip('/')}/{STUDY_FILE}"
    return StudyLocation(name, f"sqlite:///{path}", mirror, path, mirror=mirror)


def existing_study(location: StudyLocation) -> optuna.Study | None:
    """The study of this name already in `location`, if any: for object-store results the
    store's copy, brought to this driver's private local file to be read."""
    if location.mirror is not None and not location.pull():
        return None
    return location.load()


def deletion_hint(location: StudyLocation) -> str:
    """How a user deletes the study by hand (never with a password in it)."""
    if location.mirror is not None:  # the stored copy is an SQLite file of this study alone
        return f"delete {location.mirror}"
    storage = location.shown if location.configured else location.url
    return f"optuna delete-study --study-name {location.name} --storage {storage}"


def discard_dead_start(location: StudyLocation, study: optuna.Study) -> None:
    """Delete the study a start of this same sweep left when its driver died after the searcher
    created it and before Ray Tune wrote its first state (tuner.pkl): there is nothing to resume,
    and its unfinished trials (RUNNING ones no Tune trial will ever finish, WAITING ones a new
    searcher enqueues again) would only confuse Optuna's history. The caller has checked that the
    study is this sweep's and holds no finished trial. The store's copy goes too."""
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    optuna.delete_study(study_name=location.name, storage=location.storage())
    if location.mirror is not None:
        fs, path = location._store()
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    logger.warning("deleted the Optuna study %r in %s, left by a start of this sweep that died before Ray Tune "
                   "saved its state (no finished trial; %d running and %d waiting trial(s) discarded); "
                   "starting the sweep afresh", location.name, location.shown, running, waiting)


def restore_study(location: StudyLocation) -> None:
    """Before a resume: bring an object-store study's copy to the local file. A sweep started
    by an older ser-search kept it in ~/.cache; that copy is taken once and stored from now on."""
    if location.mirror is None or location.pull():
        return
    legacy = legacy_cache_file(location.name)
    if legacy.exists() and location.local_file is not None:
        logger.warning("the Optuna study of %s was not at %s; taking %s (kept there by an older "
                       "ser-search) and storing it with the results from now on", location.name,
                       location.mirror, legacy)
        shutil.copyfile(legacy, location.local_file)
        location.push()
        return
    raise FileNotFoundError(f"the Optuna study of sweep {location.name!r} is not at {location.mirror}; "
                            "a resume needs it (was the sweep started with another --optuna-storage?)")


# ------------------------------------------------------------ this driver's binding
_BOUND: dict[str, StudyLocation] = {}


def bind(location: StudyLocation) -> None:
    """Make `location` the study of `location.name` for this process (the driver)."""
    _BOUND[location.name] = location


def bound(name: str) -> StudyLocation | None:
    return _BOUND.get(name)


def unbind(name: str) -> None:
    _BOUND.pop(name, None)


class StudyMirror(tune.Callback):
    """Copies an object-store sweep's study to the store when it changed: at Tune's snapshot
    times (`get_state` runs while Tune saves a snapshot, after the searcher's state and before
    the upload), when a trial starts or ends, and at the end. Pickled with the run config, it keeps
    only the study name; the location comes from `bound` in whichever driver runs it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pushed: tuple[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"])

    def sync(self, force: bool = False) -> None:
        location = bound(self.name)
        if location is None or location.mirror is None:
            return
        signature = location.signature()
        if force or signature != self._pushed:
            try:
                location.push()
                self._pushed = signature
            except (OSError, sqlite3.Error) as e:  # retried at the next snapshot; the sweep goes on
                logger.warning("could not copy the Optuna study to %s: %s", location.mirror, e)

    def get_state(self) -> None:
        self.sync()
        return None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sync()  # the trial Optuna just asked is in the stored copy before it trains

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sync()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.sync()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.sync(force=True)


def failed_tune_trials(location: StudyLocation) -> list[optuna.trial.FrozenTrial]:
    """The trials ser-search told FAIL that had a Ray Tune trial (its id in TUNE_ID_ATTR): an
    errored trial once the sweep ended, or one lost with a driver that died before Tune's
    experiment snapshot named it (search.driver.searcher). Warm-start trials are never FAIL."""
    study = location.load()
    if study is None:
        return []
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if FAILED_ATTR in t.user_attrs and t.user_attrs.get(TUNE_ID_ATTR)]


def finish_study(location: StudyLocation) -> int:
    """Once every trial of a sweep has ended: tell Optuna FAIL for each trial still RUNNING (an
    errored trial, kept RUNNING while a resume could still retry it, or one no driver can tell
    any more), with the reason in its user attributes, and mark the study finished. Returns how
    many trials were failed."""
    study = location.load()
    if study is None:
        return 0
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = ("the Tune trial errored (its error is in trials.parquet)" if t.user_attrs.get(ERROR_ATTR)
                  else "no Tune trial finished it")
        study._storage.set_trial_user_attr(t._trial_id, FAILED_ATTR, reason)
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        failed += 1
    study.set_user_attr(FINISHED_ATTR, True)
    if location.mirror is not None:
        location.push()
    return failed
