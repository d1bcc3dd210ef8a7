"""A Tune callback that turns trials into Parquet rows as they happen.

It runs on the driver, so results written here are complete and single-writer even when
trials run on other nodes. Every write is an upsert keyed by trial id, so a retried trial, a
restored sweep or a replayed result never produces a duplicate row. A trial recorded as
completed or pruned stays as recorded: a restored sweep may replay a trial that finished after
Tune's last experiment snapshot, and Optuna has already been told the first outcome.

Writes are buffered (search.results.parts): an epoch report costs O(1) whatever the sweep's
size. The buffer reaches disk every few seconds, at each trial's end (before Tune can snapshot
the trial as finished) and at each of Tune's experiment snapshots (`get_state`), so a killed
driver loses only reports made after the last snapshot, and a restored trial, resumed from
that snapshot's checkpoint, reports them again.

A restored sweep's recorder comes out of Tune's pickled state holding the results location of
the driver that saved it; search.results.location.bind_results tells it this driver's (a moved
or copied directory), and `moved_from` then names the old one. It never writes there.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Callable

import pandas as pd
from ray.tune import Callback

from ser_core.config import TrainConfig
from ser_core.cost import COST_METRICS
from ser_core.metrics import SAME_SCORE

from search.worker.trainable import BEST_FILE, FINAL_JSON, final_metrics
from search.results.location import bound_results
from search.results import FOLD_FIGURES, LOSS_PARAM_COLUMNS, ResultsStore, config_columns, confusion_rows

# Keys of the final report (the best epoch's evaluation: trainable.final_metrics) copied into the trial row.
_FINAL_KEYS = ("best_epoch", "val_ua", "val_wa", "val_f1_macro", "val_precision_macro",
               "val_recall_macro", "test_ua", "test_wa", "test_f1_macro", "test_precision_macro",
               "test_recall_macro", "compactness_val", "compactness_test", "train_seconds",
               "test_ua_ci95_low", "test_ua_ci95_high")  # the last two: cross-validated trials only


LOST_PREFIX = "lost with the driver: "  # how a lost trial's error begins (record_lost)


_MOVED: dict[str, str] = {}  # run name -> the location its restored recorder was pickled with


def moved_from(name: str) -> str | None:
    """The results location run `name` was first recorded in, when a restored recorder of it
    held another than search.results.location.bind_results gave (its directory was moved or
    copied)."""
    return _MOVED.get(name)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class ParquetRecorder(Callback):
    def __init__(self, name: str, to_config: Callable[[dict[str, Any]], TrainConfig], results: str,
                 gpu_fraction: float, stage: str = "search", echo: bool = True,
                 corpora: Sequence[str] | None = None, prepared_id: str | None = None,
                 source_sweep: str | None = None, n_folds: int | None = None) -> None:
        self.name = name
        self.n_folds = n_folds  # the prepared data's fold count: what names a row's validation folds
        self.corpora = tuple(corpora) if corpora else None  # in the prepared data: names implicit corpora
        self.prepared_id = prepared_id  # PreparedCorpus.prepared_id of the data the trials run on
        self.source_sweep = source_sweep  # the search sweep this one belongs to (itself, or the one confirmed)
        self.to_config = to_config
        self.results = results
        self.gpu_fraction = gpu_fraction
        self.stage = stage
        self.echo = echo
        self._started: dict[str, datetime] = {}
        self._store: ResultsStore | None = None
        self._finished: set[str] | None = None
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}  # unfinished trials' rows reported to this driver

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore(self.results, self.name, buffered=True)
        return self._store

    def __getstate__(self) -> dict[str, Any]:  # pickled into the experiment state for restore
        state = self.__dict__.copy()
        state["_store"] = None
        state["_finished"] = None
        state["_epochs"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_epochs", {})
        here = bound_results(self.name)
        if here is None:
            return
        _MOVED.pop(self.name, None)
        if here != self.results:
            _MOVED[self.name] = self.results
            self.results = here

    def finished(self, trial_id: str) -> bool:
        """Whether the trial already has a completed or pruned row (read once per driver)."""
        if getattr(self, "_finished", None) is None:
            trials = self.store.trials()
            done = trials[trials["status"].isin(["completed", "pruned"])] if len(trials) else trials
            self._finished = set(done["trial_id"]) if len(done) else set()
        return trial_id in self._finished

    # --- Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._started.setdefault(trial.trial_id, _now())

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "epoch" not in result or self.finished(trial.trial_id):
            return
        row = {
            "sweep": self.name, "trial_id": trial.trial_id, "epoch": int(result["epoch"]),
            "train_loss": result["train_loss"], "val_loss": result["val_loss"],
            "val_ua": result["val_ua"], "val_wa": result["val_wa"], "best_val_ua": result["best_val_ua"],
            "seconds": result["epoch_seconds"],
        }
        self.store.upsert_epochs([row])
        self._epochs.setdefault(trial.trial_id, {})[row["epoch"]] = row

    def get_state(self) -> None:
        """Tune is saving an experiment snapshot: every report it names reaches disk first."""
        if self._store is not None:
            self.store.flush()
        return None

    def on_experiment_end(self, trials, **info) -> None:
        self.close()

    def close(self) -> None:
        """Write what is buffered and stop the background writer."""
        if self._store is not None:
            self._store.close()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        finished = final_metrics(last) is not None
        self._write(trial, "completed" if finished else "pruned", None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._write(trial, "error", _error_text(trial))

    # --- rows -------------------------------------------------------------------------
    def _write(self, trial, status: str, error: str | None) -> None:
        if self.finished(trial.trial_id):
            if self.echo:
                print(f"  {trial.trial_id} ran again after a restore; its first outcome stays recorded", flush=True)
            return
        last = trial.last_result or {}
        row = self._row(trial.trial_id, dict(trial.config), status, error)
        row.update({"epochs_run": last.get("epoch"), "node": last.get("node"),
                    **{k: _finite_or_none(last.get(k)) for k in COST_METRICS}})  # every report carries them
        status = row["status"]  # an invalid configuration is an error whatever Tune said
        if status == "completed":
            best = final_metrics(last) or {}
            row.update({k: _finite_or_none(best.get(k)) for k in _FINAL_KEYS})
            if trial.checkpoint is not None:
                row["checkpoint"] = f"{trial.checkpoint.path}/{BEST_FILE}"
            final = json.loads(last[FINAL_JSON])
            row.update({k: final.get(k) for k in FOLD_FIGURES})  # data.folds trials
            row["classes"] = ",".join(final.get("classes") or final["labels"])
            dropped = final.get("classes_dropped") or {}
            row["classes_dropped"] = "; ".join(f"{k}: {v}" for k, v in dropped.items()) or None
            rows = [r | {"sweep": self.name, "trial_id": trial.trial_id}
                    for split in ("val", "test")
                    for r in confusion_rows(final[f"confusion_{split}"], final["labels"], split)]
            self.store.replace_confusion(trial.trial_id, rows)
        else:
            best = _best_of(self._epochs_of(trial.trial_id))
            row.update(best)
        self.store.upsert_trial(row)
        # on disk before Tune snapshots the trial as ended (a killed driver keeps its row), and in
        # trials.parquet itself while folding it stays cheap
        self.store.keep_current("trials")
        self._epochs.pop(trial.trial_id, None)
        if status in ("completed", "pruned"):
            self._finished.add(trial.trial_id)
        if self.echo:
            print(self._line(row), flush=True)

    def record_lost(self, trial_id: str, params: dict[str, Any], reason: str,
                    started_at: datetime | None, finished_at: datetime | None) -> None:
        """A row for a trial that Tune lost with a driver that died (it was asked after Tune's
        last experiment snapshot, so the resumed sweep cannot know it) and that Optuna was told
        FAIL: status error, the reason, and whatever epochs it had reported. Without it, those
        epochs would sit in epochs.parquet under a trial id no row names."""
        if self.finished(trial_id):
            return
        lost = f"{LOST_PREFIX}{reason}"
        row = self._row(trial_id, params, "error", lost)
        if row["error"] != lost:  # its configuration did not validate (or was not found): say both
            row["error"] = f"{lost} ({row['error']})"
        row.update({"started_at": started_at, "finished_at": finished_at or _now()})
        mine = self._epochs_of(trial_id)
        row.update(_best_of(mine))
        row["epochs_run"] = int(mine["epoch"].max()) if len(mine) else None
        self.store.upsert_trial(row)
        self.store.keep_current("trials")
        if self.echo:
            print(self._line(row), flush=True)

    def _row(self, trial_id: str, params: dict[str, Any], status: str, error: str | None) -> dict[str, Any]:
        """The columns every trial row has: its configuration, status and times."""
        try:
            # getattr: a recorder pickled by an older version (a restored sweep) has no corpora
            columns = config_columns(self.to_config(params), getattr(self, "corpora", None),
                                     getattr(self, "prepared_id", None), getattr(self, "n_folds", None),
                                     self._selected_by(params))
        except Exception as e:  # noqa: BLE001 - a bad axis combination must still leave a row
            columns = _invalid_config_columns(params) | {"prepared_id": getattr(self, "prepared_id", None)}
            # the validation message itself, not Ray's wrapping of the trial's identical failure
            error, status = f"invalid trial configuration: {_invalid_config_text(e)}", "error"
        return {
            "sweep": self.name, "trial_id": trial_id, "status": status,
            "stage": self.stage, "source_sweep": getattr(self, "source_sweep", None), **columns,
            "gpu_fraction": self.gpu_fraction, "error": error,
            "started_at": self._started.get(trial_id), "finished_at": _now(),
        }

    def _selected_by(self, params: dict[str, Any]) -> TrainConfig | None:
        """The searched configuration a confirmation run re-runs (its validation folds chose it);
        None for a search trial, whose own design is the selection."""
        if self.stage != "confirm" or not isinstance(params.get("config_json"), str):
            return None
        return TrainConfig.model_validate_json(params["config_json"])

    def _epochs_of(self, trial_id: str) -> Any:
        """The trial's epoch rows: from memory when this driver saw every one of them (it
        reported epoch 1 here), else from the results (a trial restored mid-way)."""
        mine = self._epochs.get(trial_id, {})
        if 1 in mine:
            return pd.DataFrame([mine[e] for e in sorted(mine)])
        epochs = self.store.epochs()
        return epochs[epochs["trial_id"] == trial_id] if len(epochs) else epochs

    @staticmethod
    def _line(row: dict[str, Any]) -> str:
        # .get throughout: an invalid configuration's row has only the columns its params name
        parts = [f"{row['status']:<9}", f"{row['trial_id']}", f"{row.get('loss_family')}/{row.get('frontend')}"]
        if row.get("center_lambda") is not None:
            parts.append(f"λ={row['center_lambda']:.3g}" + (f" α={row['center_lr']:.3g}"
                                                          if row.get("center_lr") is not None else ""))
        if row.get("lr") is not None:
            parts.append(f"lr={row['lr']:.2g}")
        if row.get("val_ua") is not None:
            parts.append(f"val_ua={row['val_ua']:.3f}")
        if row.get("test_ua") is not None:
            parts.append(f"test_ua={row['test_ua']:.3f}")
        parts.append(f"epochs={row.get('epochs_run')}")
        if row.get("error"):
            parts.append(f"error: {row['error'].splitlines()[0][:160]}")
        return "  " + "  ".join(parts)


def _best_of(mine: Any) -> dict[str, Any]:
    """Validation figures of a stopped or failed trial's best epoch (no test: it never got there),
    from its epoch rows."""
    if not len(mine):
        return {}
    mine = mine.sort_values("epoch")
    ua = mine["val_ua"]
    best = mine.loc[(ua >= ua.max() - SAME_SCORE).idxmax()]  # the first best epoch, as ser_core.metrics.improves
    return {"best_epoch": int(best["epoch"]), "val_ua": float(best["val_ua"]),
            "val_wa": float(best["val_wa"]), "train_seconds": float(mine["seconds"].sum())}


def _invalid_config_columns(params: dict[str, Any]) -> dict[str, Any]:
    """The columns a trial's params give directly (the short axes: loss_family, frontend, lr,
    ...) when they do not make a valid TrainConfig; the params themselves go to config_json."""
    direct = {"model", "loss_family", "frontend", "lr", "batch_size", "seed", *LOSS_PARAM_COLUMNS}
    columns = {k: v for k, v in params.items() if k in direct and v is not None}
    return columns | {"config_json": json.dumps(params, sort_keys=True, default=str)}


def _invalid_config_text(exc: Exception) -> str:
    """One line: what the validation found (a SweepConfigError lists it below a header line
    that repeats the params, which config_json already holds)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[1:]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _error_text(trial) -> str:
    """The innermost error message of a failed trial, without Ray's wrapping."""
    try:
        err = trial.get_error()
    except Exception:  # noqa: BLE001 - older/newer Ray: fall back to the error file
        err = None
    text = str(err) if err is not None else ""
    if not text and getattr(trial, "error_file", None):
        try:
            with open(trial.error_file) as fh:
                text = fh.read()
        except OSError:
            text = "trial failed (error file unreadable)"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln.strip()[:2000]
    return (lines[-1] if lines else "trial failed")[:2000]
