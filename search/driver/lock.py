"""One driver per sweep: a lock file in the sweep's results directory.

Two drivers on one sweep (a `--resume` started while the first driver still runs, or the same
sweep file submitted twice) would each restore Tune's experiment and Optuna's study: each sees
the other's running trials as lost, tells Optuna they FAILED and re-asks their points, and both
write the same Parquet files. Nothing in Ray Tune or Optuna prevents it, so the driver takes an
exclusive `flock` on `<sweep>/driver.lock` for as long as it runs. The kernel drops the lock
when the process dies, however it dies, so a killed driver never leaves a stale lock behind and
`--resume` works at once. flock works on local filesystems and on NFSv4; an object-store
results URI has no locks, and there the rule is only documented.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "driver.lock"


class SweepBusyError(RuntimeError):
    """Another live driver holds the sweep; the message names it."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return f"process {info.get('pid')} on {info.get('host')} (since {started}, running {info.get('what')!r})"


@contextlib.contextmanager
def hold_sweep(sweep_dir: str | Path, what: str) -> Iterator[Path | None]:
    """Hold `<sweep_dir>/driver.lock` while the body runs; SweepBusyError at once when another
    driver holds it. `what` says what this driver runs (shown to a second one)."""
    directory = Path(sweep_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusyError(f"{directory} is being run by {_holder(path)}; two drivers on one sweep would "
                                 "mark each other's running trials as failed. Wait for it to end (or stop it), "
                                 "then --resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "what": what}).encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the file stays (deleting it would race a waiting driver); its content goes
    finally:
        os.close(fd)  # closing releases the lock
