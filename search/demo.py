"""`ser-search demo`: the whole product on one machine in a few minutes.

Generates the synthetic corpus as WAV files, prepares it like any real corpus, runs the demo
sweep (every loss family on both frontends, ASHA stopping the weak ones) on a private local
Ray, prints the leaderboard, confirms the best configuration of every arm the papers' claims
compare with a few seeds, and prints the claim verdicts. Re-running continues or reuses what
is already in --out.
"""
from __future__ import annotations

import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from ray import tune

from ser_core.corpus import PreparedCorpus
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.synthetic import generate_corpus

from .claims import claim_arms, evaluate_claims, render_claims
from .config import load_sweep
from .leaderboard import leaderboard, render
from .results import read_trials
from .runner import TUNE_DIR, run_confirm, run_sweep

# Sized for a 2-core CPU: 8 speakers x 8 emotions x 12 clips, 2.5 s segments, one noisy copy.
DEMO_SPEAKERS = 8
DEMO_CLIPS_PER_EMOTION = 12
DEMO_PREPARE = PrepareOptions(segment_seconds=2.5, augment_copies=1, augment_snr_db=20.0, n_folds=4)
DEMO_CONFIRM_SEEDS = 2  # the fewest that give a paired interval


def demo_sweep_path() -> Path:
    return Path(str(resources.files("search") / "sweeps" / "demo.toml"))


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(out: Path, *, fresh: bool = False, max_epochs: int | None = None,
             max_train_clips: int | None = None, confirm_seeds: int = DEMO_CONFIRM_SEEDS) -> int:
    """`max_epochs` and `max_train_clips` shorten every trial (the test suite runs the demo
    that way; the confirmation runs inherit both from the search trials' configs)."""
    t0 = time.perf_counter()
    out = out.resolve()
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

    resume = tune.Tuner.can_restore(str(sweep_dir / TUNE_DIR))
    _say(f"3/5 sweep {sweep.sweep.name!r}: {sweep.sweep.num_samples} trials, ASHA over "
         f"{sweep.scheduler.max_epochs} epochs" + (" (continuing the previous run)" if resume else ""))
    outcome = run_sweep(sweep, str(results), resume=resume, corpus=corpus)

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
    confirmed = run_confirm(str(results), sweep.sweep.name, top=1, seeds=confirm_seeds, arms=claim_arms(),
                            corpus=corpus, resume=resume_confirm)
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
