"""Which trial checkpoints may be deleted, and when.

A restored sweep resumes every unfinished trial from the checkpoint that Tune's experiment
snapshot names. Tune writes that snapshot on the driver and copies it to storage in the
background, but its own `CheckpointConfig(num_to_keep=N)` deletes a trial's older checkpoints
the moment a newer one is registered. A driver killed in between leaves a stored snapshot that
names a deleted checkpoint, and the trial fails on resume ("Could not recover from checkpoint
as it does not exist on storage anymore"). So Tune keeps every checkpoint (`num_to_keep=None`)
and `SnapshotSafePruning` deletes a trial's checkpoints only below the one that the snapshot on
storage names, the file a restore would read. Once `Tuner.fit` has returned,
`keep_latest_checkpoints` leaves each trial its newest checkpoint only. (Tune's
`best_checkpoints` lists still name the deleted directories; ser-search reads only the latest.)
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import pyarrow.fs
from ray import tune
from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")
# How often the stored snapshot is read back (at Tune's snapshot times): reading and decoding
# it costs the driver some milliseconds per trial, and checkpoints wait at most this long.
PRUNE_EVERY_S = 10.0


def checkpoint_config() -> tune.CheckpointConfig:
    """Tune keeps every checkpoint; the callback and the function below do the deleting."""
    return tune.CheckpointConfig(num_to_keep=None)


def _checkpoint_index(path: str) -> int | None:
    match = _CHECKPOINT_DIR.search(path.rstrip("/"))
    return int(match.group(1)) if match else None


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def _delete_older(fs: pyarrow.fs.FileSystem, trial_path: str, keep_from: int) -> None:
    """Delete the trial's checkpoint directories numbered below `keep_from`. A failure is
    logged, not raised: a checkpoint left behind costs disk, a raised error would end the sweep."""
    try:
        for info in fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True)):
            index = _checkpoint_index(info.path)
            if info.type == pyarrow.fs.FileType.Directory and index is not None and index < keep_from:
                fs.delete_dir(info.path)
    except (OSError, pyarrow.ArrowException) as e:
        logger.warning("could not delete old checkpoints in %s: %s", trial_path, e)


def stored_checkpoints(fs: pyarrow.fs.FileSystem, experiment_path: str) -> dict[str, int] | None:
    """Trial id -> number of the checkpoint that the newest experiment snapshot on storage names
    (what `Tuner.restore` would resume from); None when there is no snapshot or it cannot be
    read (e.g. mid-copy)."""
    try:
        path = _find_newest_experiment_checkpoint(experiment_path, fs=fs)
        if path is None:
            return None
        with fs.open_input_stream(path) as f:
            state = json.loads(f.readall())
        named = {}
        for trial_json, run_metadata_json in state["trial_data"]:
            trial = Trial.from_json_state(trial_json, stub=True)
            trial.restore_run_metadata(run_metadata_json)
            index = _checkpoint_index(trial.checkpoint.path) if trial.checkpoint is not None else None
            if index is not None:
                named[trial.trial_id] = index
        return named
    except Exception as e:  # noqa: BLE001 - unreadable now: delete nothing, try at a later snapshot
        logger.debug("experiment snapshot at %s unreadable (%s); not pruning now", experiment_path, e)
        return None


class SnapshotSafePruning(tune.Callback):
    """At Tune's snapshot times (every `PRUNE_EVERY_S` at most), reads the snapshot on storage
    back and deletes each trial's checkpoints older than the one it names. That file only moves
    forward (Tune starts a copy after the previous one ended), so whatever a restore reads next
    names one of the checkpoints kept."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[pyarrow.fs.FileSystem, str, int]] = {}
        self._pruned_below: dict[str, int] = {}
        self._last_prune = float("-inf")

    def __getstate__(self) -> dict[str, Any]:  # pickled with the run config at the start only
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: tune.Checkpoint,
                      **info: Any) -> None:
        index = _checkpoint_index(checkpoint.path)
        if index is None:
            return
        self._latest[trial.trial_id] = (checkpoint.filesystem, _parent(checkpoint.path), index)

    def get_state(self) -> None:
        # Called while Tune writes a snapshot: a periodic moment on the driver's own thread.
        now = time.monotonic()
        if self._latest and now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            self.prune()
        return None

    def prune(self) -> None:
        """Delete what the stored snapshot no longer names, for the trials this driver saw."""
        behind = {t for t, (_, _, index) in self._latest.items() if index > self._pruned_below.get(t, -1)}
        if not behind:
            return
        fs, trial_path, _ = next(iter(self._latest.values()))  # every trial dir is in the experiment dir
        named = stored_checkpoints(fs, _parent(trial_path))
        for trial_id in behind & set(named or ()):
            fs, trial_path, _ = self._latest[trial_id]
            if named[trial_id] > self._pruned_below.get(trial_id, -1):
                _delete_older(fs, trial_path, named[trial_id])
                self._pruned_below[trial_id] = named[trial_id]


def keep_latest_checkpoints(results: tune.ResultGrid) -> None:
    """After `Tuner.fit` returned, leave every trial its newest checkpoint only (the one a
    later resume or `ser-search predict` reads). Tune's final snapshot names those; should its
    copy to storage have failed, each trial keeps what the stored one names as well."""
    trials = [(r.metrics.get("trial_id"), r.checkpoint, _checkpoint_index(r.checkpoint.path))
              for r in results if r.checkpoint is not None]
    trials = [t for t in trials if t[2] is not None]
    if not trials:
        return
    first = trials[0][1]
    named = stored_checkpoints(first.filesystem, _parent(_parent(first.path)))
    if named is None:
        logger.warning("experiment snapshot unreadable after the sweep; old checkpoints kept")
        return
    for trial_id, checkpoint, index in trials:
        _delete_older(checkpoint.filesystem, _parent(checkpoint.path), min(index, named.get(trial_id, -1)))
