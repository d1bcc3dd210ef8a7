"""Runs one sweep as a Ray Tune experiment: OptunaSearch (seeded TPE, define-by-run space)
+ ASHA, per-trial CPU/GPU resources, retries, checkpoints, and resume with Tuner.restore.

Layout of a sweep's results directory (`<results>/<sweep-name>/`):
  trials.parquet, epochs.parquet, confusion.parquet   the results (search.results)
  optuna.db                                            the Optuna study (optuna-dashboard can open it;
                                                       or in a configured storage: search/study.py)
  sweep.toml                                           the sweep file as it ran (never rewritten)
  sweep.json                                           the sweep as it ran (overrides included) and its
                                                       prepared corpus's id: what a resume compares with
  tune/                                                Ray Tune's experiment state and checkpoints
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from ser_core.config import TrainConfig

from .driver_lock import SweepBusyError, hold_sweep
from .checkpoints import SnapshotSafePruning, checkpoint_config, keep_latest_checkpoints
from .config import SweepConfig, changed_settings, parse_sweep, tune_metric
from .asha_state import AshaRungState
from .mo_asha import MultiObjectiveASHA, RungState
from .pruning import PruningAwareOptunaSearch, SweepSearchGenerator
from .study import (FAILED_ATTR, FINISHED_ATTR, RESULTS_ATTR, TUNE_ID_ATTR, StudyLocation, StudyMirror, bind,
                    deletion_hint, discard_dead_start, existing_study, failed_tune_trials, finish_study,
                    locate_study, restore_study, unbind)
from .recorder import ParquetRecorder
from .results import ResultsStore
from .trainable import make_trainable
from .trackers import (RESUME_NOTE, check_installed, default_loggers, same_trackers, stored_logging,
                       tracker_callbacks)
from .warm_start import WarmStart, add_warm_start, own_trials, prepare_warm_start

METRIC = "best_val_ua"
TUNE_DIR = "tune"


class SweepError(RuntimeError):
    """A sweep cannot start or resume; the message says why and what to do."""


@dataclass
class SweepOutcome:
    sweep_dir: str
    num_trials: int
    num_errors: int
    study_path: str | None              # the study's SQLite file on this machine, if it is one
    study_location: str | None = None   # where the study is (file, URL without password, store copy)


def default_node_ip() -> str | None:
    """Where a local Ray listens. On Linux every 127/8 address is loopback, and Ray keeps
    127.0.0.2 as given (it rewrites 127.0.0.1 to an outside interface), so a local sweep
    never leaves the machine. Elsewhere (macOS has only 127.0.0.1) Ray chooses.
    SER_SEARCH_NODE_IP overrides; "auto" means Ray's own choice."""
    env = os.environ.get("SER_SEARCH_NODE_IP")
    if env:
        return None if env == "auto" else env
    return "127.0.0.2" if platform.system() == "Linux" else None


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a private local one (token auth on)."""
    if ray.is_initialized():
        return
    # Inside a Ray Job (`ray job submit -- ser-search sweep ...`) RAY_ADDRESS names the cluster.
    address = address or os.environ.get("RAY_ADDRESS")
    # A new local cluster turns token auth on by itself (and writes ~/.ray/auth_token if
    # missing); joining a cluster takes the token from RAY_AUTH_TOKEN(_PATH) or that file.
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        ray.init(address=address, **quiet)
        return
    node_ip = default_node_ip()
    kwargs: dict[str, Any] = dict(address="local", include_dashboard=False, num_cpus=num_cpus, **quiet)
    if node_ip:
        kwargs["_node_ip_address"] = node_ip
    ray.init(**kwargs)


def _is_local(path: str) -> bool:
    return "://" not in path


def open_study(sweep_dir: str, name: str, configured: str | None, resume: bool) -> StudyLocation:
    """The sweep's study location (search/study.py), checked and bound for this driver: a resume
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
        if location.configured and owner is not None and owner != sweep_dir:
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


SETTINGS_FILE = "sweep.json"


def _read_text(store: ResultsStore, name: str) -> str | None:
    path = f"{store.root}/{name}"
    if store.fs.get_file_info(path).type.name != "File":
        return None
    with store.fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def _write_text(store: ResultsStore, name: str, text: str) -> None:
    tmp = f"{store.root}/{name}.tmp-{os.getpid()}"
    with store.fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    store.fs.move(tmp, f"{store.root}/{name}")


def _run_record(sweep: SweepConfig, prepared_id: str | None) -> dict[str, Any]:
    """What sweep.toml alone cannot say about a run: the sweep as it ran, overrides included
    (--prepared, --optuna-storage without its password, a demo's shorter budget), and the
    identity of its prepared corpus."""
    return {"format": 1, "sweep": sweep.as_raw(), "prepared_id": prepared_id}


def record_start(store: ResultsStore, sweep: SweepConfig, prepared_id: str | None) -> None:
    """sweep.toml and sweep.json, written once when a sweep starts (a resume never rewrites them)."""
    store.save_source(sweep.source_text)
    _write_text(store, SETTINGS_FILE, json.dumps(_run_record(sweep, prepared_id), indent=1))


def check_resume_unchanged(store: ResultsStore, sweep: SweepConfig, prepared_id: str | None) -> None:
    """Refuse a resume whose sweep differs from the one the sweep started with: the restored
    searcher, ASHA and recorder were made from the stored run, while the trials would be made
    from the new one. Validated settings are compared (SweepConfig.settings), so comments and
    formatting may change. The prepared corpus counts by identity (PreparedCorpus.prepared_id:
    the same preparation at another path is no change); where an id is missing, by path."""
    stored = f"{store.root}/sweep.toml"
    raw = _read_text(store, SETTINGS_FILE)
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
        text = _read_text(store, "sweep.toml")
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


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if not _is_local(root) else str(Path(root).joinpath(*parts))


def _configure_tune() -> None:
    # Tune's status tables would drown the one line per finished trial the recorder prints.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # The experiment snapshot a restore reads, every 2 s instead of every 10 s or more: a
    # killed driver's resume then replays at most ~2 s of each trial, and rarely a trial
    # that Parquet and Optuna already hold as finished (they keep its first outcome).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Tune keeps every checkpoint (search/checkpoints.py deletes them); only the latest needs
    # its metrics in the snapshot, or the snapshot would grow by a result per epoch.
    os.environ.setdefault("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "1")
    # Tune's own loggers only as search/trackers.py lists them: its CSV and JSON logs always,
    # TensorBoard event files only where [logging] asks (Tune would add them whenever tensorboardX is installed).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _check_existing(tune_path: str, run_dir: str, resume: bool, what: str) -> None:
    exists = tune.Tuner.can_restore(tune_path)
    if resume and not exists:
        raise SweepError(f"nothing to resume: no Ray Tune experiment at {tune_path}")
    if exists and not resume:
        raise SweepError(f"{what} already has results in {run_dir}; pass --resume to continue it, "
                         f"or choose another name / results directory")


def _start(address: str | None, num_cpus: int | None, corpus: Any, prepared: Path, cpus: float,
           gpus: float) -> tuple[Any, dict[str, float], float]:
    """Connect to Ray, load the corpus once on the driver, size the trials' resources."""
    _configure_tune()
    connect(address, num_cpus=num_cpus)
    if corpus is None:
        from ser_core.corpus import PreparedCorpus  # noqa: PLC0415 - only the driver loads it
        corpus = PreparedCorpus.load(prepared).in_memory()
    gpu_fraction = float(gpus) if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return corpus, {"cpu": cpus, "gpu": gpu_fraction}, gpu_fraction


def _corpora(corpus: Any) -> tuple[str, ...] | None:
    return corpus.corpora() if hasattr(corpus, "corpora") else None


def _prepared_id(corpus: Any) -> str | None:
    return getattr(corpus, "prepared_id", None)  # a corpus not loaded from disk has no identity


def check_protocol(corpus: Any, data: Any, where: str = "[data] of the sweep") -> None:
    """Fail before any trial starts when the data section's corpora or fold cannot form a split
    (every trial would fail the same way)."""
    if not hasattr(corpus, "evaluation_split"):
        return
    for fold in getattr(data, "folds", None) or [data.fold]:  # every fold a cross-validated trial trains on
        try:
            corpus.evaluation_split(fold, **data.protocol_args())
        except ValueError as e:
            raise SweepError(f"{where}: {e}") from None


def check_confirmation_splits(corpus: Any, configs: list[str], folds: list[int] | None = None,
                              held_out: list[str] | None = None) -> None:
    """check_protocol for every configuration x test fold x held-out corpus a confirmation
    will run, so a split that cannot be formed (a held-out corpus sharing fewer than two
    classes with the rest, a corpus not prepared) fails before any run, naming the repeat."""
    for config_json in dict.fromkeys(configs):
        for fold in folds or [None]:
            for corpus_out in held_out or [None]:
                cfg = confirm_config({"config_json": config_json, "seed": 0, "fold": fold, "leave_out": corpus_out})
                repeat = ", ".join(x for x in (f"fold {fold}" if fold is not None else "",
                                               f"{corpus_out} held out" if corpus_out else "") if x)
                check_protocol(corpus, cfg.data, f"confirmation run ({repeat or 'as searched'}) of "
                                                 f"{cfg.loss.family}/{cfg.frontend.kind}")


def _run_config(run_dir: str, recorder: ParquetRecorder, max_failures: int,
                extra: tuple[tune.Callback, ...] = (), loggers: list[tune.Callback] | None = None) -> tune.RunConfig:
    loggers = default_loggers() if loggers is None else loggers
    return tune.RunConfig(
        # extra (the study's copy) before the recorder: a trial's outcome reaches the stored
        # study before its Parquet row, so a driver killed in between leaves no row Optuna lacks
        name=TUNE_DIR, storage_path=run_dir, callbacks=[*extra, recorder, SnapshotSafePruning(), *loggers],
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=checkpoint_config(),
        verbose=0,
    )


def _announce(what: str, n: int, address: str | None, resources: dict[str, float], run_dir: str) -> None:
    where = address or f"a local Ray ({ray.cluster_resources().get('CPU', 0):.0f} CPUs)"
    print(f"{what}: {n} trials on {where}, {resources['cpu']} CPU + {resources['gpu']} GPU per trial; "
          f"results in {run_dir}", file=sys.stderr, flush=True)


def run_sweep(sweep: SweepConfig, results: str, *, address: str | None = None, resume: bool = False,
              corpus: Any = None, num_cpus: int | None = None, max_failures: int = 2,
              echo: bool = True) -> SweepOutcome:
    """Run (or with resume=True continue) `sweep`, writing results under `results`."""
    name = sweep.sweep.name
    results = results if not _is_local(results) else str(Path(results).resolve())
    sweep_dir = _join(results, name)
    tune_path = _join(sweep_dir, TUNE_DIR)
    _check_existing(tune_path, sweep_dir, resume, f"sweep {name!r}")
    check_installed(sweep.logging, SweepError)
    # the earlier studies are read and checked before anything is written or Ray starts
    warm = prepare_warm_start(sweep, sweep_dir) if sweep.sweep.warm_start and not resume else WarmStart()
    if corpus is None:  # before Ray starts: a bad (or, on resume, another) prepared corpus fails first
        from ser_core.corpus import PreparedCorpus  # noqa: PLC0415 - only the driver loads it
        corpus = PreparedCorpus.load(sweep.data.prepared).in_memory()
    with one_driver(results, sweep_dir, f"sweep {name!r}" + (" (--resume)" if resume else "")):
        store = ResultsStore(results, name)
        if resume:
            check_resume_unchanged(store, sweep, _prepared_id(corpus))
        study = open_study(sweep_dir, name, sweep.sweep.optuna_storage, resume)
        try:
            if warm.trials:  # once, at the start: a resume finds them in the study
                add_warm_start(study, warm)
            if echo:
                for note in warm.notes:
                    print(note, file=sys.stderr, flush=True)
            return _run_study(sweep, results, sweep_dir, tune_path, store, study, address=address, resume=resume,
                              corpus=corpus, num_cpus=num_cpus, max_failures=max_failures, echo=echo)
        finally:
            unbind(name)


@contextlib.contextmanager
def one_driver(results: str, run_dir: str, what: str) -> Iterator[None]:
    """Hold the run's results directory for this driver (search.driver_lock): a second driver
    on the same sweep or confirmation is refused with a SweepError while this one lives.
    Object-store results have no locks; there the rule is only documented."""
    if not _is_local(results):
        yield
        return
    try:
        with hold_sweep(run_dir, what):
            yield
    except SweepBusyError as e:
        raise SweepError(str(e)) from None


def _objectives(sweep: SweepConfig) -> dict[str, Any]:
    """metric= and mode= for the searcher: best validation UA, or one Tune result key and
    sense per `[sweep] objectives` entry (search.config.tune_metric)."""
    objectives = sweep.sweep.objective_list()
    if not objectives:
        return {"metric": METRIC, "mode": "max"}
    return {"metric": [tune_metric(o.name) for o in objectives], "mode": [o.sense for o in objectives]}


def _sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    """Seeded TPE (multi-objective TPE too), or NSGA-II where a multi-objective sweep asks for it."""
    if sweep.sweep.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=sweep.sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.sweep.seed)


def _run_study(sweep: SweepConfig, results: str, sweep_dir: str, tune_path: str, store: ResultsStore,
               study: StudyLocation, *, address: str | None, resume: bool, corpus: Any, num_cpus: int | None,
               max_failures: int, echo: bool) -> SweepOutcome:
    name = sweep.sweep.name
    corpus, resources, gpu_fraction = _start(address, num_cpus, corpus, sweep.data.prepared,
                                             sweep.resources.cpus_per_trial, sweep.resources.gpus_per_trial)
    check_protocol(corpus, sweep.data)
    exposed = _exposed_by_design(sweep.data, getattr(corpus, "n_folds", None))
    if exposed and echo:
        print(f"sweep: NOT NESTED: with data.folds = {sweep.data.folds} and no data.test_folds, fold(s) {exposed} are "
              "the validation fold of one run and the test fold of another, so selection reads speakers whose test "
              "figures the trials report (selection_exposed = true). Hold test folds out with [data] test_folds and "
              "list the selection folds in data.folds", file=sys.stderr, flush=True)
    # The corpus goes into the object store once; every trial on a node maps the same copy.
    trainable = tune.with_resources(tune.with_parameters(make_trainable(sweep.trial_config), corpus=corpus),
                                    resources)

    # the pickled copy in Tune's snapshot records a restored sweep's trials; this one, what it lost
    recorder = ParquetRecorder(name, sweep.trial_config, results, gpu_fraction, echo=echo,
                               corpora=_corpora(corpus), prepared_id=_prepared_id(corpus), source_sweep=name,
                               n_folds=getattr(corpus, "n_folds", None))
    if resume:
        # Errored trials are retried only while their Optuna trials are open (a driver died before
        # the sweep ended): once a sweep has ended they are FAIL in Optuna, which cannot be undone.
        finished = bool(study.load().user_attrs.get(FINISHED_ATTR))
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=not finished)
    else:
        record_start(store, sweep, _prepared_id(corpus))
        targets = _objectives(sweep)
        searcher = PruningAwareOptunaSearch(
            space=sweep.define_by_run, sampler=_sampler(sweep), **targets,
            storage=study.storage(), study_name=name, max_epochs=sweep.scheduler.max_epochs,
            points_to_evaluate=sweep.covering_points() or None,
        )
        study.load().set_user_attr(RESULTS_ATTR, sweep_dir)  # the searcher has just created it
        rungs = dict(time_attr="epoch", max_t=sweep.scheduler.max_epochs,
                     grace_period=sweep.scheduler.grace_period, reduction_factor=sweep.scheduler.reduction_factor)
        if sweep.sweep.objectives:  # several objectives: MO-ASHA, its rungs kept in Tune's snapshots
            scheduler = MultiObjectiveASHA(targets["metric"], targets["mode"], **rungs)
            extra: tuple[tune.Callback, ...] = (StudyMirror(name), RungState(scheduler))
            targets = {}  # TuneConfig takes one metric; the searcher and the scheduler have theirs
        else:
            scheduler = ASHAScheduler(**rungs)  # its rungs, too, kept in Tune's snapshots
            extra = (StudyMirror(name), AshaRungState(scheduler))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                # a generator of our own (its restored counter counts trials a dead driver finished
                # after its last snapshot), so the concurrency limit is wrapped here, not by Tune
                **targets, search_alg=SweepSearchGenerator(
                    ConcurrencyLimiter(searcher, max_concurrent=sweep.sweep.max_concurrent_trials)),
                scheduler=scheduler, num_samples=sweep.sweep.num_samples,
                reuse_actors=sweep.resources.reuse_actors,  # measured: benchmarks/RESULTS.md, issue 15
            ),
            run_config=_run_config(sweep_dir, recorder, max_failures, extra=extra, loggers=tracker_callbacks(
                sweep.logging, run_name=name, stage="search", source_sweep=name, to_config=sweep.trial_config,
                run_dir=sweep_dir)),
        )
    if echo:
        _announce(f"sweep {name!r}", sweep.sweep.num_samples, address, resources, sweep_dir)
    grid = tuner.fit()
    keep_latest_checkpoints(grid)
    errors = sum(1 for r in grid if r.error is not None)
    if grid.num_terminated + grid.num_errors >= sweep.sweep.num_samples:
        # Every trial ended: errored trials are final now, and nothing is left RUNNING in Optuna.
        failed = finish_study(study)
        if failed and echo:
            print(f"told Optuna FAIL for {failed} trial(s) that ended without a result (their reason is in "
                  f"each trial's user attribute ser_search_failed)", file=sys.stderr, flush=True)
    lost = record_lost_trials(sweep, study, recorder)
    if lost and echo:
        print(f"{lost} trial(s) lost with a driver that died are in trials.parquet as errors (their epochs "
              "are kept; Optuna was told FAIL)", file=sys.stderr, flush=True)
    study.push()  # object-store results: the study's final state beside them
    if study.mirror is not None and study.local_file is not None:  # the driver's private copy is done
        shutil.rmtree(study.local_file.parent, ignore_errors=True)
    local = study.local_file if study.mirror is None and study.local_file is not None else None
    return SweepOutcome(sweep_dir=sweep_dir, num_trials=len(grid), num_errors=errors,
                        study_path=str(local) if local else None, study_location=study.shown)


def record_lost_trials(sweep: SweepConfig, study: StudyLocation, recorder: ParquetRecorder) -> int:
    """Give a trials.parquet row to every Tune trial that Optuna was told FAIL for and that has
    none: one a driver lost before Tune's snapshot named it (the resume never runs it again).
    Its parameters are Optuna's, with the space's fixed values as define_by_run returns them.
    Idempotent: a second resume finds the rows. Returns how many rows it wrote."""
    rows = recorder.store.trials()
    recorded = set(rows["trial_id"]) if len(rows) else set()
    written = 0
    for t in failed_tune_trials(study):
        tune_id = t.user_attrs[TUNE_ID_ATTR]
        if tune_id in recorded:
            continue
        params = dict(t.params)
        try:
            params |= sweep.define_by_run(optuna.trial.FixedTrial(t.params)) or {}
        except Exception as e:  # noqa: BLE001 - the row is still written, with Optuna's parameters only
            print(f"  {tune_id}: could not rebuild its fixed parameters ({type(e).__name__}: {e}); its row "
                  f"holds Optuna's parameters only", file=sys.stderr, flush=True)
        recorder.record_lost(tune_id, params, t.user_attrs[FAILED_ATTR], _utc(t.datetime_start),
                             _utc(t.datetime_complete))
        written += 1
    return written


def _utc(moment: Any) -> Any:
    """Optuna's times are naive local times; Parquet's are UTC."""
    return None if moment is None else moment.astimezone(timezone.utc)


def confirmation_seeds(trials: Any, n: int) -> list[int]:
    """The n smallest seeds no search trial of the sweep used. A configuration was chosen
    because its searched run scored well; that run's seed would carry the selection's luck into
    the confirmed mean. The same n seeds for every configuration of a sweep keep the runs of
    two arms paired by seed (search/claims.py)."""
    used = {int(s) for s in trials.loc[trials["stage"] == "search", "seed"].dropna()}
    seeds: list[int] = []
    candidate = 0
    while len(seeds) < n:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def confirm_config(params: dict[str, Any]) -> TrainConfig:
    """A confirmation trial: a finished trial's full config, re-seeded, and moved to another
    test fold or held-out corpus when the confirmation repeats over folds or corpora."""
    raw = json.loads(params["config_json"])
    raw["seed"] = int(params["seed"])
    # Without --folds a configuration is re-run as designed (a nested one stays nested). A run
    # moved to test fold f is a one-fold run (validation f+1), whatever design chose it; whether
    # f took part in that choice is recorded per row (selection_exposed).
    if params.get("fold") is not None:
        raw["data"].update(fold=int(params["fold"]), folds=None, test_folds=None)
    if params.get("leave_out") is not None:
        raw["data"].update(leave_out=params["leave_out"], train_corpora=None, eval_corpora=None, folds=None,
                           test_folds=None)
    return TrainConfig.model_validate(raw)


def _exposed_by_design(data: Any, n_folds: int | None) -> list[int]:
    """The test folds a trial of this data section reports although it validated on them."""
    from ser_core.protocols import design_folds  # noqa: PLC0415

    if not n_folds or not data.folds or data.test_folds is not None:
        return []
    return list(design_folds(n_folds, data.fold, data.folds).exposed())


def exposed_confirmations(configs: list[str], folds: list[int] | None, n_folds: int | None,
                          corpora: list[str] | tuple[str, ...] | None = None) -> list[int]:
    """The test folds a confirmation of `configs` (searched trials' config_json) on `folds`
    (None: as searched) would report although the search validated on them (`corpora`: those
    prepared, which resolve a config's implicit training and evaluation corpora)."""
    from ser_core.protocols import design_folds  # noqa: PLC0415

    from .results import tests_whole_corpora  # noqa: PLC0415

    if not n_folds:
        return []
    out: set[int] = set()
    for config_json in dict.fromkeys(configs):
        d = TrainConfig.model_validate_json(config_json).data
        if tests_whole_corpora(d, corpora):
            continue
        searched = design_folds(n_folds, d.fold, d.folds, d.test_folds)
        if folds:
            out |= {f for f in folds if f in searched.val_folds}
        else:
            out |= set(searched.exposed())
    return sorted(out)


def _choose_for_confirmation(trials: Any, top: int, per: list[str] | None,
                             arms: list[dict[str, Any]] | None = None) -> Any:
    """The best trial of each of the `top` configurations by validation UA (search stage only).

    With `per` (e.g. loss_family,frontend) the `top` best of each group are taken, so every
    arm a comparison needs is confirmed, not only the overall winners; `arms` keeps only the
    groups listed (a key an arm leaves out matches any value). Within a group completed
    configurations rank first (mean validation UA);
    a group where ASHA stopped every trial is represented by its best stopped trial — ASHA
    judged it on fewer epochs, and confirmation now gives it the full budget."""
    from .leaderboard import leaderboard  # noqa: PLC0415

    search = trials[trials["stage"] == "search"]
    if arms:
        from .claims.arms import setting_equal, with_setting_columns  # noqa: PLC0415

        per = list(dict.fromkeys(k for arm in arms for k in arm))
        search = with_setting_columns(search, per)  # recipe settings an arm fixes, from config_json
    if not per:
        ranked = leaderboard(search, group_by=["config_key"])
        ranked = ranked[ranked["rank"].notna()].sort_values("rank").head(top)
        return search[search["trial_id"].isin(ranked["best_trial_id"])]
    unknown = [c for c in per if c not in search.columns]
    if unknown:
        raise SweepError(f"unknown column(s) {unknown} to choose configurations per group; e.g. loss_family,frontend")
    runs = search[search["status"].isin(["completed", "pruned"])].dropna(subset=["val_ua"])
    runs = runs.assign(_done=runs["status"].eq("completed"))
    # Per configuration: its completed runs if it has any, else its stopped ones.
    runs = runs[runs["_done"] | ~runs.groupby("config_key")["_done"].transform("any")]
    configs = runs.groupby("config_key").agg(_done=("_done", "any"), _score=("val_ua", "mean"),
                                             **{c: (c, "first") for c in per}).reset_index()
    best = runs.sort_values(["val_ua", "trial_id"], ascending=[False, True]).drop_duplicates("config_key")
    configs = configs.merge(best[["config_key", "trial_id"]], on="config_key")
    configs = configs.sort_values(["_done", "_score", "config_key"], ascending=[False, False, True])
    chosen = configs.groupby(per, sort=False, dropna=False).head(top)
    if arms:
        cells = chosen[per].to_dict("records")
        matches = [[all(setting_equal(cell[k], v) for k, v in arm.items()) for cell in cells] for arm in arms]
        missing = [arm for arm, hits in zip(arms, matches) if not any(hits)]
        if missing:
            print(f"confirm: the sweep has no trial for {', '.join('/'.join(map(str, m.values())) for m in missing)}; "
                  "those arms are not confirmed (their claims stay inconclusive)", file=sys.stderr, flush=True)
        chosen = chosen[[any(hits) for hits in zip(*matches)]] if cells else chosen
    return search[search["trial_id"].isin(chosen["trial_id"])][list(trials.columns)]


def run_confirm(results: str, sweep_name: str, *, top: int, seeds: int, address: str | None = None,
                resume: bool = False, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.25,
                max_concurrent: int = 2, corpus: Any = None, num_cpus: int | None = None,
                max_failures: int = 2, echo: bool = True, per: list[str] | None = None,
                folds: list[int] | None = None, leave_one_corpus_out: bool = False,
                arms: list[dict[str, Any]] | None = None, name: str | None = None) -> SweepOutcome:
    """Re-run the `top` configurations of a sweep (ranked by validation UA; with `per`, the top
    of each group; with `arms`, of those groups only) with `seeds` seeds each and no early stopping, as the sweep
    `<sweep_name>-confirm` (stage "confirm"): the leaderboard then shows each configuration's
    mean and 95 % interval over seeds. `folds` repeats every run on those test folds;
    `leave_one_corpus_out` repeats it with each prepared corpus held out in turn. `name`
    replaces `<sweep_name>-confirm` (several confirmations of one sweep, e.g. per protocol)."""
    from .results import read_trials  # noqa: PLC0415

    for flag, value in (("--top", top), ("--seeds", seeds)):
        if value < 1:
            raise SweepError(f"confirm {flag} must be at least 1, got {value}")

    results = results if not _is_local(results) else str(Path(results).resolve())
    trials = read_trials(_join(results, sweep_name))
    chosen = _choose_for_confirmation(trials, top, per, arms)
    if chosen.empty:
        raise SweepError(f"sweep {sweep_name!r} in {results} has no completed trial to confirm")
    configs = [json.dumps({k: v for k, v in json.loads(c).items()}, sort_keys=True) for c in chosen["config_json"]]
    name = name or f"{sweep_name}-confirm"
    run_dir = _join(results, name)
    tune_path = _join(run_dir, TUNE_DIR)
    _check_existing(tune_path, run_dir, resume, f"confirmation {name!r}")
    # the trackers the searched sweep logged to, its confirmation runs too (experiment: the confirmation's name)
    trackers = stored_logging(_read_text(ResultsStore(results, sweep_name), SETTINGS_FILE))
    if trackers is not None:
        check_installed(trackers, SweepError)
    prepared = Path(json.loads(configs[0])["data"]["prepared"])
    corpus, resources, gpu_fraction = _start(address, num_cpus, corpus, prepared, cpus_per_trial, gpus_per_trial)
    space: dict[str, Any] = {"config_json": tune.grid_search(configs),
                             "seed": tune.grid_search(confirmation_seeds(trials, seeds))}
    repeats = [f"{len(configs)} configurations", f"{seeds} seeds"]
    folds = sorted(set(folds or []))
    held_out: list[str] = []
    if folds:
        n_folds = getattr(corpus, "n_folds", None)
        bad = [f for f in folds if f < 0 or (n_folds is not None and f >= n_folds)]
        if bad:
            raise SweepError(f"--folds {bad} out of range: the prepared data has folds 0..{(n_folds or 1) - 1}")
        space["fold"] = tune.grid_search(folds)
        repeats.append(f"{len(folds)} folds")
    if leave_one_corpus_out:
        held_out = list(_corpora(corpus) or ())
        if len(held_out) < 2:
            raise SweepError(f"leave-one-corpus-out needs at least two corpora in {prepared}; it holds "
                             f"{', '.join(held_out) or 'none'}")
        space["leave_out"] = tune.grid_search(held_out)
        repeats.append(f"{len(held_out)} held-out corpora")
    check_confirmation_splits(corpus, configs, folds, held_out)
    runs = math.prod(len(v["grid_search"]) for v in space.values())
    exposed = exposed_confirmations(configs, folds, getattr(corpus, "n_folds", None), _corpora(corpus))
    if exposed and echo:
        print(f"confirm: NOT NESTED: test fold(s) {exposed} were validation folds of the search that chose these "
              "configurations, so their test figures are optimistic; those rows carry selection_exposed = true "
              "(and the claims say so). For test figures selection never saw, hold the folds out of the search "
              "([data] test_folds) and confirm without --folds", file=sys.stderr, flush=True)
    if leave_one_corpus_out and echo:
        print("confirm: configurations were chosen on the search sweep's validation split; for an unbiased "
              "estimate on held-out corpora, search with `leave_out` and confirm that sweep",
              file=sys.stderr, flush=True)
    trainable = tune.with_resources(tune.with_parameters(make_trainable(confirm_config), corpus=corpus),
                                    resources)
    with one_driver(results, run_dir, f"confirmation {name!r}" + (" (--resume)" if resume else "")):
        # source_sweep: the lineage, whatever `name` says (claims pair runs within one lineage)
        recorder = ParquetRecorder(name, confirm_config, results, gpu_fraction, stage="confirm", echo=echo,
                                   corpora=_corpora(corpus), prepared_id=_prepared_id(corpus), source_sweep=sweep_name,
                                   n_folds=getattr(corpus, "n_folds", None))
        if resume:
            tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
                run_config=_run_config(run_dir, recorder, max_failures, loggers=tracker_callbacks(
                    trackers, run_name=name, stage="confirm", source_sweep=sweep_name, to_config=confirm_config,
                    experiment=name, run_dir=run_dir)),
            )
        if echo:
            _announce(f"confirmation {name!r} ({' x '.join(repeats)})", runs, address, resources, run_dir)
        grid = tuner.fit()
        keep_latest_checkpoints(grid)
        lost = record_lost_runs(recorder, {(r.metrics or {}).get("trial_id") for r in grid})
        if lost and echo:
            print(f"{lost} run(s) lost with a driver that died are in trials.parquet as errors (their epochs "
                  "are kept; their configurations ran again)", file=sys.stderr, flush=True)
    errors = sum(1 for r in grid if r.error is not None)
    return SweepOutcome(sweep_dir=run_dir, num_trials=len(grid), num_errors=errors, study_path=None)


LOST_RUN = ("started after the last experiment snapshot of a driver that died: the restored experiment "
            "does not know it and ran its configuration again as a new trial")


def record_lost_runs(recorder: ParquetRecorder, known: set[str | None]) -> int:
    """A confirmation has no Optuna study to say which runs a killed driver lost: a lost run is
    one with epochs in epochs.parquet, no trial row, and no trial in the restored experiment
    (`known`). Its row (ParquetRecorder.record_lost) takes the configuration from its Tune
    directory's params.json. Returns how many rows it wrote."""
    store = recorder.store
    epochs, rows = store.epochs(), store.trials()
    if not len(epochs):
        return 0
    recorded = set(rows["trial_id"]) if len(rows) else set()
    lost = sorted(set(epochs["trial_id"]) - recorded - known)
    if not lost:
        return 0
    tune_dir = f"{store.root}/{TUNE_DIR}"
    names = [info.base_name for info in store.fs.get_file_info(pafs.FileSelector(tune_dir, allow_not_found=True))
             if info.type == pafs.FileType.Directory]
    for trial_id in lost:
        found = [n for n in names if f"_{trial_id}_" in n]
        params: dict[str, Any] = {}
        if found:
            with store.fs.open_input_stream(f"{tune_dir}/{found[0]}/params.json") as fh:
                params = json.loads(fh.read().decode("utf-8"))
        recorder.record_lost(trial_id, params, LOST_RUN, None, None)
    return len(lost)
