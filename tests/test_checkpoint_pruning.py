"""A driver killed at the worst moment for checkpoint deletion still resumes every trial.

The moment: Tune is writing an experiment snapshot (the one on storage is the previous one)
and a trial has registered checkpoints since that previous snapshot. With Tune's own
`num_to_keep=1`, the checkpoint the stored snapshot names is already deleted then, and the
resumed trial fails; `search.driver.checkpoints` must keep it. Real Ray, real Tune, a real sweep
through the CLI; the kill comes from a callback inside the driver, so it lands exactly there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest

from search.driver.checkpoints import _delete_older
from sweep_helpers import write_sweep

# The first run: the CLI's sweep, with one more callback after the product's own. It kills the
# driver's whole process group (the driver and its local Ray) inside Tune's snapshot, after the
# pruning callback ran, at the first snapshot that finds a trial ahead of what the previous
# snapshot named and already pruned. It pickles as a plain Callback, so the resumed run does
# not kill itself.
DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from ray import tune
    import search.driver.sweep as runner
    from search.driver import checkpoints

    MARKER = Path(sys.argv[1])

    class KillInsideSnapshot(tune.Callback):
        def __init__(self):
            self.latest = {}      # trial id -> (trial dir, newest checkpoint index)
            self.stored = {}      # what the previous snapshot named

        def __reduce__(self):
            return (tune.Callback, ())

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            path = checkpoint.path.rstrip("/")
            self.latest[trial.trial_id] = (path.rsplit("/", 1)[0], int(path.rsplit("_", 1)[1]))

        def get_state(self):
            for trial_id, (trial_dir, index) in sorted(self.latest.items()):
                on_disk = sorted(p.name for p in Path(trial_dir).glob("checkpoint_*"))
                pruned = on_disk and on_disk[0] != "checkpoint_000000"
                if trial_id in self.stored and index > self.stored[trial_id] and pruned:
                    MARKER.write_text(json.dumps({"trial_dir": trial_dir, "stored_index": self.stored[trial_id],
                                                  "latest_index": index, "on_disk": on_disk}))
                    os.killpg(os.getpgrp(), signal.SIGKILL)
            self.stored = {t: i for t, (_, i) in self.latest.items()}
            return None

    checkpoints.PRUNE_EVERY_S = 0.0  # read the stored snapshot back at every snapshot
    product_run_config = runner.run_config

    def with_killer(*args, **kwargs):
        config = product_run_config(*args, **kwargs)
        config.callbacks.append(KillInsideSnapshot())
        return config

    runner.run_config = with_killer
    from search.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.fault_tolerance
def test_driver_killed_inside_a_snapshot_resumes_every_trial(synthetic_prepared, tmp_path):
    sweep = write_sweep(tmp_path / "k.toml", synthetic_prepared, name="k", num_samples=2, max_epochs=16,
                        families=("cross_entropy",), max_train_clips=48)
    sweep.write_text(sweep.read_text().replace("grace_period = 1", "grace_period = 16"))
    results = tmp_path / "results"
    marker = tmp_path / "killed.json"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # Snapshots every second instead of every ten or more: the kill comes within seconds.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    killed = subprocess.run([sys.executable, str(driver), str(marker), "sweep", str(sweep), "--results",
                             str(results)], env=env, capture_output=True, text=True, timeout=400,
                            start_new_session=True)
    assert marker.exists(), f"the driver was never killed (exit {killed.returncode}): {killed.stderr[-3000:]}"
    at_kill = json.loads(marker.read_text())
    # The stored snapshot's checkpoint was still there, and older ones had been deleted.
    assert f"checkpoint_{at_kill['stored_index']:06d}" in at_kill["on_disk"], at_kill
    assert at_kill["latest_index"] > at_kill["stored_index"]

    done = subprocess.run([sys.executable, "-m", "search.cli", "sweep", str(sweep), "--resume", "--results",
                           str(results)], capture_output=True, text=True, timeout=400, start_new_session=True)
    assert done.returncode == 0, done.stderr[-4000:]
    trials = pd.read_parquet(results / "k" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}, trials[["trial_id", "status", "error"]]
    # After the sweep each trial keeps its newest checkpoint only, the one its row points to.
    for checkpoint in trials["checkpoint"]:
        trial_dir = Path(checkpoint).parent.parent
        assert [p.name for p in trial_dir.glob("checkpoint_*")] == [Path(checkpoint).parent.name]
        assert Path(checkpoint).exists()


# A real Tune run on a private local Ray, in its own process (a Ray started inside the test
# process would keep its auth token for the tests after it). Snapshots every 0.2 s; after
# every step of the driver, an auditor reads the stored snapshot back, as a restore would, and
# checks that each checkpoint it names exists.
AUDITED_RUN = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    import ray
    from ray import tune
    from search import checkpoints
    from search.driver.checkpoints import (SnapshotSafePruning, checkpoint_config, keep_latest_checkpoints,
                                    stored_checkpoints)

    out = Path(sys.argv[1])
    checkpoints.PRUNE_EVERY_S = 0.0

    def counting(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                start = int((Path(d) / "i").read_text()) + 1
        for i in range(start, config["steps"]):
            time.sleep(0.05)
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "i").write_text(str(i))
                tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))

    class Auditor(tune.Callback):
        def __init__(self):
            self.experiment, self.checks, self.missing, self.pruned = None, 0, [], set()

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            self.experiment = (checkpoint.filesystem, checkpoint.path.rstrip("/").rsplit("/", 2)[0])

        def on_step_end(self, iteration, trials, **info):
            if self.experiment is None:
                return
            named = stored_checkpoints(*self.experiment) or {}
            root = Path(self.experiment[1])
            for trial_dir in root.glob("*/"):
                if any(trial_dir.glob("checkpoint_*")) and not (trial_dir / "checkpoint_000000").exists():
                    self.pruned.add(trial_dir.name)
            for trial_id, index in named.items():
                self.checks += 1
                if not list(root.glob(f"*{trial_id}*/checkpoint_{index:06d}")):
                    self.missing.append(f"{trial_id}: checkpoint_{index:06d}")

    auditor = Auditor()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    grid = tune.Tuner(
        tune.with_resources(counting, {"cpu": 1}),
        param_space={"steps": tune.grid_search([40, 60])},
        run_config=tune.RunConfig(name="audit", storage_path=str(out), verbose=0,
                                  callbacks=[SnapshotSafePruning(), auditor],
                                  checkpoint_config=checkpoint_config()),
    ).fit()
    keep_latest_checkpoints(grid)
    (out / "audit.json").write_text(json.dumps({
        "checks": auditor.checks, "missing": auditor.missing, "pruned_while_running": sorted(auditor.pruned),
        "results": [[r.checkpoint.path, r.config["steps"]] for r in grid],
    }))
""")


def test_a_stored_snapshot_never_names_a_deleted_checkpoint(tmp_path):
    """With the product's checkpoint policy the stored snapshot never names a deleted
    checkpoint, old checkpoints do go while trials run, and after the run each trial keeps
    its newest only."""
    script = tmp_path / "audited_run.py"
    script.write_text(AUDITED_RUN)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0.2", "TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE": "1"}
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=300, start_new_session=True)
    assert run.returncode == 0, run.stderr[-3000:]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["checks"] > 50 and not audit["missing"], audit["missing"][:5]
    assert len(audit["pruned_while_running"]) == 2
    for path, steps in audit["results"]:
        checkpoint = Path(path)
        assert [p.name for p in checkpoint.parent.glob("checkpoint_*")] == [checkpoint.name]
        assert (checkpoint / "i").read_text() == str(steps - 1)


def test_delete_older_leaves_other_entries(tmp_path):
    for name in ("checkpoint_000001", "checkpoint_000002", "checkpoint_000010", "result.json", "checkpoint_tmp"):
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("{}")
    _delete_older(pyarrow.fs.LocalFileSystem(), str(tmp_path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000002", "checkpoint_000010",
                                                         "checkpoint_tmp", "result.json"]


class _NoDeleting(pyarrow.fs.FileSystemHandler):
    """A real pyarrow filesystem (via PyFileSystem) over the local disk that refuses deletes,
    as an object store with a transient error would."""

    def __init__(self) -> None:
        self.local = pyarrow.fs.LocalFileSystem()

    def get_type_name(self): return "no-deleting"
    def equals(self, other): return isinstance(other, _NoDeleting)
    def normalize_path(self, path): return path
    def get_file_info(self, paths): return self.local.get_file_info(paths)
    def get_file_info_selector(self, selector): return self.local.get_file_info(selector)
    def create_dir(self, path, recursive): self.local.create_dir(path, recursive=recursive)
    def delete_dir(self, path): raise OSError(f"delete refused: {path}")
    def delete_dir_contents(self, path, missing_dir_ok=False): raise OSError(f"delete refused: {path}")
    def delete_root_dir_contents(self): raise OSError("delete refused")
    def delete_file(self, path): raise OSError(f"delete refused: {path}")
    def move(self, src, dest): self.local.move(src, dest)
    def copy_file(self, src, dest): self.local.copy_file(src, dest)
    def open_input_stream(self, path): return self.local.open_input_stream(path)
    def open_input_file(self, path): return self.local.open_input_file(path)
    def open_output_stream(self, path, metadata): return self.local.open_output_stream(path)
    def open_append_stream(self, path, metadata): return self.local.open_append_stream(path)


def test_a_refused_delete_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "checkpoint_000001").mkdir()
    _delete_older(pyarrow.fs.PyFileSystem(_NoDeleting()), str(tmp_path), 5)
    assert (tmp_path / "checkpoint_000001").exists()
    assert "could not delete old checkpoints" in caplog.text and "delete refused" in caplog.text


def test_an_unreadable_stored_snapshot_deletes_nothing(tmp_path):
    from ray import tune

    from search.driver.checkpoints import SnapshotSafePruning, stored_checkpoints

    trial_dir = tmp_path / "trial_a"
    for i in range(3):
        (trial_dir / f"checkpoint_{i:06d}").mkdir(parents=True)
    (tmp_path / "experiment_state-2026-11-25_00-00-00.json").write_text('{"trial_data": [[')  # mid-copy
    assert stored_checkpoints(pyarrow.fs.LocalFileSystem(), str(tmp_path)) is None
    pruning = SnapshotSafePruning()
    pruning.on_checkpoint(0, [], type("T", (), {"trial_id": "a"})(),
                          tune.Checkpoint.from_directory(str(trial_dir / "checkpoint_000002")))
    pruning.prune()
    assert sorted(p.name for p in trial_dir.iterdir()) == [f"checkpoint_{i:06d}" for i in range(3)]


def test_tune_settings_are_defaults_a_user_can_override(monkeypatch):
    from search.driver.session import configure_tune

    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
    monkeypatch.setenv("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "0")
    configure_tune()
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "2"
    assert os.environ["TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"] == "0"
