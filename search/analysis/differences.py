"""The settings that tell a leaderboard's configurations apart (issue 23).

A trials row records its whole TrainConfig as `config_json`, but only a few settings have
columns of their own (model, loss_family, frontend, the loss parameters, lr, batch_size, and
the corpora and test folds of the design). Two configurations that differ anywhere else
(normalization, optim.weight_decay, optim.label_smoothing, augment.mixup_alpha, model.d_model,
any [base] key a sweep's space varies) would print as two rows identical but for their
config_key. `with_differences` adds one column per setting whose value differs between the rows
a board lists, named by the setting's dotted path in the TrainConfig (`normalization`,
`optim.weight_decay`, `augment.freq_masks`), and `prepared_id` where the configurations ran on
different preparations of the corpora (search.results.config_key hashes it too).

What counts is what search.results.config_key hashes: a setting the key leaves out (the seed,
the test fold or held-out corpus a protocol repeats over, where and how a trial runs) never
makes a column, since two runs differing only there are one configuration. A setting already
shown by a column of its own is left out where that column separates the rows just as well
(`model.name` is the `model` column; `data.folds` is shown by `test_folds` unless it names
validation folds beside data.test_folds).

A row whose configuration is not recorded (no config_json, or rows written before a setting
existed) takes no part in that setting's comparison and shows it blank.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

# TrainConfig paths search.results.config_key leaves out of a configuration's identity.
IGNORED = frozenset({"seed", "device", "output", "fastpath", "feature_cache", "feature_cache_dir",
                     "data.prepared", "data.fold", "data.leave_out"})
# Recorded as missing by configurations older than the field, which config_key reads as None.
NONE_WHEN_MISSING = ("data.folds", "data.test_folds")
# Settings the leaderboard shows in a column of its own (search.results.config_columns); a loss
# parameter loss.<name> is the column <name> (center_lambda, gamma, ...).
SHOWN_AS: dict[str, str] = {
    "model.name": "model", "loss.family": "loss_family", "frontend.kind": "frontend",
    "optim.lr": "lr", "optim.batch_size": "batch_size",
    "data.train_corpora": "train_corpora", "data.eval_corpora": "eval_corpora",
    "data.folds": "test_folds", "data.test_folds": "test_folds",
}
PREPARED = "prepared_id"
KEYS = ("sweep", "config_key")
_MISSING = object()


def _flatten(node: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in node.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            _flatten(v, f"{path}.", out)
        else:
            out[path] = v


@lru_cache(maxsize=None)
def _axis_path(name: str) -> str | None:
    """The dotted TrainConfig path of a sweep axis name (lr -> optim.lr), None if none."""
    from search.definition.space import resolve_axis  # noqa: PLC0415 - imports torch; only for such rows

    try:
        return ".".join(resolve_axis(name).path)
    except ValueError:
        return None


def configuration_settings(config_json: Any) -> dict[str, Any] | None:
    """A recorded configuration (a trials row's config_json) as {dotted path: value}, without
    the paths config_key ignores; None when nothing readable is recorded. A trial whose params
    made no valid TrainConfig recorded the params themselves (search.recording): their axis
    names (lr, mixup_alpha, model.d_model) are read as the paths they set."""
    if not isinstance(config_json, str) or not config_json:
        return None
    try:
        raw = json.loads(config_json)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("config_json"), str):  # a confirmation's params carry the configuration
        return configuration_settings(raw["config_json"])
    flat: dict[str, Any] = {}
    _flatten(raw, "", flat)
    if not isinstance(raw.get("data"), dict):  # not a TrainConfig dump: params named by axis
        named: dict[str, Any] = {}
        for k, v in flat.items():
            path = k if "." in k else _axis_path(k)
            if path is not None:
                named[path] = v
        flat = named
    else:
        for path in NONE_WHEN_MISSING:
            flat.setdefault(path, None)
    return {k: v for k, v in flat.items() if k not in IGNORED}


def _canon(v: Any) -> Any:
    """A hashable value that compares as the setting does (0 == 0.0, True != 1)."""
    if isinstance(v, (bool, np.bool_)):
        return ("bool", bool(v))
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_canon(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _key(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(None if _canon(v) is None else v for v in values)


def settings_by_configuration(trials: pd.DataFrame) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Each configuration's settings ({path: value}, prepared_id first), by (sweep, config_key);
    `trials` must have both columns (search.analysis.leaderboard.with_config_keys)."""
    configs: dict[tuple[Any, ...], dict[str, Any]] = {}
    prepared: dict[tuple[Any, ...], str] = {}
    cols = [c for c in (*KEYS, PREPARED, "config_json") if c in trials.columns]
    for row in trials[cols].itertuples(index=False, name=None):
        r = dict(zip(cols, row))
        key = _key(r[k] for k in KEYS)
        if key not in configs:  # the first readable record of the configuration
            settings = configuration_settings(r.get("config_json"))
            if settings is not None:
                configs[key] = settings
        if key not in prepared and isinstance(r.get(PREPARED), str) and r[PREPARED]:
            prepared[key] = r[PREPARED]
    return {k: ({PREPARED: prepared[k]} if k in prepared else {}) | configs.get(k, {})
            for k in dict.fromkeys([*prepared, *configs])}


def differing_settings(settings: list[dict[str, Any] | None], shown: pd.DataFrame) -> dict[str, list[Any]]:
    """The settings whose recorded values differ between the rows of `shown` (settings[i] is
    row i's), as {path: value per row}; a setting shown by a column of `shown` that separates
    the rows as well is left out."""
    paths = list(dict.fromkeys(p for s in settings if s for p in s))
    out: dict[str, list[Any]] = {}
    for path in paths:
        values = [s.get(path, _MISSING) if s else _MISSING for s in settings]
        recorded = [(i, _canon(v)) for i, v in enumerate(values) if v is not _MISSING]
        if len({v for _, v in recorded}) < 2:
            continue
        column = SHOWN_AS.get(path) or (path.removeprefix("loss.") if path.startswith("loss.") else None)
        if column in shown.columns:
            by_shown: dict[Any, Any] = {}
            if all(by_shown.setdefault(_canon(shown[column].iloc[i]), v) == v for i, v in recorded):
                continue  # the column already tells these rows apart
        out[path] = [None if v is _MISSING else v for v in values]
    return out


def with_differences(board: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """`board` (one row per configuration: sweep, config_key) with a column per setting that
    differs between its rows, placed before `n` (after the parameter columns); setting columns
    it had already (a subset of another board's rows) are computed anew. `trials`: the rows
    the board was made from, with config keys (with_config_keys)."""
    by_config = settings_by_configuration(trials)
    stale = {p for s in by_config.values() if s for p in s}
    board = board.drop(columns=[c for c in board.columns if c in stale])
    if board.empty or not by_config or not all(k in board.columns for k in KEYS):
        return board
    settings = [by_config.get(_key(row)) for row in board[list(KEYS)].itertuples(index=False, name=None)]
    at = board.columns.get_loc("n") if "n" in board.columns else len(board.columns)
    for i, (path, values) in enumerate(differing_settings(settings, board).items()):
        board.insert(at + i, path, pd.Series(values, index=board.index, dtype=object).infer_objects())
    return board
