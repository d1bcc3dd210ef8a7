"""`ser-search demo`: the whole product on one machine in a few minutes.

Generates the synthetic corpus as WAV files, prepares it like any real corpus, runs the demo
sweep (every loss family on both frontends, ASHA stopping the weak ones) on a private local
Ray, prints the leaderboard, confirms the best configuration of every arm the papers' claims
compare with a few seeds, and prints the claim verdicts. Re-running continues or reuses what
is already in --out.
Everything it prints goes to <out>/demo.log as well (search/cli/demolog.py).
"""
from __future__ import annotations

import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import ray
from ray import tune

from ser_core.corpus import PreparedCorpus
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.synthetic import generate_corpus

from search.analysis.claims import claim_arms, evaluate_claims, render_claims
from search.analysis.confirmation import plan_confirmation
from search.analysis.leaderboard import leaderboard, render
from search.definition import load_sweep
from search.driver import connect, run_confirm, run_sweep
from search.results import TUNE_DIR, read_trials

from .demolog import SESSION_PREFIX, DemoLog

# Sized for a 2-core CPU: 8 speakers x 8 emotions x 12 clips, 2.5 s segments, one noisy copy.
DEMO_SPEAKERS = 8
DEMO_CLIPS_PER_EMOTION = 12
DEMO_PREPARE = PrepareOptions(segment_seconds=2.5, augment_copies=1, augment_snr_db=20.0, n_folds=4)
DEMO_CONFIRM_SEEDS = 2  # the fewest that give a paired interval


def demo_sweep_path() -> Path:
    return Path(str(resources.files("search") / "sweeps" / "demo.toml"))


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


class DemoStopped(BaseException):
    """SIGTERM reached the demo: it was stopped from outside (a timeout, a scheduler), which is
    not a failure of the demo or of Ray. A BaseException so that no `except Exception` in Tune
    swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise DemoStopped(signum)


def _catch_sigterm() -> None:
    """Turn SIGTERM into DemoStopped. Called again once Ray is up: the driver's core worker
    installs absl's failure signal handler for SIGTERM, which prints a native stack trace
    ('logging.cc:474: *** SIGTERM received') and ends the process with status 134, an abort's
    (measured with Ray 2.60), before any cleanup: a plain timeout then reads like a Ray crash,
    and the demo never says where its logs are."""
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _stop)


def _ray_session_line() -> str:
    node = getattr(ray._private.worker, "_global_node", None)  # no public API names the session directory
    logs = node.get_logs_dir_path() if node is not None else "(unknown: Ray was started elsewhere)"
    return f"{SESSION_PREFIX}{logs} (driver pid {os.getpid()})"


EARLY_BOARD_AFTER = 6  # finished trials before the demo shows a first ranked table (the sweep goes on)


class EarlyBoard(threading.Thread):
    """Prints a first ranked table while the sweep still runs, once `after` trials have
    finished: a newcomer sees what the demo is for within about two minutes, not after the whole
    sweep. It reads the trials as any reader would (search.results.read_trials)."""

    def __init__(self, sweep_dir: Path, total: int, after: int = EARLY_BOARD_AFTER) -> None:
        super().__init__(name="demo-early-board", daemon=True)
        self.trials_file, self.total, self.after = sweep_dir / "trials.parquet", total, after
        self.done = threading.Event()
        self.shown = False

    def run(self) -> None:
        while not self.done.wait(2.0):
            try:  # the table's file and the parts the recorder appends (search.results.parts)
                trials = read_trials(self.trials_file.parent)
            except Exception:  # noqa: BLE001 - a table being replaced: try again at the next tick
                continue
            finished = int(trials["status"].isin(["completed", "pruned"]).sum())
            if finished >= self.after:
                board = render(leaderboard(trials, group_by=["loss_family", "frontend"]), "table")
                print(f"\n[demo] ranked so far ({finished} of {self.total} trials finished; the sweep goes on, "
                      f"the final table follows):\n{board}\n", flush=True)
                self.shown = True
                return


def run_demo(out: Path, *, fresh: bool = False, max_epochs: int | None = None,
             max_train_clips: int | None = None, confirm_seeds: int = DEMO_CONFIRM_SEEDS) -> int:
    """Run the demo, keeping everything it and Ray's driver print in `<out>/demo.log`
    (appended, so a continued run keeps the failed run's log; search/cli/demolog.py says how).
    Returns the exit status: 0, 1 (a trial errored or a stage raised), or 128 + signal when
    SIGTERM stopped it. A Ray it started is shut down before the log closes, so a failure at
    shutdown is in the log too.

    `max_epochs` and `max_train_clips` shorten every trial (the test suite runs the demo
    that way; the confirmation runs inherit both from the search trials' configs)."""
    out = out.resolve()
    log = DemoLog(out).open()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    _say(f"log: {log.path} (this run started {started}; pid {os.getpid()}; {os.cpu_count()} CPUs, "
         f"load average {load}; Ray {ray.__version__}, Python {platform.python_version()})")
    ray_was_up = ray.is_initialized()
    previous = signal.getsignal(signal.SIGTERM) if sys.platform != "win32" else None
    _catch_sigterm()
    code = 1
    try:
        code = _stages(out, fresh=fresh, max_epochs=max_epochs, max_train_clips=max_train_clips,
                       confirm_seeds=confirm_seeds)
    except DemoStopped as stop:
        code = 128 + stop.signum
        _say(f"stopped by {signal.Signals(stop.signum).name} from outside (e.g. a timeout), not by a Ray "
             f"failure; run the demo again to continue from {out}")
    except Exception:  # noqa: BLE001 - a stage failed: into the log with its traceback, then exit 1
        traceback.print_exc()
    except KeyboardInterrupt:
        code = 130  # what the command line returns for it; the log records the status
        raise
    finally:
        try:
            if not ray_was_up and ray.is_initialized():
                ray.shutdown()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            log.close(code)  # on a failure the copier adds the Ray log tails and the FAILED line
    return code


def _stages(out: Path, *, fresh: bool, max_epochs: int | None, max_train_clips: int | None,
            confirm_seeds: int) -> int:
    t0 = time.perf_counter()
    corpus_dir, prepared, results = out / "corpus", out / "prepared", out / "results"
    sweep = load_sweep(demo_sweep_path()).with_prepared(prepared)
    if max_epochs is not None:
        scheduler = sweep.scheduler.model_copy(update={"max_epochs": max_epochs,
                                                       "grace_period": min(sweep.scheduler.grace_period, max_epochs)})
        sweep = sweep.model_copy(update={"scheduler": scheduler})
    if max_train_clips is not None:
        sweep = sweep.model_copy(update={"data": sweep.data.model_copy(update={"max_train_clips": max_train_clips})})
    sweep_dir = results / sweep.sweep.name
    confirm_dir = results / f"{sweep.sweep.name}-confirm"
    if fresh:
        for d in (sweep_dir, confirm_dir):
            if d.exists():
                shutil.rmtree(d)

    _say(f"1/5 synthetic corpus -> {corpus_dir}")
    generate_corpus(corpus_dir, n_speakers=DEMO_SPEAKERS, clips_per_emotion=DEMO_CLIPS_PER_EMOTION,
                    seed=0, progress=True)

    if (prepared / "protocol.json").exists() and not fresh:
        _say(f"2/5 prepared corpus already in {prepared}, reusing it")
    else:
        _say(f"2/5 preparing -> {prepared}")
        report = prepare_corpora({"synthetic": corpus_dir}, prepared, DEMO_PREPARE, progress=True, overwrite=True)
        print(report.summary(), flush=True)
    corpus = PreparedCorpus.load(prepared).in_memory()

    connect(None)  # what run_sweep does first; here so that the log names Ray's session directory
    _catch_sigterm()
    print(_ray_session_line(), flush=True)  # already '[demo] ...': the log copier looks for this line
    resume = tune.Tuner.can_restore(str(sweep_dir / TUNE_DIR))
    _say(f"3/5 sweep {sweep.sweep.name!r}: {sweep.sweep.num_samples} trials, ASHA over "
         f"{sweep.scheduler.max_epochs} epochs" + (" (continuing the previous run)" if resume else ""))
    early = EarlyBoard(sweep_dir, sweep.sweep.num_samples)
    early.start()
    try:
        outcome = run_sweep(sweep, str(results), resume=resume, corpus=corpus)
    finally:
        early.done.set()
        early.join()

    _say("4/5 leaderboard (ranked by validation UA; test shown beside it)")
    trials = read_trials(outcome.sweep_dir)
    print(render(leaderboard(trials, group_by=["loss_family", "frontend"]), "table"))
    print()
    board = leaderboard(trials)
    print(f"top configurations (of {len(board)}):")
    print(render(board.head(5), "table"))
    counts = trials["status"].value_counts().to_dict()
    print()

    resume_confirm = tune.Tuner.can_restore(str(confirm_dir / TUNE_DIR))
    _say(f"5/5 confirming the best configuration of each arm the claims compare with {confirm_seeds} seeds, "
         "then the claim verdicts" + (" (continuing the previous run)" if resume_confirm else ""))
    plan = plan_confirmation(str(results), sweep.sweep.name, top=1, seeds=confirm_seeds, arms=claim_arms())
    confirmed = run_confirm(str(results), plan, corpus=corpus, resume=resume_confirm)
    print(render_claims(evaluate_claims(read_trials(results)), "table"))
    print("(a tiny model on a tiny synthetic corpus with 2 seeds: the verdicts show the machinery, "
          "not the papers' answer)")
    print()
    _say(f"search trials: {counts}; confirmation runs: {confirmed.num_trials}; "
         f"done in {time.perf_counter() - t0:.0f} s")
    _say(f"results: {outcome.sweep_dir}/ and {confirmed.sweep_dir}/ (trials/epochs/confusion .parquet)")
    _say(f"Optuna study: {outcome.study_path}  |  again: ser-search leaderboard {results}; "
         f"ser-search claims {results}")
    return 0 if outcome.num_errors == 0 and confirmed.num_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(run_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")))
