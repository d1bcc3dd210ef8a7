"""Confirmation runs: configurations a search chose (search.analysis.confirmation says which
and with which seeds), re-run with fresh seeds and the full epoch budget, optionally on other
test folds or with each corpus held out, as the run `<sweep>-confirm` (stage "confirm").
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from ser_core.config import TrainConfig

from search.definition import ConfirmationPlan, check_installed, stored_logging
from search.recording.recorder import ParquetRecorder
from search.recording.trackers import tracker_callbacks
from search.results.location import SETTINGS_FILE, TUNE_DIR, is_uri, join, unbind_results
from search.results import ResultsStore
from search.worker.trainable import make_trainable

from .checkpoints import keep_latest_checkpoints
from .relocation import RelocatingVariantGenerator
from .run_record import check_existing, read_text
from .session import (SweepError, SweepOutcome, announce, corpora_of, one_driver, prepared_id_of, restore,
                      run_config, start)
from .sweep import check_protocol


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


def exposed_confirmations(configs: list[str], folds: list[int] | None, n_folds: int | None,
                          corpora: list[str] | tuple[str, ...] | None = None) -> list[int]:
    """The test folds a confirmation of `configs` (searched trials' config_json) on `folds`
    (None: as searched) would report although the search validated on them (`corpora`: those
    prepared, which resolve a config's implicit training and evaluation corpora)."""
    from ser_core.protocols import design_folds  # noqa: PLC0415

    from search.results import tests_whole_corpora  # noqa: PLC0415

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


def run_confirm(results: str, plan: ConfirmationPlan, *, address: str | None = None,
                resume: bool = False, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.25,
                max_concurrent: int = 2, corpus: Any = None, num_cpus: int | None = None,
                max_failures: int = 2, echo: bool = True, folds: list[int] | None = None,
                leave_one_corpus_out: bool = False, name: str | None = None) -> SweepOutcome:
    """Run every configuration of `plan` with every seed of it and no early stopping, as the run
    `<plan.sweep>-confirm` (stage "confirm"): the leaderboard then shows each configuration's
    mean and 95 % interval over seeds. `folds` repeats every run on those test folds;
    `leave_one_corpus_out` repeats it with each prepared corpus held out in turn. `name`
    replaces `<plan.sweep>-confirm` (several confirmations of one sweep, e.g. per protocol)."""
    results = results if is_uri(results) else str(Path(results).resolve())
    sweep_name, configs = plan.sweep, list(plan.configs)
    if not configs or not plan.seeds:
        raise SweepError(f"confirmation of {sweep_name!r}: the plan names no configuration or no seed")
    name = name or f"{sweep_name}-confirm"
    run_dir = join(results, name)
    tune_path = join(run_dir, TUNE_DIR)
    check_existing(tune_path, run_dir, resume, f"confirmation {name!r}")
    # the trackers the searched sweep logged to, its confirmation runs too (experiment: the confirmation's name)
    trackers = stored_logging(read_text(ResultsStore(results, sweep_name), SETTINGS_FILE))
    if trackers is not None:
        check_installed(trackers, SweepError)
    prepared = Path(json.loads(configs[0])["data"]["prepared"])
    corpus, resources, gpu_fraction = start(address, num_cpus, corpus, prepared, cpus_per_trial, gpus_per_trial)
    space: dict[str, Any] = {"config_json": tune.grid_search(configs),
                             "seed": tune.grid_search(list(plan.seeds))}
    repeats = [f"{len(configs)} configurations", f"{len(plan.seeds)} seeds"]
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
        held_out = list(corpora_of(corpus) or ())
        if len(held_out) < 2:
            raise SweepError(f"leave-one-corpus-out needs at least two corpora in {prepared}; it holds "
                             f"{', '.join(held_out) or 'none'}")
        space["leave_out"] = tune.grid_search(held_out)
        repeats.append(f"{len(held_out)} held-out corpora")
    check_confirmation_splits(corpus, configs, folds, held_out)
    runs = math.prod(len(v["grid_search"]) for v in space.values())
    exposed = exposed_confirmations(configs, folds, getattr(corpus, "n_folds", None), corpora_of(corpus))
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
                                   corpora=corpora_of(corpus), prepared_id=prepared_id_of(corpus), source_sweep=sweep_name,
                                   n_folds=getattr(corpus, "n_folds", None))
        if resume:
            ResultsStore(results, name).compact()  # the parts a killed driver left become the tables' files
            tuner = restore(name, results, run_dir, trainable, resume_errored=True, echo=echo)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                # ours: its restored grid creates the remaining runs where the run is restored from
                tune_config=tune.TuneConfig(search_alg=RelocatingVariantGenerator(max_concurrent=max_concurrent)),
                run_config=run_config(run_dir, recorder, max_failures, loggers=tracker_callbacks(
                    trackers, run_name=name, stage="confirm", source_sweep=sweep_name, to_config=confirm_config,
                    experiment=name, run_dir=run_dir, n_folds=getattr(corpus, "n_folds", None))),
            )
        if echo:
            announce(f"confirmation {name!r} ({' x '.join(repeats)})", runs, address, resources, run_dir)
        try:
            grid = tuner.fit()
            keep_latest_checkpoints(grid)
            lost = record_lost_runs(recorder, {(r.metrics or {}).get("trial_id") for r in grid})
            recorder.close()
            if lost and echo:
                print(f"{lost} run(s) lost with a driver that died are in trials.parquet as errors (their epochs "
                      "are kept; their configurations ran again)", file=sys.stderr, flush=True)
            ResultsStore(results, name).compact()  # each table one file again, as other tools expect
        finally:
            unbind_results(name)
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
