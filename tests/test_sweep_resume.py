"""Interrupt a real sweep (kill the driver and its local Ray) and finish it with --resume:
finished trials are not re-run, none is lost or duplicated, Optuna's study stays consistent."""
from __future__ import annotations

import pytest

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.recording.recorder import LOST_PREFIX
from search.driver.study import FAILED_ATTR, TUNE_ID_ATTR
from sweep_helpers import failed_trials_by_tune_id, write_sweep

pytestmark = pytest.mark.fault_tolerance  # kills and resumes: .ci/run's second tier (docs/testing.md)

NUM_SAMPLES = 8


def _sweep_cmd(sweep: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "search.cli", "sweep", str(sweep), "--results", str(results), *extra]


def _kill_after(sweep: Path, results: Path, trials_file: Path, rows: int) -> None:
    """Run `ser-search sweep` and SIGKILL it (the driver and the local Ray it started) once
    trials_file holds `rows` rows."""
    proc = subprocess.Popen(_sweep_cmd(sweep, results), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            if trials_file.exists() and len(pd.read_parquet(trials_file)) >= rows:
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        else:
            raise AssertionError("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_killed_sweep_resumes_without_losing_or_repeating_trials(synthetic_prepared, tmp_path):
    sweep = write_sweep(tmp_path / "r.toml", synthetic_prepared, name="r", num_samples=NUM_SAMPLES,
                        max_epochs=3)
    results = tmp_path / "results"
    trials_file = results / "r" / "trials.parquet"
    _kill_after(sweep, results, trials_file, rows=3)
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
    lost_rows = after[after["error"].fillna("").str.startswith(LOST_PREFIX)]
    assert set(lost_rows["status"]) <= {"error"}
    ran = after.drop(lost_rows.index)
    assert len(ran) == NUM_SAMPLES, after[["trial_id", "status", "error"]]
    assert set(ran["status"]) <= {"completed", "pruned"}
    after = after.set_index("trial_id")
    for trial_id, row in before.iterrows():  # finished before the kill: not run again
        assert after.loc[trial_id, "finished_at"] == row["finished_at"]
        assert after.loc[trial_id, "status"] == row["status"]
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{results / 'r' / 'optuna.db'}")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == NUM_SAMPLES
    # a trial asked after the last snapshot (the driver died within ~2 s of asking it) is told FAIL,
    # and its row says it was lost (whether the kill lands there is a matter of timing)
    others = [t for t in study.trials if t not in finished]
    assert all(t.state == TrialState.FAIL and FAILED_ATTR in t.user_attrs for t in others)
    failed, _never_ran = failed_trials_by_tune_id(study)  # never_ran: killed between Optuna's ask and Tune
    assert set(lost_rows["trial_id"]) == failed
    assert set(pd.read_parquet(results / "r" / "epochs.parquet")["trial_id"]) <= set(after.index)


def test_resume_after_losing_trials_the_snapshot_never_saw(synthetic_prepared, tmp_path):
    """Results on an object store (a real pyarrow filesystem behind a file:// URI) and a driver
    killed long after Tune's last experiment snapshot (forced: one snapshot, at the start), so
    Optuna asked trials Tune cannot resume. The study is stored with the results, never in
    ~/.cache; a changed sweep file is refused, a re-commented one resumes; afterwards no Optuna
    trial is RUNNING, every cover_choices point has run, and Optuna and Parquet agree on every
    trial's state."""
    families = ("cross_entropy", "bce")
    sweep = write_sweep(tmp_path / "lost.toml", synthetic_prepared, name="lost", num_samples=6, max_epochs=2,
                        families=families)
    original = sweep.read_text()
    results_dir = tmp_path / "bucket" / "results"
    results = f"file://{results_dir}"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    trials_file = results_dir / "lost" / "trials.parquet"
    stored_study = results_dir / "lost" / "optuna.db"
    proc = subprocess.Popen(_sweep_cmd(sweep, results), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**env, "TUNE_GLOBAL_CHECKPOINT_S": "3600"})

    def asked_after_a_trial_ended() -> bool:
        """The stored study holds a RUNNING trial asked after some trial ended, i.e. after the one
        snapshot (taken before any trial ran), and no stored experiment snapshot names it (Tune
        may still write one, e.g. at a trial's end): Tune will not know it."""
        if not stored_study.exists():
            return False
        probe = tmp_path / "probe.db"
        shutil.copyfile(stored_study, probe)
        trials = optuna.load_study(study_name="lost", storage=f"sqlite:///{probe}").trials
        ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        snapshots = "".join(f.read_text() for f in (results_dir / "lost" / "tune").glob("experiment_state*.json"))
        return bool(ended) and any(t.state == TrialState.RUNNING and t.datetime_start > min(ended)
                                   and t.user_attrs.get(TUNE_ID_ATTR, "?") not in snapshots for t in trials)

    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            if asked_after_a_trial_ended():
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        else:
            raise AssertionError("no trial was asked after another ended in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert stored_study.exists()  # copied to the results while the sweep ran

    # a changed sweep file is refused before anything runs, naming the changed keys
    sweep.write_text(original.replace("max_epochs = 2", "max_epochs = 3").replace("d_model = 32", "d_model = 64"))
    refused = subprocess.run(_sweep_cmd(sweep, results, "--resume"), capture_output=True, text=True, timeout=120,
                             env=env)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "scheduler.max_epochs" in refused.stderr and "base.model.d_model" in refused.stderr

    sweep.write_text("# the same sweep, commented after the crash\n" + original)
    done = subprocess.run(_sweep_cmd(sweep, results, "--resume"), capture_output=True, text=True, timeout=600,
                          start_new_session=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (results_dir / "lost" / "sweep.toml").read_text() == original  # never rewritten
    assert not (home / ".cache").exists()  # the study was never kept in a per-machine cache

    study = optuna.load_study(study_name="lost", storage=f"sqlite:///{stored_study}")
    assert not [t.number for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = [t for t in study.trials if FAILED_ATTR in t.user_attrs]
    # the driver died with trials running (the message holds what a rare miss needs to be understood)
    assert lost and all(t.state == TrialState.FAIL for t in lost), (
        [(t.number, t.state.name, t.user_attrs.get(TUNE_ID_ATTR), str(t.datetime_start)) for t in study.trials],
        sorted(p.name for p in (results_dir / "lost" / "tune").glob("experiment_state*.json")), done.stderr[-3000:])
    rows = pd.read_parquet(trials_file)
    assert rows["trial_id"].is_unique
    # Parquet and Optuna name the same trials: a lost one too has its row, an error saying so,
    # over the epochs it had reported (without it they would belong to no row)
    state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "error": TrialState.FAIL}
    _, never_ran = failed_trials_by_tune_id(study)  # killed between Optuna's ask and Tune: no row
    by_tune_id = {t.user_attrs[TUNE_ID_ATTR]: t for t in study.trials if t not in never_ran}
    assert set(rows["trial_id"]) == set(by_tune_id)
    for _, row in rows.iterrows():
        assert by_tune_id[row["trial_id"]].state == state[row["status"]], row["trial_id"]
    lost_rows = rows.set_index("trial_id").loc[[t.user_attrs[TUNE_ID_ATTR] for t in lost if t not in never_ran]]
    assert (lost_rows["status"] == "error").all() and lost_rows["error"].str.startswith(LOST_PREFIX).all()
    epochs = pd.read_parquet(results_dir / "lost" / "epochs.parquet")
    assert set(epochs["trial_id"]) <= set(rows["trial_id"])
    for trial_id, row in lost_rows.iterrows():
        mine = epochs[epochs["trial_id"] == trial_id]
        if len(mine):
            assert row["epochs_run"] == mine["epoch"].max() and row["val_ua"] == mine["val_ua"].max()
        else:
            assert pd.isna(row["epochs_run"])
    ran = {(r.loss_family, r.frontend) for r in rows.itertuples() if r.status in ("completed", "pruned")}
    assert ran == {(f, fe) for f in families for fe in ("mel", "stft")}  # every cover point ran


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time: what 'untouched' compares."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_a_copied_sweep_resumes_where_results_says_and_never_touches_the_original(synthetic_prepared, tmp_path):
    """A head node died; its results were copied elsewhere (or the shared disk is mounted at
    another path) and the sweep is resumed there with --results NEW --resume. Every trial's row,
    Tune directory and checkpoint lands in the new place; the original is not written at all,
    and the resume says in one line that the sweep was first run elsewhere."""
    sweep = write_sweep(tmp_path / "m.toml", synthetic_prepared, name="m", num_samples=NUM_SAMPLES, max_epochs=3)
    old = tmp_path / "old" / "results"
    _kill_after(sweep, old, old / "m" / "trials.parquet", rows=2)
    # the killed cluster's trial processes may finish an epoch's checkpoint after the driver died:
    # that is the old driver's writing, not the resume's; wait until the old tree is still
    settled, still = _tree(old), 0
    while still < 3:
        time.sleep(1)
        now = _tree(old)
        still = still + 1 if now == settled else 0
        settled = now
    new = tmp_path / "new" / "results"
    shutil.copytree(old, new, symlinks=True)
    untouched = _tree(old)
    before = pd.read_parquet(new / "m" / "trials.parquet")

    done = subprocess.run(_sweep_cmd(sweep, new, "--resume"), capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tree(old) == untouched, "the resume wrote into the directory the sweep was first run in"
    moved = [ln for ln in done.stderr.splitlines() if str(old / "m") in ln]
    assert len(moved) == 1 and str(new / "m") in moved[0], done.stderr[-3000:]
    assert "FileNotFoundError" not in done.stderr

    after = pd.read_parquet(new / "m" / "trials.parquet")
    assert after["trial_id"].is_unique
    ran = after[~after["error"].fillna("").str.startswith(LOST_PREFIX)]
    assert len(ran) == NUM_SAMPLES and set(ran["status"]) <= {"completed", "pruned"}
    assert set(before["trial_id"]) <= set(after["trial_id"])
    for path in after["checkpoint"].dropna():  # every completed trial's checkpoint is in the new place
        assert path.startswith(str(new / "m")) and Path(path).exists(), path
    tune_dirs = {p.name for p in (new / "m" / "tune").iterdir() if p.is_dir()}
    for trial_id in ran["trial_id"]:
        assert any(trial_id in d for d in tune_dirs), trial_id
