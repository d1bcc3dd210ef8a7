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
so the earlier sweep is compared with the new one key by key first ([data], [base], the
objective), and each difference refuses the warm start unless `[sweep] warm_start_allow` lists
it. search.driver.warm_compare holds those comparisons, of the experiment and of the ranges above.

Added trials carry `WARM_ATTR` (the earlier sweep's directory) and `WARM_NUMBER_ATTR` (their
number there), and no `tune_trial_id`: no Tune trial runs them, so Parquet never has their
rows, `num_samples` counts only new trials, and nothing that matches Optuna's trials with
Tune's takes them for this sweep's own (study.finish_study and the lost-trial repair touch only
RUNNING trials). They are added once, when the sweep starts; a resume never adds them again.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ser_core.corpus import MANIFEST_FILE, PROTOCOL_FILE, prepared_identity
from ser_core.losses import loss_parameters

from search.definition import OBJECTIVES_KEY, SweepConfig, SweepConfigError, parse_sweep
from search.definition.space import FixedAxis, resolve_axis
from search.results import ResultsError, read_trials
from search.results.location import filesystem
from search.results.study_record import RESULTS_ATTR, WARM_ATTR, WARM_NUMBER_ATTR

from .study import StudyLocation, existing_study, locate_study
from .warm_compare import (
    SINGLE_OBJECTIVE,
    Difference,
    EarlierSweep,
    experiment_differences,
    incompatibility,
    new_distributions,
    range_problems,
    range_refusal,
    refusal,
    same_value,
)

__all__ = ["ADDED", "WARM_ATTR", "WARM_NUMBER_ATTR", "Difference", "EarlierSweep", "WarmStart", "WarmStartError",
           "add_warm_start", "experiment_differences", "incompatibility", "load_earlier", "new_distributions",
           "prepare_warm_start", "prepared_id_of", "warm_trials"]

ADDED = (TrialState.COMPLETE, TrialState.PRUNED)


# An earlier sweep cannot seed this one: an error in the sweep file, which the CLI prints as such
# (exit status 2; it knows user errors by class name, so this is that class, not a subclass).
WarmStartError = SweepConfigError


@dataclass
class WarmStart:
    """The trials to add to a new study, and what to say about them."""

    trials: list[FrozenTrial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    fs, root = filesystem(path)
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
    fs, root = filesystem(path)
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
                             f"{SINGLE_OBJECTIVE}\nA warm start takes single-objective sweeps only; leave that "
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
        problems += range_problems(e, dists)
        if problems or refused:
            continue
        other: dict[str, int] = {}
        for t in e.trials:
            values = _values(t, e.sweep)
            for name, axis in sweep.space.items():
                if isinstance(axis, FixedAxis) and name in values and not same_value(values[name], axis.value):
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
    messages = [refusal(refused)] if refused else []
    if problems:
        messages.append(range_refusal(problems))
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
