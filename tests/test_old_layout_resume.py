"""A sweep started before `search/` was laid out by data flow (issue 23) still resumes: Ray
Tune's snapshot pickles the searcher, scheduler state and callbacks by their old module paths
(`search.pruning`, `search.recorder`, `search.config`, ...), which search/moved.py keeps
importable. The snapshot is real: written by commit 684b8e1's code and killed mid-sweep
(tests/data/make_old_layout_sweep.py says how)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_old_layout_sweep import FIXTURE, make_prepared  # noqa: E402

from search.recording.recorder import LOST_PREFIX  # noqa: E402

ARCHIVE = Path(__file__).parent / "data" / "old_layout_sweep.tar.gz"
OLD_PATHS = (b"search.pruning", b"search.recorder", b"search.config", b"search.asha_state", b"search.study")

pytestmark = pytest.mark.fault_tolerance


@pytest.fixture
def old_sweep():
    shutil.rmtree(FIXTURE, ignore_errors=True)
    FIXTURE.mkdir(parents=True)
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(FIXTURE, filter="data")
    make_prepared(FIXTURE)
    yield FIXTURE
    shutil.rmtree(FIXTURE, ignore_errors=True)


def test_a_sweep_started_on_the_old_layout_resumes_on_the_new_one(old_sweep):
    tuner_pkl = (old_sweep / "results" / "old" / "tune" / "tuner.pkl").read_bytes()
    assert all(path in tuner_pkl for path in OLD_PATHS)  # the snapshot is the old layout's
    before = pd.read_parquet(old_sweep / "results" / "old" / "trials.parquet").set_index("trial_id")
    assert len(before) == 2

    done = subprocess.run([sys.executable, "-m", "search.cli", "sweep", str(old_sweep / "sweep.toml"),
                           "--results", str(old_sweep / "results"), "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = pd.read_parquet(old_sweep / "results" / "old" / "trials.parquet")
    assert after["trial_id"].is_unique
    ran = after[~after["error"].fillna("").str.startswith(LOST_PREFIX)]
    assert len(ran) == 6 and set(ran["status"]) <= {"completed", "pruned"}, after[["trial_id", "status", "error"]]
    after = after.set_index("trial_id")
    for trial_id, row in before.iterrows():  # finished before the kill: kept, not run again
        assert after.loc[trial_id, "finished_at"] == row["finished_at"]
