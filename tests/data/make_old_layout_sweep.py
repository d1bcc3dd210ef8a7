"""How tests/data/old_layout_sweep.tar.gz was made: a sweep started by ser-search's flat
`search/` layout (commit 684b8e1, before issue 23) and killed after two finished trials, so that
tests/test_old_layout_resume.py can resume it with the current layout.

    mkdir /work/oldlayout && git archive 684b8e1 search ser_core tests/sweep_helpers.py | tar -x -C /work/oldlayout
    PYTHONPATH=/work/oldlayout python3 tests/data/make_old_layout_sweep.py
    (cd /tmp/ser-search-old-layout && tar czf OUT/old_layout_sweep.tar.gz results sweep.toml)

Ray Tune's state stores absolute paths, so the sweep lives at a fixed path, FIXTURE; the
prepared corpus is regenerated there by the test (deterministic), not stored.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FIXTURE = Path("/tmp/ser-search-old-layout")
OLD_TREE = Path("/work/oldlayout")


def make_prepared(where: Path) -> Path:
    """The fixture's prepared corpus (the test calls this too, with the current ser_core)."""
    import shutil

    from ser_core.prepare import PrepareOptions, prepare_corpora
    from ser_core.synthetic import generate_corpus

    root = generate_corpus(where / "wav", n_speakers=6, clips_per_emotion=3, seed=0)
    prepare_corpora({"synthetic": root}, where / "prepared",
                    PrepareOptions(segment_seconds=1.0, n_folds=3, augment_copies=0), progress=False)
    shutil.rmtree(where / "wav")
    return where / "prepared"


def main() -> None:
    import pandas as pd

    sys.path.insert(0, str(OLD_TREE / "tests"))
    from sweep_helpers import write_sweep

    prepared = make_prepared(FIXTURE)
    write_sweep(FIXTURE / "sweep.toml", prepared, name="old", num_samples=6, max_epochs=3, concurrent=1,
                families=("cross_entropy", "center"))
    env = dict(os.environ, PYTHONPATH=str(OLD_TREE))
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "sweep", str(FIXTURE / "sweep.toml"),
                             "--results", str(FIXTURE / "results")], cwd=OLD_TREE, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = FIXTURE / "results" / "old" / "trials.parquet"
    while not (trials.exists() and len(pd.read_parquet(trials)) >= 2):
        assert proc.poll() is None, "the old sweep ended before it could be killed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


if __name__ == "__main__":
    main()
