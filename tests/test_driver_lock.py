"""One driver per sweep: a second one is refused while the first lives, and a killed one
leaves no stale lock."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from search.driver.lock import LOCK_FILE, SweepBusyError, hold_sweep

HOLDER = """
import sys, time
from search.driver.lock import hold_sweep
with hold_sweep(sys.argv[1], "sweep 'demo'"):
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(sweep_dir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(sweep_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_is_refused_and_told_who_holds_the_sweep(tmp_path):
    proc = _start_holder(tmp_path / "s")
    try:
        with pytest.raises(SweepBusyError, match=rf"process {proc.pid} on .*running \"sweep 'demo'\""):
            with hold_sweep(tmp_path / "s", "sweep 'demo' (--resume)"):
                pytest.fail("the body must not run while another driver holds the sweep")
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_driver_leaves_no_stale_lock(tmp_path):
    proc = _start_holder(tmp_path / "s")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with hold_sweep(tmp_path / "s", "resume") as path:  # at once: the kernel dropped the lock
        assert path.name == LOCK_FILE and '"what": "resume"' in path.read_text()
    assert path.read_text() == ""  # released: no holder recorded


def test_sequential_drivers_and_the_same_process_twice(tmp_path):
    with hold_sweep(tmp_path / "s", "first"):
        with pytest.raises(SweepBusyError):  # a nested run of the same sweep in one process, too
            with hold_sweep(tmp_path / "s", "second"):
                pass
    started = time.time()
    with hold_sweep(tmp_path / "s", "third"):
        pass
    assert time.time() - started < 1.0


def test_a_second_sweep_driver_is_refused_before_it_touches_the_study(tmp_path, synthetic_prepared):
    """`ser-search sweep --resume` while the first driver runs: refused with exit status 2,
    before Ray starts or Optuna's study is opened (which is where it would mark the first
    driver's running trials as failed)."""
    from search.cli import main
    from sweep_helpers import write_sweep

    sweep = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="busy")
    results = tmp_path / "results"
    proc = _start_holder(results / "busy")
    try:
        assert main(["sweep", str(sweep), "--results", str(results)]) == 2
    finally:
        proc.kill()
        proc.wait()
    assert not (results / "busy" / "optuna.db").exists() and not (results / "busy" / "sweep.json").exists()
