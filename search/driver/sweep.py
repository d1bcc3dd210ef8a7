"""Runs one sweep as a Ray Tune experiment: OptunaSearch (seeded TPE, define-by-run space)
+ ASHA, per-trial CPU/GPU resources, retries, checkpoints, and resume with Tuner.restore.
The directory it writes is drawn in search.results.location.
"""
from __future__ import annotations

import shutil
import sys
from datetime import timezone
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from search.definition import SweepConfig, check_installed, tune_metric
from search.recording.recorder import ParquetRecorder, moved_from
from search.recording.trackers import tracker_callbacks
from search.results.location import TUNE_DIR, is_uri, join, unbind_results
from search.results import ResultsStore
from search.results.study_record import FAILED_ATTR, FINISHED_ATTR, RESULTS_ATTR, TUNE_ID_ATTR
from search.worker.trainable import make_trainable

from .asha import AshaRungState
from .checkpoints import keep_latest_checkpoints
from .mo_asha import MultiObjectiveASHA, RungState
from .run_record import check_existing, check_resume_unchanged, open_study, record_start
from .searcher import PruningAwareOptunaSearch, SweepSearchGenerator
from .session import (SweepError, SweepOutcome, announce, corpora_of, one_driver, prepared_id_of, restore,
                      run_config, start)
from .study import StudyLocation, StudyMirror, failed_tune_trials, finish_study, unbind
from .warm_start import WarmStart, add_warm_start, prepare_warm_start

METRIC = "best_val_ua"


def run_sweep(sweep: SweepConfig, results: str, *, address: str | None = None, resume: bool = False,
              corpus: Any = None, num_cpus: int | None = None, max_failures: int = 2,
              echo: bool = True) -> SweepOutcome:
    """Run (or with resume=True continue) `sweep`, writing results under `results`."""
    name = sweep.sweep.name
    results = results if is_uri(results) else str(Path(results).resolve())
    sweep_dir = join(results, name)
    tune_path = join(sweep_dir, TUNE_DIR)
    check_existing(tune_path, sweep_dir, resume, f"sweep {name!r}")
    check_installed(sweep.logging, SweepError)
    # the earlier studies are read and checked before anything is written or Ray starts
    warm = prepare_warm_start(sweep, sweep_dir) if sweep.sweep.warm_start and not resume else WarmStart()
    if corpus is None:  # before Ray starts: a bad (or, on resume, another) prepared corpus fails first
        from ser_core.corpus import PreparedCorpus  # noqa: PLC0415 - only the driver loads it
        corpus = PreparedCorpus.load(sweep.data.prepared).in_memory()
    with one_driver(results, sweep_dir, f"sweep {name!r}" + (" (--resume)" if resume else "")):
        store = ResultsStore(results, name)
        if resume:
            check_resume_unchanged(store, sweep, prepared_id_of(corpus))
            store.compact()  # the parts a killed driver left become the tables' files
        study = open_study(sweep_dir, name, sweep.sweep.optuna_storage, resume)
        try:
            if warm.trials:  # once, at the start: a resume finds them in the study
                add_warm_start(study, warm)
            if echo:
                for note in warm.notes:
                    print(note, file=sys.stderr, flush=True)
            return _run_study(sweep, results, sweep_dir, store, study, address=address, resume=resume,
                              corpus=corpus, num_cpus=num_cpus, max_failures=max_failures, echo=echo)
        finally:
            unbind(name)
            unbind_results(name)


def _objectives(sweep: SweepConfig) -> dict[str, Any]:
    """metric= and mode= for the searcher: best validation UA, or one Tune result key and
    sense per `[sweep] objectives` entry (search.definition.tune_metric)."""
    objectives = sweep.sweep.objective_list()
    if not objectives:
        return {"metric": METRIC, "mode": "max"}
    return {"metric": [tune_metric(o.name) for o in objectives], "mode": [o.sense for o in objectives]}


def _sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    """Seeded TPE (multi-objective TPE too), or NSGA-II where a multi-objective sweep asks for it."""
    if sweep.sweep.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=sweep.sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.sweep.seed)


def _run_study(sweep: SweepConfig, results: str, sweep_dir: str, store: ResultsStore,
               study: StudyLocation, *, address: str | None, resume: bool, corpus: Any, num_cpus: int | None,
               max_failures: int, echo: bool) -> SweepOutcome:
    name = sweep.sweep.name
    corpus, resources, gpu_fraction = start(address, num_cpus, corpus, sweep.data.prepared,
                                             sweep.resources.cpus_per_trial, sweep.resources.gpus_per_trial)
    check_protocol(corpus, sweep.data)
    exposed = exposed_by_design(sweep.data, getattr(corpus, "n_folds", None))
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
                               corpora=corpora_of(corpus), prepared_id=prepared_id_of(corpus), source_sweep=name,
                               n_folds=getattr(corpus, "n_folds", None))
    if resume:
        # Errored trials are retried only while their Optuna trials are open (a driver died before
        # the sweep ended): once a sweep has ended they are FAIL in Optuna, which cannot be undone.
        finished = bool(study.load().user_attrs.get(FINISHED_ATTR))
        tuner = restore(name, results, sweep_dir, trainable, resume_errored=not finished, echo=echo)
        if moved_from(name) is not None:
            study.load().set_user_attr(RESULTS_ATTR, sweep_dir)  # the study now belongs to the new place
    else:
        record_start(store, sweep, prepared_id_of(corpus))
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
            run_config=run_config(sweep_dir, recorder, max_failures, extra=extra, loggers=tracker_callbacks(
                sweep.logging, run_name=name, stage="search", source_sweep=name, to_config=sweep.trial_config,
                run_dir=sweep_dir, n_folds=getattr(corpus, "n_folds", None))),
        )
    if echo:
        announce(f"sweep {name!r}", sweep.sweep.num_samples, address, resources, sweep_dir)
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
    recorder.close()
    if lost and echo:
        print(f"{lost} trial(s) lost with a driver that died are in trials.parquet as errors (their epochs "
              "are kept; Optuna was told FAIL)", file=sys.stderr, flush=True)
    store.compact()  # each table one file again, as other tools expect
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


def exposed_by_design(data: Any, n_folds: int | None) -> list[int]:
    """The test folds a trial of this data section reports although it validated on them."""
    from ser_core.protocols import design_folds  # noqa: PLC0415

    if not n_folds or not data.folds or data.test_folds is not None:
        return []
    return list(design_folds(n_folds, data.fold, data.folds).exposed())
