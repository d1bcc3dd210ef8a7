"""What the dashboard knows about a results directory, as plain tables and numbers.

Kept apart from the HTML and the plots so every figure on the page can be checked against a
number computed here (and against the leaderboard) without parsing a web page. Everything
tolerates partial results: a sweep still writing, a sweep without `sweep.toml` or `optuna.db`,
trials that exist only as epochs (running). Missing pieces come back as None or as an empty
table, never as an exception, because the page must always render.
"""
from __future__ import annotations

import json
import math
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.results import read_confusion, read_epochs, read_trials

# The confirmed groups and their intervals are intervals.py's; named here too, where they were first.
from .intervals import (  # noqa: F401
    CELL_KEYS,
    INTERVAL_COLUMNS,
    INTERVAL_METRICS,
    PAIRWISE_COLUMNS,
    ConfirmedGroup,
    cell_text,
    confirmed_groups,
    confirmed_intervals,
    group_label,
    pairwise_differences,
    per_fold_validation,
)

STUDY_FILE = "optuna.db"
SWEEP_FILE = "sweep.toml"
RECORD_FILE = "sweep.json"  # the sweep as it ran (search/driver/sweep.py record_start)
CONFIRM_STAGE = "confirm"
MIN_IMPORTANCE_TRIALS = 3  # fANOVA on fewer completed trials says nothing


@dataclass
class SweepInfo:
    """One sweep's side files: where they are and what its sweep file says about the budget."""

    name: str
    directory: Path | None  # None: results are remote or the directory is not known
    spec: dict[str, Any] = field(default_factory=dict)  # parsed sweep.toml ({} when absent)
    spec_error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)  # parsed sweep.json ({} when absent or unreadable)

    @property
    def study_path(self) -> Path | None:
        if self.directory is None:
            return None
        p = self.directory / STUDY_FILE
        return p if p.is_file() else None

    def scheduler(self, key: str) -> int | None:
        v = self.spec.get("scheduler", {}).get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    @property
    def num_samples(self) -> int | None:
        v = self.spec.get("sweep", {}).get("num_samples")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def description(self) -> str:
        v = self.spec.get("sweep", {}).get("description")
        return v if isinstance(v, str) else ""


@dataclass
class DashboardData:
    source: str
    trials: pd.DataFrame
    epochs: pd.DataFrame
    confusion: pd.DataFrame
    sweeps: dict[str, SweepInfo]

    @property
    def empty(self) -> bool:
        return self.trials.empty and self.epochs.empty


def _is_local(results: str) -> bool:
    return "://" not in results


def _read_spec(directory: Path) -> tuple[dict[str, Any], str | None]:
    path = directory / SWEEP_FILE
    if not path.is_file():
        return {}, None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return {}, f"{path}: unreadable sweep file ({e})"


def _read_record(directory: Path) -> dict[str, Any]:
    """sweep.json, or {} where there is none or it cannot be read: the views that use it fall
    back to sweep.toml, which says the same unless the command line overrode it."""
    try:
        record = json.loads((directory / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _sweep_directories(root: Path) -> dict[str, Path]:
    """Sweep name -> directory: the directory itself when it is one sweep, else its subfolders
    holding results (a sweep's directory is named after the sweep by ResultsStore)."""
    if (root / "trials.parquet").is_file() or (root / "epochs.parquet").is_file():
        return {root.name: root}
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir())
            if d.is_dir() and ((d / "trials.parquet").is_file() or (d / "epochs.parquet").is_file())}


def load_results(results: str | Path) -> DashboardData:
    """Read every table under `results`; ResultsError when the location does not exist or a
    file is unreadable (the caller shows the message), an empty frame when nothing ran yet."""
    source = str(results)
    trials, epochs, confusion = read_trials(source), read_epochs(source), read_confusion(source)
    dirs = _sweep_directories(Path(source).expanduser().resolve()) if _is_local(source) else {}
    names = list(dict.fromkeys([*trials["sweep"].dropna(), *epochs["sweep"].dropna()]))
    if dirs and len(dirs) == 1 and len(names) == 1:
        # a single sweep directory: its name is the sweep's, whatever the folder is called
        dirs = {names[0]: next(iter(dirs.values()))}
    sweeps = {}
    for name in names:
        d = dirs.get(name)
        spec, err = _read_spec(d) if d is not None else ({}, None)
        sweeps[name] = SweepInfo(name, d, spec, err, _read_record(d) if d is not None else {})
    return DashboardData(source, trials, epochs, confusion, sweeps)


# ---------------------------------------------------------------------------- trials


def trial_status(data: DashboardData) -> pd.DataFrame:
    """One row per trial with its status; trials that so far have only epochs are `running`."""
    cols = ["sweep", "trial_id", "stage", "status", "loss_family", "frontend", "epochs_run"]
    known = data.trials[cols].copy()
    seen = set(zip(known["sweep"], known["trial_id"]))
    running = (data.epochs.groupby(["sweep", "trial_id"], dropna=False)["epoch"].max().reset_index()
               if len(data.epochs) else pd.DataFrame(columns=["sweep", "trial_id", "epoch"]))
    # a boolean Series, not a list: an empty list would select no *columns* when no epochs exist
    running = running[pd.Series([(s, t) not in seen for s, t in zip(running["sweep"], running["trial_id"])],
                                index=running.index, dtype=bool)]
    extra = pd.DataFrame({"sweep": running["sweep"], "trial_id": running["trial_id"], "stage": None,
                          "status": "running", "loss_family": None, "frontend": None,
                          "epochs_run": running["epoch"]})
    frames = [f for f in (known, extra) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else known


def best_trial(trials: pd.DataFrame, family: str | None = None) -> pd.Series | None:
    """The completed trial with the highest validation UA (ties: validation WA, then id), the
    leaderboard's own rule; None when there is none."""
    done = trials[(trials["status"] == "completed") & trials["val_ua"].notna()]
    if family is not None:
        done = done[done["loss_family"] == family]
    if done.empty:
        return None
    ranked = done.sort_values(["val_ua", "val_wa", "trial_id"], ascending=[False, False, True],
                              na_position="last", kind="stable")
    return ranked.iloc[0]


def search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials of search stages: confirmation re-runs repeat configurations and would count twice."""
    return trials[trials["stage"].astype("object").ne(CONFIRM_STAGE) | trials["stage"].isna()]


# ---------------------------------------------------------------------------- sweep facts


def asha_rungs(info: SweepInfo) -> list[int]:
    """Epochs at which ASHA may stop a trial: grace_period x reduction_factor^k below max_epochs
    (Ray's ASHAScheduler with one bracket)."""
    g, rf, top = info.scheduler("grace_period"), info.scheduler("reduction_factor"), info.scheduler("max_epochs")
    if g is None or rf is None or top is None or rf < 2:
        return []
    rungs, r = [], g
    while r < top:
        rungs.append(r)
        r *= rf
    return rungs


def _configured_epochs(trials: pd.DataFrame) -> int | None:
    best = None
    for text in trials["config_json"].dropna():
        try:
            epochs = json.loads(text)["optim"]["epochs"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(epochs, int):
            best = epochs if best is None else max(best, epochs)
    return best


def _seconds(v: Any) -> float:
    return float(v.total_seconds()) if isinstance(v, pd.Timedelta) and not pd.isna(v) else math.nan


def sweep_facts(data: DashboardData) -> pd.DataFrame:
    """Per sweep: trials by status, epochs spent against the epochs a search without early
    stopping would have spent (trials x max_epochs), wall and compute time, nodes, GPU shares."""
    status = trial_status(data)
    rows = []
    for name, info in data.sweeps.items():
        mine = status[status["sweep"] == name]
        t = data.trials[data.trials["sweep"] == name]
        ep = data.epochs[data.epochs["sweep"] == name]
        per_trial = ep.groupby("trial_id")["epoch"].nunique() if len(ep) else pd.Series(dtype="int64")
        spent = 0
        for tid, run in zip(mine["trial_id"], mine["epochs_run"]):
            spent += max(int(per_trial.get(tid, 0)), 0 if pd.isna(run) else int(run))
        max_epochs = info.scheduler("max_epochs") or _configured_epochs(t)
        full = len(mine) * max_epochs if max_epochs else None
        started, finished = t["started_at"].dropna(), t["finished_at"].dropna()
        wall = _seconds(finished.max() - started.min()) if len(started) and len(finished) else math.nan
        counts = mine["status"].value_counts()
        nodes = t["node"].dropna().value_counts()
        gpus = sorted({float(g) for g in t["gpu_fraction"].dropna()})
        stages = sorted({str(s) for s in t["stage"].dropna()})
        rows.append({
            "sweep": name, "stage": ", ".join(stages), "description": info.description,
            "planned": info.num_samples, "trials": len(mine),
            **{s: int(counts.get(s, 0)) for s in ("completed", "pruned", "error", "running")},
            "max_epochs": max_epochs, "epochs_spent": spent, "epochs_full": full,
            "epochs_saved": (1 - spent / full) if full else math.nan,
            "wall_seconds": wall, "train_seconds": float(t["train_seconds"].sum(min_count=1)),
            "nodes": {str(k): int(v) for k, v in nodes.items()}, "gpu_fractions": gpus,
            "has_study": info.study_path is not None, "spec_error": info.spec_error,
        })
    return pd.DataFrame(rows)


def is_missing(v: Any) -> bool:
    """None, pandas' NA or a float NaN: a report cell with nothing in it (strings included)."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


# ---------------------------------------------------------------------------- importance


@dataclass
class Importance:
    scope: str  # which trials: "all loss families", "loss family center", ...
    n_trials: int
    values: dict[str, float]


def param_importances(study_path: Path, study_name: str) -> tuple[list[Importance], list[str]]:
    """Optuna's fANOVA importances on the sweep's study: once over the parameters every trial
    has, and once per loss family over that family's own (conditional) parameters, which the
    first pass cannot see. Returns the results and plain-language notes for what could not be
    computed (too few completed trials, no study), never raising for those."""
    import optuna  # noqa: PLC0415 - only this section needs it
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances  # noqa: PLC0415
    from optuna.trial import TrialState  # noqa: PLC0415

    notes: list[str] = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_path}", skip_table_creation=True)
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception as e:  # noqa: BLE001 - KeyError (no such study), SQLAlchemy, version errors
        return [], [f"the Optuna study {study_name!r} in {study_path} could not be opened: {e}"]
    from search.results.study_record import own_trials  # noqa: PLC0415

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    own = own_trials(complete)
    if len(own) < len(complete):
        # A warm start's trials came from earlier sweeps; the importances are this sweep's own.
        notes.append(f"{len(complete) - len(own)} completed trial(s) a warm start added from earlier sweeps "
                     f"are left out: the importances are over this sweep's own trials")
        study = optuna.create_study(directions=study.directions)  # in memory: the own trials only
        study.add_trials(own)
        complete = own
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return [], notes + [f"only {len(complete)} completed trial(s) in the Optuna study; parameter importance "
                            f"needs at least {MIN_IMPORTANCE_TRIALS} (pruned trials do not count)"]
    shared = set.intersection(*(set(t.params) for t in complete))
    scopes: list[tuple[str, list[str]]] = [("all loss families", sorted(shared))]
    by_family: dict[str, list[Any]] = {}
    for t in complete:
        by_family.setdefault(str(t.params.get("loss_family")), []).append(t)
    for family, ts in sorted(by_family.items()):
        own = sorted(set.intersection(*(set(t.params) for t in ts)) - shared)
        if own:
            scopes.append((f"loss family {family}", own + sorted(shared - {"loss_family"})))
    results = []
    for scope, params in scopes:
        n = sum(1 for t in complete if set(params) <= set(t.params))
        if not params:
            notes.append(f"{scope}: no parameter varies")
            continue
        if n < MIN_IMPORTANCE_TRIALS:
            notes.append(f"{scope}: only {n} completed trial(s) with {', '.join(params)}; "
                         f"importance needs at least {MIN_IMPORTANCE_TRIALS}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=params)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            notes.append(f"{scope}: Optuna could not evaluate importances ({e})")
            continue
        values = {k: float(v) for k, v in values.items()}
        if not all(np.isfinite(list(values.values()))):
            notes.append(f"{scope}: importances are undefined (the objective does not vary over {n} trials)")
            continue
        results.append(Importance(scope, n, values))
    return results, notes
