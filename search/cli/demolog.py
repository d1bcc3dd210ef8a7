"""The demo's own log, `<out>/demo.log`, kept so that a failed `ser-search demo` can be read
afterwards.

Why a separate process copies the output: the failure this exists for is native. Ray's core
worker installs absl's failure signal handler in the driver, so a fatal signal (SIGABRT from a
failed `RAY_CHECK`, SIGSEGV, and also a plain SIGTERM from `timeout` or a job scheduler) prints
a C++ stack trace as `logging.cc:474: *** SIG... received ***` lines on the driver's stderr and
ends the process (after a SIGTERM with exit status 134, as if it had aborted). Nothing in that process runs afterwards (no `finally`, no atexit), and a
thread that copied stdout to a file would die with it, losing the last lines. So the demo
points its file descriptors 1 and 2 at a pipe read by this module's `tee` (run as
`python -m search.cli.demolog`): it writes every byte to the terminal and to the log, and when
the pipe closes without the demo's "finished with exit status 0" line (a failure, a crash or a
kill), it copies the tails of the Ray session's log files into `<out>/logs/<session>/` and
says where everything is. Standard library only: the copier must start fast and import
nothing that could fail with the demo.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import IO, Any

LOG_NAME = "demo.log"
RAY_LOGS = "logs"
SESSION_PREFIX = "[demo] Ray session logs: "
FINISHED_PREFIX = "[demo] finished with exit status "
TAIL_LINES = 300
MAX_COPIED = 60  # a long sweep has one worker log per trial; the newest ones matter

# Ray's native log lines: "[2026-12-01 09:20:00,608 E 5857 5857] file.cc:474: message"; the
# levels C (a failed RAY_CHECK) and F (RAY_LOG(FATAL)) end the process.
_FATAL_LEVEL = re.compile(r"^\[[^\]]* [CF] \d+ \d+\]")
_MARKERS = ("*** SIG", "Check failed", "Traceback (most recent call last)")
# The Ray logs a reader needs whatever they hold: the node manager, the cluster's control
# store, and the driver's own core worker (its pid is the demo's).
_ALWAYS = ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err")


def first_marker(lines: Any) -> str | None:
    """The first line that reports a fatal signal, a failed check, a fatal log or a Python
    traceback, or None."""
    for line in lines:
        if _FATAL_LEVEL.match(line) or any(m in line for m in _MARKERS):
            return line.rstrip("\n")
    return None


def collect_ray_logs(session_dir: Path, dest: Path, driver_pid: int | None = None,
                     tail_lines: int = TAIL_LINES) -> list[tuple[Path, str | None]]:
    """Copy the last `tail_lines` lines of every log of a Ray session that reports a fatal
    event, plus the raylet's, the GCS's and the driver's own, into `dest`. Returns each copy
    with the first fatal line it holds (None for an always-copied log without one)."""
    logs = Path(session_dir) / "logs"
    if not logs.is_dir():
        return []
    files = sorted((p for p in logs.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    copied: list[tuple[Path, str | None]] = []
    for path in files:
        if len(copied) >= MAX_COPIED:
            break
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                tail = deque(f, maxlen=tail_lines)
        except OSError:
            continue
        marker = first_marker(tail)
        driver = driver_pid is not None and path.name.startswith("python-core-driver-") \
            and path.name.endswith(f"_{driver_pid}.log")
        if marker is None and path.name not in _ALWAYS and not driver:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        (dest / path.name).write_text("".join(tail), encoding="utf-8")
        copied.append((dest / path.name, marker))
    return copied


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data):]
        return True
    except OSError:  # the terminal went away: keep logging
        return False


def tee(log_path: Path, out: Path, source: int = 0, terminal: int = 1) -> int:
    """Copy `source` to `terminal` and append it to `log_path` until `source` closes; then,
    unless the demo said it finished with status 0, copy the Ray logs and say where they are."""
    session: Path | None = None
    driver_pid: int | None = None
    status: int | None = None
    to_terminal = True
    pending = b""
    with open(log_path, "ab") as log:
        while True:
            chunk = os.read(source, 65536)
            if not chunk:
                break
            log.write(chunk)
            log.flush()
            if to_terminal:
                to_terminal = _write_all(terminal, chunk)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()[-4096:]
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").strip("\r")
                if line.startswith(SESSION_PREFIX):
                    session, _, pid = line[len(SESSION_PREFIX):].partition(" (driver pid ")
                    session = Path(session).parent
                    driver_pid = int(pid.rstrip(")")) if pid.rstrip(")").isdigit() else None
                elif line.startswith(FINISHED_PREFIX):
                    word = line[len(FINISHED_PREFIX):].split()[0]
                    status = int(word) if word.lstrip("-").isdigit() else None
        if status == 0:
            return 0
        report = []
        if status is None:
            report.append("[demo] the demo process ended without finishing its log: it was killed or it crashed "
                          "(a Ray fatal signal prints 'logging.cc: *** SIG... received' lines just above; "
                          "SIGTERM there means it was stopped from outside, e.g. by a timeout)")
        if session is not None:
            dest = out / RAY_LOGS / session.name
            copied = collect_ray_logs(session, dest, driver_pid)
            report.append(f"[demo] the tails of {len(copied)} Ray log file(s) of this run are in {dest}/ "
                          f"(all of them: {session / 'logs'}/)")
            report += [f"[demo]   {p.name}: {m}" for p, m in copied if m]
        report.append(f"[demo] FAILED: the whole output of this run is in {log_path}")
        text = ("\n".join(report) + "\n").encode()
        log.write(text)
        log.flush()
        if to_terminal:
            _write_all(terminal, text)
    return 0


class DemoLog:
    """Send everything this process writes to fds 1 and 2 (Python's prints, Ray's driver
    messages, native stack traces) through the `tee` process into `<out>/demo.log`, from
    `open()` until `close(code)`. Appends: a re-run that continues keeps the failed run's log."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / LOG_NAME
        self._saved: tuple[int, int] | None = None
        self._sys: tuple[IO[str], IO[str]] | None = None
        self._tee: subprocess.Popen[bytes] | None = None

    def open(self) -> "DemoLog":
        self.out.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        read, write = os.pipe()
        # Its own session: a Ctrl-C or `timeout` signals the demo's process group, and the copier
        # must outlive the demo to write its last lines.
        self._tee = subprocess.Popen([sys.executable, "-m", "search.cli.demolog", str(self.path), str(self.out)],
                                     stdin=read, stdout=self._saved[0], stderr=self._saved[1],
                                     start_new_session=True)
        os.close(read)
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        # Python-level streams may not write to fds 1/2 (pytest replaces them): point them there.
        self._sys = (sys.stdout, sys.stderr)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        return self

    def close(self, code: int, timeout_s: float = 120.0) -> None:
        """Write the closing line, restore fds 1 and 2, and wait for the copier to finish (with
        a failed `code` it copies the Ray logs first)."""
        if self._saved is None or self._sys is None or self._tee is None:
            return
        print(f"{FINISHED_PREFIX}{code}", flush=True)
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._sys
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = None
        try:
            self._tee.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # a leftover Ray process still holds the pipe
            print(f"[demo] the log copier is still running; {self.path} may still be growing", file=sys.stderr)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m search.cli.demolog LOG OUT_DIR  (the demo starts this itself)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # outlive the demo; the pipe's end stops it
    return tee(Path(argv[0]), Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
