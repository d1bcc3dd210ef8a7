"""The output directory: refuse to clobber what is not a prepared corpus, install atomically.

A corpus is built in a temporary directory beside `out` and renamed into place, so a reader never
sees a half-written corpus and a failed run leaves the previous one untouched.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..corpus import MANIFEST_FILE, PROTOCOL_FILE
from .errors import PrepareError


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to clobber anything that is not an empty dir or an earlier prepared corpus."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PrepareError(f"output {out} exists and is not a directory")
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / PROTOCOL_FILE).exists() and not (out / MANIFEST_FILE).exists():
        raise PrepareError(f"output {out} is a non-empty directory that is not a prepared corpus; "
                           "choose another --out")
    if not overwrite:
        raise PrepareError(f"output {out} already holds a prepared corpus; pass overwrite=True "
                           "(CLI: --force) to replace it")


def install(tmp: Path, out: Path, overwrite: bool) -> None:
    check_out(out, overwrite)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def shrink(staging: Path, final: Path, rows: int, chunk: int = 512) -> None:
    """Copy the first `rows` rows of a .npy into a new one, a chunk at a time (bounded RAM)."""
    src = np.load(staging, mmap_mode="r")
    dst = np.lib.format.open_memmap(final, mode="w+", dtype=np.float32, shape=(rows, src.shape[1]))
    for s in range(0, rows, chunk):
        dst[s:s + chunk] = src[s:min(rows, s + chunk)]
    dst.flush()
    del src, dst
    staging.unlink()
