"""Interrupt a real sweep (kill the driver and its local Ray) and finish it with --resume:
finished trials are not re-run, none is lost or duplicated, Optuna's study stays consistent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd

from sweep_helpers import write_sweep

NUM_SAMPLES = 8


def _sweep_cmd(sweep: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "search.cli", "sweep", str(sweep), "--results", str(results), *extra]


def test_killed_sweep_resumes_without_losing_or_repeating_trials(synthetic_prepared, tmp_path):
    sweep = write_sweep(tmp_path / "r.toml", synthetic_prepared, name="r", num_samples=NUM_SAMPLES,
                        max_epochs=3)
    results = tmp_path / "results"
    trials_file = results / "r" / "trials.parquet"
    proc = subprocess.Popen(_sweep_cmd(sweep, results), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            if trials_file.exists() and len(pd.read_parquet(trials_file)) >= 3:
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        else:
            raise AssertionError("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait(timeout=30)
    before = pd.read_parquet(trials_file).set_index("trial_id")
    assert 3 <= len(before) < NUM_SAMPLES

    # without --resume the existing sweep is refused, not overwritten
    refused = subprocess.run(_sweep_cmd(sweep, results), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    done = subprocess.run(_sweep_cmd(sweep, results, "--resume"), capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    after = pd.read_parquet(trials_file)
    assert after["trial_id"].is_unique
    assert len(after) == NUM_SAMPLES, after[["trial_id", "status"]]
    assert set(after["status"]) <= {"completed", "pruned"}
    after = after.set_index("trial_id")
    for trial_id, row in before.iterrows():  # finished before the kill: not run again
        assert after.loc[trial_id, "finished_at"] == row["finished_at"]
        assert after.loc[trial_id, "status"] == row["status"]
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{results / 'r' / 'optuna.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == NUM_SAMPLES
