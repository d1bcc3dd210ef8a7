"""The demo's own log (search/cli/demolog.py) without Ray: real processes, real pipes, real files.
A process that dies by a native abort, as a Ray fatal does, still leaves its last lines and
the Ray logs that matter; a run that finishes leaves just its output."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from search.cli.demolog import FINISHED_PREFIX, LOG_NAME, RAY_LOGS, SESSION_PREFIX, collect_ray_logs, first_marker

RAY_FATAL = "[2026-12-01 09:20:00,608 E 5857 5857] logging.cc:474: *** SIGABRT received at time=1796116800 on cpu 0 ***"


def _fake_session(root: Path, driver_pid: int) -> Path:
    """A Ray session directory as Ray writes it: clean and fatal worker logs, the raylet's,
    the driver's core-worker log."""
    logs = root / "session_2026-12-01_09-10-08_130556_5857" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text("".join(f"[x I 1 1] node_manager.cc:1: line {i}\n" for i in range(1000)))
    (logs / "worker-aaa-01000000-7183.err").write_text("all fine\n")
    (logs / "worker-bbb-01000000-7184.err").write_text(f"something\n{RAY_FATAL}\n")
    (logs / "gcs_server.out").write_text("[x C 2 2] gcs.cc:9: Check failed: false\n")
    (logs / f"python-core-driver-01000000ff_{driver_pid}.log").write_text("driver core log\n")
    (logs / "python-core-driver-01000000ff_999999.log").write_text("another driver's log\n")
    (logs / "events").mkdir()
    return logs.parent


def _child(out: Path, body: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from search.cli.demolog import DemoLog
        log = DemoLog(Path({str(out)!r})).open()
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_a_native_abort_leaves_its_last_lines_and_the_ray_logs(tmp_path):
    out = tmp_path / "demo-out"
    session = _fake_session(tmp_path / "ray", driver_pid=4242)
    proc = _child(out, f"""
        print("[demo] 1/5 a stage header", flush=True)
        print({SESSION_PREFIX + str(session / "logs") + " (driver pid 4242)"!r}, flush=True)
        os.write(2, {(RAY_FATAL + chr(10)).encode()!r})   # native, past Python's sys.stderr
        os.abort()                                          # what a Ray fatal ends with
    """)
    assert proc.returncode != 0
    text = (out / LOG_NAME).read_text()
    assert "[demo] 1/5 a stage header" in text and RAY_FATAL in text
    assert FINISHED_PREFIX not in text
    assert "ended without finishing its log: it was killed or it crashed" in text
    assert f"FAILED: the whole output of this run is in {out / LOG_NAME}" in text
    copies = out / RAY_LOGS / session.name
    assert sorted(p.name for p in copies.iterdir()) == sorted(
        ["raylet.out", "worker-bbb-01000000-7184.err", "gcs_server.out", "python-core-driver-01000000ff_4242.log"])
    assert f"worker-bbb-01000000-7184.err: {RAY_FATAL}" in text        # the fatal line, named by file
    assert len((copies / "raylet.out").read_text().splitlines()) == 300   # a tail, not the whole log
    assert "line 999" in (copies / "raylet.out").read_text()
    assert RAY_FATAL in proc.stdout                                    # the terminal saw it as well


def test_a_finished_run_logs_its_output_and_copies_nothing_and_a_rerun_appends(tmp_path):
    out = tmp_path / "demo-out"
    session = _fake_session(tmp_path / "ray", driver_pid=4242)
    for run in ("first", "second"):
        proc = _child(out, f"""
            print("[demo] {run} run", flush=True)
            print({SESSION_PREFIX + str(session / "logs") + " (driver pid 4242)"!r}, flush=True)
            print("to stderr", file=sys.stderr, flush=True)
            log.close(0)
            print("after the log closed", flush=True)
        """)
        assert proc.returncode == 0, proc.stderr
        assert f"[demo] {run} run" in proc.stdout and "after the log closed" in proc.stdout
    text = (out / LOG_NAME).read_text()
    assert text.index("[demo] first run") < text.index("[demo] second run")
    assert text.count("to stderr") == 2 and text.count(f"{FINISHED_PREFIX}0") == 2
    assert "after the log closed" not in text and "FAILED" not in text
    assert not (out / RAY_LOGS).exists()


def test_a_failed_status_copies_the_ray_logs(tmp_path):
    out = tmp_path / "demo-out"
    session = _fake_session(tmp_path / "ray", driver_pid=4242)
    proc = _child(out, f"""
        print({SESSION_PREFIX + str(session / "logs") + " (driver pid 4242)"!r}, flush=True)
        log.close(1)
    """)
    assert proc.returncode == 0
    text = (out / LOG_NAME).read_text()
    assert f"{FINISHED_PREFIX}1" in text and "ended without finishing" not in text
    assert "FAILED" in text and (out / RAY_LOGS / session.name / "gcs_server.out").is_file()
    assert "gcs_server.out: [x C 2 2] gcs.cc:9: Check failed: false" in text


def test_collect_ray_logs_keeps_fatal_and_named_logs_only(tmp_path):
    session = _fake_session(tmp_path / "ray", driver_pid=4242)
    copied = dict((p.name, m) for p, m in collect_ray_logs(session, tmp_path / "copy", driver_pid=4242, tail_lines=5))
    assert set(copied) == {"raylet.out", "worker-bbb-01000000-7184.err", "gcs_server.out",
                           "python-core-driver-01000000ff_4242.log"}
    assert copied["raylet.out"] is None and copied["worker-bbb-01000000-7184.err"] == RAY_FATAL
    assert collect_ray_logs(tmp_path / "no-such-session", tmp_path / "copy2") == []
    assert not (tmp_path / "copy2").exists()


def test_first_marker_knows_ray_fatal_levels_signals_and_tracebacks():
    assert first_marker(["[t I 1 1] a.cc:1: fine\n", "[t W 1 1] a.cc:2: warning\n"]) is None
    assert first_marker(["[t F 1 1] a.cc:3: fatal\n"]) == "[t F 1 1] a.cc:3: fatal"
    assert first_marker(["x\n", "Traceback (most recent call last):\n"]) == "Traceback (most recent call last):"
    assert first_marker(["*** SIGSEGV received at time=1 ***\n"]) is not None
