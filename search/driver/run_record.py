"""The run record: what a sweep's directory says about the run that made it, and the checks
made before a driver writes there (a new sweep must not overwrite one, a resume must find what
it resumes, unchanged, and a study that is its own).

    <results>/<sweep>/sweep.toml   the sweep file as it ran (never rewritten)
    <results>/<sweep>/sweep.json   the sweep as it ran (overrides included) and its prepared
                                   corpus's id: what a resume compares with
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import optuna
from ray import tune

from search.definition import RESUME_NOTE, SweepConfig, changed_settings, parse_sweep, same_trackers
from search.results.location import SETTINGS_FILE, TUNE_DIR
from search.results import ResultsError, ResultsStore, read_trials
from search.results.study_record import RESULTS_ATTR, TUNE_ID_ATTR, own_trials

from .session import SweepError
from .study import (StudyLocation, bind, deletion_hint, discard_dead_start, existing_study, locate_study,
                    restore_study)


def read_text(store: ResultsStore, name: str) -> str | None:
    path = f"{store.root}/{name}"
    if store.fs.get_file_info(path).type.name != "File":
        return None
    with store.fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def write_text(store: ResultsStore, name: str, text: str) -> None:
    tmp = f"{store.root}/{name}.tmp-{os.getpid()}"
    with store.fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    store.fs.move(tmp, f"{store.root}/{name}")


def run_record(sweep: SweepConfig, prepared_id: str | None) -> dict[str, Any]:
    """What sweep.toml alone cannot say about a run: the sweep as it ran, overrides included
    (--prepared, --optuna-storage without its password, a demo's shorter budget), and the
    identity of its prepared corpus."""
    return {"format": 1, "sweep": sweep.as_raw(), "prepared_id": prepared_id}


def record_start(store: ResultsStore, sweep: SweepConfig, prepared_id: str | None) -> None:
    """sweep.toml and sweep.json, written once when a sweep starts (a resume never rewrites them)."""
    store.save_source(sweep.source_text)
    write_text(store, SETTINGS_FILE, json.dumps(run_record(sweep, prepared_id), indent=1))


def check_resume_unchanged(store: ResultsStore, sweep: SweepConfig, prepared_id: str | None) -> None:
    """Refuse a resume whose sweep differs from the one the sweep started with: the restored
    searcher, ASHA and recorder were made from the stored run, while the trials would be made
    from the new one. Validated settings are compared (SweepConfig.settings), so comments and
    formatting may change. The prepared corpus counts by identity (PreparedCorpus.prepared_id:
    the same preparation at another path is no change); where an id is missing, by path."""
    stored = f"{store.root}/sweep.toml"
    raw = read_text(store, SETTINGS_FILE)
    new = sweep.settings()
    if raw is not None:
        record = json.loads(raw)
        if not same_trackers(record.get("sweep", {}).get("logging"), sweep.as_raw().get("logging")):
            print(RESUME_NOTE, file=sys.stderr, flush=True)  # no refusal: trackers shape no trial
        try:
            old = SweepConfig.model_validate(record["sweep"]).settings()
        except (KeyError, ValueError) as e:
            raise SweepError(f"cannot read {store.root}/{SETTINGS_FILE} to compare the sweep with the one that "
                             f"started: {e}") from None
        old_id = record.get("prepared_id")
        if old_id and prepared_id:
            old["data.prepared"], new["data.prepared"] = old_id, prepared_id
    else:  # started by an older ser-search: only its sweep.toml, and --prepared is not known
        text = read_text(store, "sweep.toml")
        if text is None:
            return  # nothing stored to compare with
        base_dir = sweep.source_path.parent if sweep.source_path else None
        old = parse_sweep(text, source=stored, base_dir=base_dir).settings()
        old.pop("data.prepared", None)
        new.pop("data.prepared", None)
    changed = changed_settings(old, new)
    if changed:
        where = str(sweep.source_path) if sweep.source_path else "the sweep given"
        raise SweepError(
            f"--resume: {where} differs from the sweep {sweep.sweep.name!r} started with ({stored}) in "
            f"{', '.join(changed)}. A resumed sweep runs as it started: its searcher, ASHA and recorder come from "
            f"the stored run, its trials would come from the new file. Undo those changes to resume, or run the "
            f"new file as a new sweep under another [sweep] name.")


def check_existing(tune_path: str, run_dir: str, resume: bool, what: str) -> None:
    exists = tune.Tuner.can_restore(tune_path)
    if resume and not exists:
        raise SweepError(f"nothing to resume: no Ray Tune experiment at {tune_path}")
    if exists and not resume:
        raise SweepError(f"{what} already has results in {run_dir}; pass --resume to continue it, "
                         f"or choose another name / results directory")


def _moved_here(sweep_dir: str, study: optuna.Study) -> bool:
    """Whether `sweep_dir` is a moved or copied directory of the sweep whose study this is:
    every trial row it holds names a trial of the study."""
    try:
        ids = set(read_trials(sweep_dir)["trial_id"])
    except ResultsError:
        return False
    return bool(ids) and ids <= {t.user_attrs.get(TUNE_ID_ATTR) for t in study.get_trials(deepcopy=False)}


def open_study(sweep_dir: str, name: str, configured: str | None, resume: bool) -> StudyLocation:
    """The sweep's study location (search/driver/study.py), checked and bound for this driver: a resume
    needs the study (an object store's copy is brought back first) and, in a configured storage,
    one made for these results. A new sweep must not take over another sweep's study, nor one
    with finished trials (it would mix their trials into this TPE history); a study of this same
    sweep with no finished trial is what a start that died before Tune saved its state leaves (the
    searcher creates the study first), so it is deleted and the sweep starts afresh."""
    location = locate_study(sweep_dir, name, configured)
    if resume:
        restore_study(location)
        study = location.load()
        if study is None:
            raise SweepError(f"the Optuna study {name!r} of {sweep_dir} is not in {location.shown}; resume with "
                             "the Optuna storage the sweep started with ([sweep] optuna_storage / --optuna-storage)")
        owner = study.user_attrs.get(RESULTS_ATTR)
        if location.configured and owner is not None and owner != sweep_dir and not _moved_here(sweep_dir, study):
            raise SweepError(f"the Optuna study {name!r} in {location.shown} belongs to the sweep in {owner}, not "
                             f"{sweep_dir}; give this sweep another [sweep] name or storage")
    elif (study := existing_study(location)) is not None:
        held = f"{location.shown} already holds an Optuna study named {name!r}"
        owner = study.user_attrs.get(RESULTS_ATTR)
        # Beside the results (or their store copy) the file is this sweep's even unmarked: the
        # searcher creates the study just before the runner marks it. In a shared storage it is
        # not known whose an unmarked study is.
        if owner is None and location.configured:
            raise SweepError(f"{held}, which does not say which results it belongs to; nothing was deleted. Give "
                             f"this sweep another [sweep] name or --optuna-storage, or delete that study if it is "
                             f"not wanted ({deletion_hint(location)})")
        if owner is not None and owner != sweep_dir:
            raise SweepError(f"{held}, which belongs to the sweep in {owner}, not {sweep_dir}; nothing was deleted. "
                             f"Give this sweep another [sweep] name or --optuna-storage, or delete that study if "
                             f"that sweep is not wanted ({deletion_hint(location)})")
        # a warm start's added trials are not this sweep's: a start that died after adding them left nothing
        finished = sum(t.state.is_finished() for t in own_trials(study.get_trials(deepcopy=False)))
        if finished:
            raise SweepError(f"{held} with {finished} finished trial(s), but {sweep_dir} has no Ray Tune experiment "
                             f"to resume (no {TUNE_DIR}/tuner.pkl: was it deleted?); nothing was deleted. Optuna's "
                             f"history alone cannot be resumed: to start this sweep afresh, delete that study "
                             f"({deletion_hint(location)}); to keep it, run this sweep under another [sweep] name "
                             f"or results directory")
        discard_dead_start(location, study)
    bind(location)
    return location
