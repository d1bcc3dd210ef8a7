"""`ser-search demo`: the whole product on one machine in a few minutes.

Generates the synthetic corpus as WAV files, prepares it like any real corpus, runs the demo
sweep (every loss family on both frontends, ASHA stopping the weak ones) on a private local
Ray, and prints the leaderboard. Re-running continues or reuses what is already in --out.
"""
from __future__ import annotations

import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from ser_core.corpus import PreparedCorpus
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.synthetic import generate_corpus

from .config import load_sweep
from .leaderboard import leaderboard, render
from .results import read_trials
from .runner import TUNE_DIR, run_sweep

# Sized for a 2-core CPU: 8 speakers x 8 emotions x 12 clips, 2.5 s segments, one noisy copy.
DEMO_SPEAKERS = 8
DEMO_CLIPS_PER_EMOTION = 12
DEMO_PREPARE = PrepareOptions(segment_seconds=2.5, augment_copies=1, augment_snr_db=20.0, n_folds=4)


def demo_sweep_path() -> Path:
    return Path(str(resources.files("search") / "sweeps" / "demo.toml"))


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(out: Path, *, fresh: bool = False) -> int:
    t0 = time.perf_counter()
    out = out.resolve()
    corpus_dir, prepared, results = out / "corpus", out / "prepared", out / "results"
    sweep = load_sweep(demo_sweep_path()).with_prepared(prepared)
    sweep_dir = results / sweep.sweep.name
    if fresh and sweep_dir.exists():
        shutil.rmtree(sweep_dir)

    _say(f"1/4 synthetic corpus -> {corpus_dir}")
    generate_corpus(corpus_dir, n_speakers=DEMO_SPEAKERS, clips_per_emotion=DEMO_CLIPS_PER_EMOTION,
                    seed=0, progress=True)

    if (prepared / "protocol.json").exists() and not fresh:
        _say(f"2/4 prepared corpus already in {prepared}, reusing it")
    else:
        _say(f"2/4 preparing -> {prepared}")
        report = prepare_corpora({"synthetic": corpus_dir}, prepared, DEMO_PREPARE, progress=True, overwrite=True)
        print(report.summary(), flush=True)
    corpus = PreparedCorpus.load(prepared).in_memory()

    resume = (sweep_dir / TUNE_DIR).exists()
    _say(f"3/4 sweep {sweep.sweep.name!r}: {sweep.sweep.num_samples} trials, ASHA over "
         f"{sweep.scheduler.max_epochs} epochs" + (" (continuing the previous run)" if resume else ""))
    outcome = run_sweep(sweep, str(results), resume=resume, corpus=corpus)

    _say("4/4 leaderboard (ranked by validation UA; test shown beside it)")
    trials = read_trials(outcome.sweep_dir)
    print(render(leaderboard(trials, group_by=["loss_family", "frontend"]), "table"))
    print()
    board = leaderboard(trials)
    print(f"top configurations (of {len(board)}):")
    print(render(board.head(5), "table"))
    counts = trials["status"].value_counts().to_dict()
    print()
    _say(f"trials: {counts}; done in {time.perf_counter() - t0:.0f} s")
    _say(f"results: {outcome.sweep_dir}/trials.parquet, epochs.parquet, confusion.parquet")
    _say(f"Optuna study: {outcome.study_path}  |  again: ser-search leaderboard {results}")
    return 0 if outcome.num_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(run_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")))
