"""An earlier sweep against this one, before any of its trials joins this sweep's study: its space
(does each earlier range fit the new axis?) and its experiment (does it measure the same thing?).

The space: a parameter searched in both sweeps joins under the *new* distribution, so the earlier
range must lie inside the new one — the earlier choices among the new choices, a float range within
the new bounds, an int range on the new grid, a value the earlier sweep fixed a valid value of the
new axis (incompatibility; range_problems lists every parameter that does not fit).

The experiment, not only the space: an earlier trial's value measures the experiment it ran in,
so before any trial is converted the earlier sweep is compared with the new one, key by key
(experiment_differences): the prepared corpus by identity (data.prepared), every other [data]
key (fold, folds, test_folds, corpora, leave_out, ...), every [base] key as the TrainConfig it
gives (model, frontend, loss, optimiser, recipe; not where a trial runs: config.NOT_COMPARED), and
the objective. A [space] value a sweep fixes counts as that sweep's value of the key it sets; a key
searched in either sweep, or fixed in both [space]s, is left to the space rules above. Each
difference refuses the warm start, in one message naming every key with both values (refusal),
unless the new sweep lists the key (or a table above it) in `[sweep] warm_start_allow`; an allowed
difference is noted.

search.driver.warm_start loads the earlier sweeps, converts their trials and adds them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

from ser_core.losses import loss_parameters

from search.definition import NOT_COMPARED, OBJECTIVES_KEY, SweepConfig
from search.definition.space import ChoiceAxis, FixedAxis, RangeAxis, resolve_axis

SINGLE_OBJECTIVE = "val_ua:max (best validation UA)"


@dataclass
class EarlierSweep:
    """One warm_start entry: the earlier sweep as it ran and its finished trials."""

    path: str
    sweep: SweepConfig
    trials: list[FrozenTrial]
    shown: str  # where its study was read
    # the prepared_id(s) its run recorded (sweep.json, trials.parquet); empty: unknown, recorded
    # before corpora had an identity (or a corpus not loaded from disk)
    prepared_ids: tuple[str, ...] = ()
    # False when only its sweep.toml is left: a relative data.prepared there names a directory
    # relative to a sweep file whose place was not recorded, and --prepared was not recorded
    prepared_path_known: bool = True


def new_distributions(sweep: SweepConfig) -> dict[str, BaseDistribution]:
    """The Optuna distribution each searched axis is asked with (as space.suggest asks it)."""
    out: dict[str, BaseDistribution] = {}
    for name, axis in sweep.space.items():
        if isinstance(axis, ChoiceAxis):
            out[name] = CategoricalDistribution(axis.choices)
        elif isinstance(axis, RangeAxis):
            if resolve_axis(name).numeric == "int":
                out[name] = IntDistribution(int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
            else:
                out[name] = FloatDistribution(float(axis.low), float(axis.high), step=axis.step, log=axis.log)
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal as axis values: 32 and 32.0 are, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return type(a) is type(b) and a == b
    return a == b


def _close_to(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _on_grid(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return _close_to(k, round(k))


def _show(d: BaseDistribution | Any) -> str:
    if isinstance(d, CategoricalDistribution):
        return f"choices {list(d.choices)}"
    if isinstance(d, (FloatDistribution, IntDistribution)):
        extra = (", log" if d.log else "") + (f", step {d.step}" if d.step not in (None, 1) else "")
        kind = "int" if isinstance(d, IntDistribution) else "float"
        return f"{kind} range {d.low}..{d.high}{extra}"
    return f"fixed value {d!r}"


def incompatibility(old: BaseDistribution | Any, new: BaseDistribution) -> str | None:
    """Why the earlier sweep's range (a distribution, or the value it fixed) does not fit inside the
    new one, or None when every value it could have taken is a value of the new axis."""
    if not isinstance(old, BaseDistribution):  # a value the earlier sweep fixed
        try:
            fits = new._contains(new.to_internal_repr(old))
        except (ValueError, TypeError):
            fits = False
        if isinstance(new, CategoricalDistribution):
            fits = any(same_value(old, c) for c in new.choices)
        return None if fits else "its value is not a value of the new axis"
    if isinstance(new, CategoricalDistribution):
        if not isinstance(old, CategoricalDistribution):
            return "a range then, choices now"
        missing = [c for c in old.choices if not any(same_value(c, n) for n in new.choices)]
        return f"{missing} are not among the new choices" if missing else None
    if isinstance(old, CategoricalDistribution):
        return "choices then, a range now"
    if type(old) is not type(new):
        return "an int range then, a float range now" if isinstance(old, IntDistribution) else \
            "a float range then, an int range now"
    if old.low < new.low and not _close_to(old.low, new.low) or old.high > new.high and not _close_to(old.high, new.high):
        return "the earlier range reaches outside the new one"
    grid = None if isinstance(new, IntDistribution) and new.step == 1 else new.step
    if grid is not None:
        step = old.step if old.step is not None else (1 if isinstance(old, IntDistribution) else None)
        if step is None or not _on_grid(step, 0.0, grid) or not _on_grid(old.low, new.low, grid):
            return f"the earlier values are not all on the new grid of step {new.step}"
    return None


def range_problems(e: EarlierSweep, dists: dict[str, BaseDistribution]) -> list[str]:
    """Every parameter whose earlier range (a distribution its trials were asked with, or the value
    its [space] fixed) does not fit the new distribution in `dists` (new_distributions), in words."""
    problems: list[str] = []
    ranges: dict[str, set[Any]] = {}
    for t in e.trials:
        for name, d in t.distributions.items():
            ranges.setdefault(name, set()).add(d)
    for name, axis in e.sweep.space.items():
        if isinstance(axis, FixedAxis):
            ranges.setdefault(name, set()).add(axis.value)
    for name, new in dists.items():
        for old in sorted(ranges.get(name, ()), key=repr):
            why = incompatibility(old, new)
            if why:
                problems.append(f"{name}: {e.path} had {_show(old)}, this sweep has {_show(new)} ({why})")
    return problems


def range_refusal(problems: list[str]) -> str:
    """The message refusing a warm start for the parameters of range_problems."""
    return (f"[sweep] warm_start: {len(problems)} parameter range(s) of an earlier sweep do not fit this sweep's "
            "[space] (its trials' values must be values of the new axes):\n  " + "\n  ".join(problems) +
            "\nWiden those axes to contain the earlier ranges, or leave that sweep out of warm_start.")


@dataclass(frozen=True)
class Difference:
    """One key in which an earlier sweep's experiment differs from the new sweep's."""

    key: str  # as warm_start_allow names it: data.folds, base.model.name, sweep.objectives
    old: str
    new: str

    def allowed_by(self, allow: Iterable[str]) -> bool:
        return any(self.key == a or self.key.startswith(a + ".") for a in allow)


_MISSING = object()  # a key one sweep's models do not have (written by another ser-search version)


def _show_value(v: Any) -> str:
    return "unknown (no such key)" if v is _MISSING else "none" if v is None else repr(v)


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _constants(sweep: SweepConfig) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    """A sweep's [base] keys as the TrainConfig it gives (defaults written out, a loss family's
    unset parameters at their registry defaults, as trial_config runs them), with the values its
    [space] fixes written over them; the keys fixed in [space] (-> axis name); the keys it searches
    (every loss key when the loss family is searched: each parameter's value depends on the draw)."""
    values = {k: v for k, v in sweep.settings().items() if k.startswith("base.") and k not in NOT_COMPARED}
    fixed: dict[str, str] = {}
    searched: set[str] = set()
    loss_params: dict[str, tuple[str, Any]] = {}
    for name, axis in sweep.space.items():
        target = resolve_axis(name)
        key = "base." + ".".join(target.path)
        if not isinstance(axis, FixedAxis):
            searched.add(key)
        elif target.loss_param:
            loss_params[key] = (name, axis.value)
        else:
            values[key], fixed[key] = axis.value, name
    if "base.loss.family" in searched:
        searched |= {k for k in values if k.startswith("base.loss.")}
        return values, fixed, searched
    family = str(values.get("base.loss.family"))
    params = loss_parameters(family)
    for key, (name, value) in loss_params.items():
        if name in params:  # a fixed parameter of a family this sweep does not draw sets nothing
            values[key], fixed[key] = value, name
    for name, (default, _, _) in params.items():
        if values.get(f"base.loss.{name}") is None:
            values[f"base.loss.{name}"] = default
    return values, fixed, searched


def _prepared_difference(e: EarlierSweep, sweep: SweepConfig, new_id: str | None) -> tuple[Difference | None, str]:
    """The prepared corpus: by identity where both sweeps' ids are known (a copy of a corpus at
    another path is the same preparation; the same path prepared again is not); else by path, as
    a resume compares it, and the note says the earlier corpus is unknown."""
    old_ids = set(e.prepared_ids)
    old_path, new_path = e.sweep.data.prepared, sweep.data.prepared
    if old_ids and new_id:
        if old_ids == {new_id}:
            return None, ""
        which = "corpora" if len(old_ids) > 1 else "corpus"
        return Difference("data.prepared", f"prepared {which} {', '.join(sorted(old_ids))} ({old_path})",
                          f"prepared corpus {new_id} ({new_path})"), ""
    if not e.prepared_path_known:
        why = ("this sweep's corpus has no prepared_id" if old_ids else
               "prepared corpus unknown (no prepared_id recorded)")
        return None, f"{why}; not compared (its sweep.toml does not say which directory it ran on)"
    note = "" if old_ids else "prepared corpus unknown (no prepared_id recorded); compared by path"
    if Path(old_path) == Path(new_path):
        return None, note

    def shown(path: Path, ids: Iterable[str]) -> str:
        return f"{path} ({'prepared corpus ' + ', '.join(sorted(ids)) if ids else 'prepared_id unknown'})"

    return Difference("data.prepared", shown(old_path, old_ids), shown(new_path, [new_id] if new_id else [])), note


def experiment_differences(e: EarlierSweep, sweep: SweepConfig,
                           prepared_id: str | None = None) -> tuple[list[Difference], str]:
    """Every key in which the earlier sweep's experiment differs from `sweep`'s ([data], then
    [base], then the objective; module doc), and a note on what could not be compared (an
    earlier prepared corpus with no recorded id). `prepared_id`: the new sweep's prepared corpus
    (prepared_id_of), None when unknown."""
    out: list[Difference] = []
    prepared, note = _prepared_difference(e, sweep, prepared_id)
    if prepared is not None:
        out.append(prepared)
    old_data: dict[str, Any] = {}
    new_data: dict[str, Any] = {}
    _flat("data", e.sweep.data.model_dump(mode="json", exclude={"prepared"}), old_data)
    _flat("data", sweep.data.model_dump(mode="json", exclude={"prepared"}), new_data)
    for key in [*new_data, *(k for k in old_data if k not in new_data)]:
        old, new = old_data.get(key, _MISSING), new_data.get(key, _MISSING)
        if old != new:
            out.append(Difference(key, _show_value(old), _show_value(new)))

    old_base, old_fixed, old_searched = _constants(e.sweep)
    new_base, new_fixed, new_searched = _constants(sweep)
    for key in [*new_base, *(k for k in old_base if k not in new_base)]:
        if key in old_searched or key in new_searched or (key in old_fixed and key in new_fixed):
            continue  # the [space] rules (module doc)
        old, new = old_base.get(key, _MISSING), new_base.get(key, _MISSING)
        if old != new:
            out.append(Difference(key, _show_value(old) + (f" ([space] {old_fixed[key]})" if key in old_fixed else ""),
                                  _show_value(new) + (f" ([space] {new_fixed[key]})" if key in new_fixed else "")))

    if e.sweep.sweep.objectives != sweep.sweep.objectives:
        out.append(Difference(OBJECTIVES_KEY, str(e.sweep.sweep.objectives or SINGLE_OBJECTIVE),
                              str(sweep.sweep.objectives or SINGLE_OBJECTIVE)))
    return out, note


def refusal(refused: list[tuple[str, Difference]]) -> str:
    """The message refusing a warm start for the (earlier sweep's path, difference) pairs that
    [sweep] warm_start_allow does not allow."""
    allowable = list(dict.fromkeys(d.key for _, d in refused if d.key != OBJECTIVES_KEY))
    lines = [f"{d.key}: {path} had {d.old}, this sweep has {d.new}" for path, d in refused]
    hint = ("If the earlier trials may still guide this search, name those keys in [sweep] warm_start_allow = "
            f"{json.dumps(allowable)}; otherwise leave that sweep out of warm_start." if allowable else
            "Leave that sweep out of warm_start.")
    if any(d.key == OBJECTIVES_KEY for _, d in refused):
        hint += f" ({OBJECTIVES_KEY} cannot be allowed: a warm start takes single-objective sweeps only.)"
    return (f"[sweep] warm_start: {len(refused)} setting(s) of an earlier sweep's experiment differ from this "
            "sweep's (its trials' values measure that experiment, not this one):\n  " + "\n  ".join(lines) +
            "\n" + hint)
