"""Warm-started sweeps: an earlier sweep's finished trials seed a new sweep's Optuna study.

`[sweep] warm_start = ["../results/earlier"]` names earlier sweeps' results directories. Before
Ray starts, each one's Optuna study is read (the study, not trials.parquet: it holds exactly
what TPE saw — the parameters with their distributions, the values as reported, the state and
every intermediate value; Parquet has no distributions and would have to be translated back
into them). Its COMPLETE trials (with their values) and PRUNED trials (with their intermediate
values, which TPE ranks pruned trials by) become trials of the new study, before the searcher
asks its first one; FAIL, RUNNING and WAITING trials are left out, and so are the earlier
study's own warm-start trials (list that sweep too to have them).

Parameters, by what the new [space] does with them:
- searched in both: the old values join under the *new* distribution (TPE maps a categorical
  value to its index among the new choices, and Optuna's storage refuses a parameter whose
  distribution changes kind). The earlier range must lie inside the new one — the earlier
  choices among the new choices, a float range within the new bounds, an int range on the new
  grid, a value the earlier sweep fixed a valid value of the new axis — or the sweep is refused
  before Ray starts, in one message naming every such parameter with both ranges;
- searched only in the new sweep: the old trials do not have it, so TPE samples it fresh
  (a trial lacking a parameter is left out of that parameter's model);
- fixed in the new sweep, or not in its [space] at all: dropped from the added trials; the
  trials still join with their values (the sweep says how many ran at another value of a
  parameter it now fixes).

The experiment, not only the space: an earlier trial's value measures the experiment it ran in,
so before any trial is converted the earlier sweep is compared with the new one, key by key
(experiment_differences): the prepared corpus by identity (data.prepared), every other [data]
key (fold, folds, test_folds, corpora, leave_out, ...), every [base] key as the TrainConfig it
gives (model, frontend, loss, optimiser, recipe; not where a trial runs: config.NOT_COMPARED), and
the objective. A [space] value a sweep fixes counts as that sweep's value of the key it sets; a key
searched in either sweep, or fixed in both [space]s, is left to the rules above. Each difference
refuses the warm start, in one message naming every key with both values, unless the new sweep
lists the key (or a table above it) in `[sweep] warm_start_allow`; an allowed difference is noted.

Added trials carry `WARM_ATTR` (the earlier sweep's directory) and `WARM_NUMBER_ATTR` (their
number there), and no `tune_trial_id`: no Tune trial runs them, so Parquet never has their
rows, `num_samples` counts only new trials, and nothing that matches Optuna's trials with
Tune's takes them for this sweep's own (study.finish_study and the lost-trial repair touch only
RUNNING trials). They are added once, when the sweep starts; a resume never adds them again.
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ser_core.corpus import MANIFEST_FILE, PROTOCOL_FILE, prepared_identity
from ser_core.losses import loss_parameters

from .config import NOT_COMPARED, OBJECTIVES_KEY, SweepConfig, SweepConfigError, parse_sweep
from .results import ResultsError, read_trials
from .space import ChoiceAxis, FixedAxis, RangeAxis, resolve_axis
from .study import RESULTS_ATTR, WARM_ATTR, StudyLocation, existing_study, locate_study

WARM_NUMBER_ATTR = "ser_search_warm_start_number"  # trial: its number in the earlier study
ADDED = (TrialState.COMPLETE, TrialState.PRUNED)


# An earlier sweep cannot seed this one: an error in the sweep file, which the CLI prints as such
# (exit status 2; it knows user errors by class name, so this is that class, not a subclass).
WarmStartError = SweepConfigError


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


@dataclass
class WarmStart:
    """The trials to add to a new study, and what to say about them."""

    trials: list[FrozenTrial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def _read(fs: pafs.FileSystem, path: str) -> str | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def _earlier_config(path: str) -> tuple[SweepConfig, dict[str, Any] | None]:
    """The earlier sweep as it ran, and its run record.

    Where an earlier sweep's definition is read from, most reliable first:
    - sweep.json (runner.record_start): the validated sweep as it ran — command-line overrides
      included (--prepared, a demo's shorter budget), [base] as given, the objectives — and the
      prepared_id of the corpus it loaded; written once when the sweep started and never by a
      resume, which is refused unless the sweep is unchanged, so it holds for every trial.
    - sweep.toml, for sweeps started before sweep.json existed: the file as written, so without
      --prepared and with a relative data.prepared whose base directory was not recorded (the
      prepared corpus is then known only by the ids its trials recorded).
    trials.parquet's config_json is not used for the definition: it is one TrainConfig per trial,
    [base] and that trial's axis values merged (a fixed [base] key cannot be told from a searched
    one), without the objectives, and absent for a trial whose params made no valid config. Its
    prepared_id column is read (load_earlier) as the identity each trial ran on."""
    fs, root = _filesystem(path)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise WarmStartError(f"[sweep] warm_start: {path} is not a directory; give an earlier sweep's results "
                             "directory (<results>/<sweep-name>)")
    record = _read(fs, f"{root.rstrip('/')}/sweep.json")
    try:
        if record is not None:
            stored = json.loads(record)
            return SweepConfig.model_validate(stored["sweep"]), stored
        text = _read(fs, f"{root.rstrip('/')}/sweep.toml")
        if text is not None:
            return parse_sweep(text, source=f"{path}/sweep.toml"), None
    except (KeyError, ValueError) as e:
        raise WarmStartError(f"[sweep] warm_start: cannot read the sweep stored in {path}: {e}") from None
    raise WarmStartError(f"[sweep] warm_start: {path} holds no sweep.json or sweep.toml; is it a sweep's results "
                         "directory (<results>/<sweep-name>)?")


def _recorded_prepared_ids(path: str, record: dict[str, Any] | None) -> tuple[str, ...]:
    """The prepared_id the earlier run recorded: in its sweep.json and in each trials.parquet row
    (the recorder writes the id of the corpus the trials ran on; both come from the one corpus
    the driver loaded). A record or rows from before prepared_id existed add nothing (a file
    without the column reads as null); an unreadable trials.parquet is no reason to refuse."""
    ids: set[str] = set()
    if record is not None and record.get("prepared_id"):
        ids.add(str(record["prepared_id"]))
    fs, root = _filesystem(path)
    rows = f"{path.rstrip('/')}/trials.parquet"
    if fs.get_file_info(f"{root.rstrip('/')}/trials.parquet").type == pafs.FileType.File:
        try:
            ids |= {str(v) for v in read_trials(rows)["prepared_id"].dropna()}
        except (ResultsError, KeyError):
            pass
    return tuple(sorted(ids))


def prepared_id_of(prepared: Path | str) -> str | None:
    """PreparedCorpus.prepared_id of the corpus in `prepared`, from the two small files it hashes
    (without loading the waveforms), or None when they cannot be read (the sweep then fails
    loading it, after the warm-start check, which compares paths instead)."""
    root = Path(prepared)
    try:
        protocol = json.loads((root / PROTOCOL_FILE).read_text())
        manifest = (root / MANIFEST_FILE).read_bytes()
    except (OSError, ValueError):
        return None
    return prepared_identity(protocol, manifest)


def load_earlier(path: str) -> EarlierSweep:
    """An earlier sweep's config and finished trials, from its Optuna study where it ran: beside
    its results, in its store copy, or in the storage URL it was run with."""
    cfg, record = _earlier_config(path)
    if cfg.sweep.objectives:
        raise WarmStartError(f"[sweep] warm_start: {path} ran another experiment than this sweep:\n  "
                             f"{OBJECTIVES_KEY}: {path} had {cfg.sweep.objectives}, this sweep has "
                             f"{_SINGLE_OBJECTIVE}\nA warm start takes single-objective sweeps only; leave that "
                             "sweep out of warm_start.")
    location = locate_study(path, cfg.sweep.name, cfg.sweep.optuna_storage)
    try:
        study = existing_study(location)
        if study is None:
            raise WarmStartError(f"[sweep] warm_start: the Optuna study {cfg.sweep.name!r} of {path} is not in "
                                 f"{location.shown}; a warm start reads the earlier study (Parquet has no "
                                 f"distributions). Was that sweep run with another --optuna-storage?")
        owner = study.user_attrs.get(RESULTS_ATTR)
        if location.configured and owner is not None and owner.rstrip("/") != path.rstrip("/"):
            raise WarmStartError(f"[sweep] warm_start: the Optuna study {cfg.sweep.name!r} in {location.shown} "
                                 f"belongs to the sweep in {owner}, not {path}")
        if study.directions != [StudyDirection.MAXIMIZE]:
            raise WarmStartError(f"[sweep] warm_start: the Optuna study of {path} is not one maximised objective "
                                 "(validation UA); a warm start takes single-objective sweeps only")
        trials = [t for t in study.get_trials(deepcopy=True, states=ADDED) if WARM_ATTR not in t.user_attrs]
    finally:
        _close(location)
    return EarlierSweep(path, cfg, trials, location.shown, _recorded_prepared_ids(path, record), record is not None)


def _close(location: StudyLocation) -> None:
    if location._storage is not None:
        location._storage.engine.dispose()
    if location.mirror is not None and location.local_file is not None:  # a private copy, read once
        shutil.rmtree(location.local_file.parent, ignore_errors=True)


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


def _values(trial: FrozenTrial, old: SweepConfig) -> dict[str, Any]:
    """Every axis value the earlier trial ran with: its asked parameters and the earlier sweep's
    fixed values that applied to it (a fixed family parameter only for its family)."""
    values = dict(trial.params)
    family = values.get("loss_family", old.families()[0])
    for name, axis in old.space.items():
        if isinstance(axis, FixedAxis) and name not in values:
            try:
                loss_param = resolve_axis(name).loss_param
            except ValueError:
                continue
            if not loss_param or name in loss_parameters(str(family)):
                values[name] = axis.value
    return values


def _same(a: Any, b: Any) -> bool:
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
            fits = any(_same(old, c) for c in new.choices)
        return None if fits else "its value is not a value of the new axis"
    if isinstance(new, CategoricalDistribution):
        if not isinstance(old, CategoricalDistribution):
            return "a range then, choices now"
        missing = [c for c in old.choices if not any(_same(c, n) for n in new.choices)]
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


_SINGLE_OBJECTIVE = "val_ua:max (best validation UA)"


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
        out.append(Difference(OBJECTIVES_KEY, str(e.sweep.sweep.objectives or _SINGLE_OBJECTIVE),
                              str(sweep.sweep.objectives or _SINGLE_OBJECTIVE)))
    return out, note


def _refusal(refused: list[tuple[str, Difference]]) -> str:
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


def warm_trials(sweep: SweepConfig, earlier: Iterable[EarlierSweep], prepared_id: str | None = None) -> WarmStart:
    """The earlier sweeps' finished trials as trials of `sweep`'s study (module doc), or a
    WarmStartError naming every key in which an earlier experiment differs from this one (unless
    [sweep] warm_start_allow allows it) and every parameter whose earlier range does not fit the
    new one. `prepared_id`: the new sweep's prepared corpus (prepared_id_of), None when unknown."""
    dists = new_distributions(sweep)
    out = WarmStart()
    problems: list[str] = []
    refused: list[tuple[str, Difference]] = []
    allow = sweep.sweep.warm_start_allow
    for e in earlier:
        differences, unknown = experiment_differences(e, sweep, prepared_id)
        refused += [(e.path, d) for d in differences if not d.allowed_by(allow)]
        allowed = [d.key for d in differences if d.allowed_by(allow)]
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
        if problems or refused:
            continue
        other: dict[str, int] = {}
        for t in e.trials:
            values = _values(t, e.sweep)
            for name, axis in sweep.space.items():
                if isinstance(axis, FixedAxis) and name in values and not _same(values[name], axis.value):
                    other[name] = other.get(name, 0) + 1
            params = {n: v for n, v in values.items() if n in dists}
            added = optuna.trial.create_trial(
                state=t.state, value=t.value, params=params, distributions={n: dists[n] for n in params},
                intermediate_values=dict(t.intermediate_values),
                user_attrs={WARM_ATTR: e.path, WARM_NUMBER_ATTR: t.number})
            added.datetime_start, added.datetime_complete = t.datetime_start, t.datetime_complete
            out.trials.append(added)
        done = sum(t.state == TrialState.COMPLETE for t in e.trials)
        note = f"warm start: {len(e.trials)} trials from {e.path} ({done} completed, {len(e.trials) - done} pruned)"
        if other:
            note += "; at another value of a parameter this sweep fixes: " + ", ".join(
                f"{n} ({k})" for n, k in sorted(other.items()))
        if e.sweep.scheduler.max_epochs != sweep.scheduler.max_epochs:
            note += (f"; that sweep trained up to {e.sweep.scheduler.max_epochs} epochs, this one "
                     f"{sweep.scheduler.max_epochs}")
        if allowed:
            note += f"; differs as warm_start_allow allows: {', '.join(allowed)}"
        if unknown:
            note += f"; {unknown}"
        out.notes.append(note)
    messages = [_refusal(refused)] if refused else []
    if problems:
        messages.append(
            f"[sweep] warm_start: {len(problems)} parameter range(s) of an earlier sweep do not fit this sweep's "
            "[space] (its trials' values must be values of the new axes):\n  " + "\n  ".join(problems) +
            "\nWiden those axes to contain the earlier ranges, or leave that sweep out of warm_start.")
    if messages:
        raise WarmStartError("\n".join(messages))
    return out


def prepare_warm_start(sweep: SweepConfig, sweep_dir: str) -> WarmStart:
    """Read and convert every warm_start entry of `sweep`; before Ray starts, so a missing
    study or an incompatible parameter costs seconds."""
    paths = sweep.sweep.warm_start
    if getattr(sweep.sweep, "objectives", None):  # an earlier value is one number, validation UA
        raise WarmStartError("[sweep] warm_start: a multi-objective sweep ([sweep] objectives) cannot be warm-started")
    own = sweep_dir.rstrip("/")
    if own in (p.rstrip("/") for p in paths):
        raise WarmStartError(f"[sweep] warm_start names this sweep's own results ({sweep_dir})")
    return warm_trials(sweep, [load_earlier(p) for p in paths], prepared_id_of(sweep.data.prepared))


def add_warm_start(location: StudyLocation, warm: WarmStart) -> int:
    """Add the trials to the new sweep's study (created here, so they come before the searcher's
    first trial). Not twice: a study that already has warm-start trials is left as it is."""
    study = optuna.create_study(study_name=location.name, storage=location.storage(), direction="maximize",
                                load_if_exists=True)
    if any(WARM_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False)):
        return 0
    study.add_trials(warm.trials)
    return len(warm.trials)


def own_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """A study's trials without those a warm start added: the ones this sweep ran."""
    return [t for t in trials if WARM_ATTR not in t.user_attrs]
