"""One copy of a prepared corpus's spectrograms per node, shared by every trial that needs them.

Why: the waveforms of a prepared corpus (noisy copies included) never change, so neither do their
spectrograms under one frontend configuration; yet every trial of a sweep used to compute all of
them again and hold its own ~GB copy. Here the first trial on a node computes the RAW (not
normalised) spectrogram of every manifest row once, into a `.npy` file beside the prepared corpus
(or a configured directory); every later trial maps that file read-only, so N trials on a node
share one copy in the page cache, and each normalises the rows it trains on per batch.

Safe when trials ask at once: one `fcntl.flock` per cache file, so one trial computes while the
others wait, and the result is written to a temporary file and renamed into place (atomic on one
file system), so a reader never maps a half-written file. Never stale: the file name is a hash of
the frontend's validated configuration, the code that computes it (ser_core.features.FEATURES_VERSION
and the librosa and torch releases, major.minor) and the corpus's identity (its `prepared_id` —
manifest and protocol — the waveforms' shape, waveforms.npy's size and mtime, and a digest of a
sample of rows), so a changed corpus, frontend or frontend code gets a new file; the header's shape
and dtype, and a JSON sidecar holding the full key, are checked on every open. A temporary file is
named for its host and process: it is removed when its fill fails, and one left by a killed
process (which cannot clean up) is removed by the next fill of the same file on that host.

Beside each spectrogram file, the same way: every row's moments over its real frames (frames,
mean and M2 per frequency, float64; ser_core.features.row_moments), from which any split's or
speaker's normaliser statistics follow exactly, so a trial merges its rows' moments instead of
reading all its training spectrograms again (0.3 s per STFT trial on EmoDB, growing with the corpus).

openSMILE's functionals (frontend "egemaps" / "compare") are cached the same way, one (clips,
features, 1) file per corpus and set (`functionals_cache_key`): extracting either set costs ~43 ms
of one CPU core per 1.85-s clip (docs/baselines.md), which a sweep pays once per node instead of once per trial.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch

from . import features
from .features.functionals import opensmile_version
from .features.ssl import encoder_fingerprint, transformers_version

CACHE_FORMAT = 1
CACHE_SUBDIR = "feature-cache"
ENV_DIR = "SER_SEARCH_FEATURE_CACHE"  # a node-local directory, e.g. when the prepared dir is read-only
DIGEST_ROWS = 64  # rows hashed in full for the identity: catches a corpus edited in memory after load


class FeatureCacheError(RuntimeError):
    """A cache file that exists under the expected name but does not hold what its key says."""


def corpus_identity(corpus: Any) -> dict[str, Any] | None:
    """What names a corpus's waveforms, or None for a corpus without an identity (not loaded from
    a prepared directory: such a corpus is never cached, its spectrograms are computed in the trial)."""
    root, prepared_id = getattr(corpus, "root", None), getattr(corpus, "prepared_id", None)
    if root is None or prepared_id is None:
        return None
    waves = corpus.waveforms
    ident: dict[str, Any] = {"prepared_id": str(prepared_id), "shape": [int(n) for n in waves.shape],
                             "dtype": str(waves.dtype)}
    try:
        st = (Path(root) / "waveforms.npy").stat()
        ident.update(waveforms_size=st.st_size, waveforms_mtime_ns=st.st_mtime_ns)
    except OSError:  # a corpus handed over from another node: its directory may not exist here
        pass
    rows = np.unique(np.linspace(0, len(waves) - 1, min(len(waves), DIGEST_ROWS)).astype(np.int64))
    ident["rows_digest"] = hashlib.sha256(np.ascontiguousarray(waves[rows]).tobytes()).hexdigest()[:16]
    return ident


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def code_versions() -> dict[str, Any]:
    """What computes the cached arrays: ser_core.features.FEATURES_VERSION (bumped with any change
    to the frontends' maths) and the librosa (window, mel filters) and torch (STFT) releases."""
    return {"features": features.FEATURES_VERSION, "librosa": _major_minor(librosa.__version__),
            "torch": _major_minor(torch.__version__)}


def cache_key(frontend: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    if frontend.get("ssl_model", "") is None:  # spectrogram caches written before ssl_model existed stay valid
        frontend = {k: v for k, v in frontend.items() if k != "ssl_model"}
    return {"format": CACHE_FORMAT, "code": code_versions(), "frontend": frontend, "corpus": identity}


def functionals_cache_key(kind: str, sample_rate: int, identity: dict[str, Any], speech: str) -> dict[str, Any]:
    """The key of a corpus's openSMILE functionals: the set and the corpus's rate (no spectrogram
    setting shapes them, so a sweep over n_mels shares one file), the code that computes them
    (ser_core.features.FUNCTIONALS_VERSION and the opensmile release) and how each clip's speech
    was delimited (`speech`)."""
    return {"format": CACHE_FORMAT, "code": {"functionals": features.FUNCTIONALS_VERSION, "opensmile": opensmile_version()},
            "frontend": {"kind": kind, "sample_rate": int(sample_rate)}, "speech": speech, "corpus": identity}


def ssl_cache_key(model: str, sample_rate: int, identity: dict[str, Any], speech: str) -> dict[str, Any]:
    """The key of a corpus's SSL layer means: the encoder (its files' digests for a local
    directory, its id and configuration for a hub id: ser_core.features.ssl.encoder_fingerprint),
    the corpus's rate, the code (SSL_VERSION and the transformers release) and how each clip's
    speech was delimited. No spectrogram setting shapes them."""
    return {"format": CACHE_FORMAT, "code": {"ssl": features.SSL_VERSION, "transformers": transformers_version()},
            "frontend": {"kind": "ssl", "encoder": encoder_fingerprint(model), "sample_rate": int(sample_rate)},
            "speech": speech, "corpus": identity}


def key_name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]


def cache_dir(corpus_root: Path | None, configured: Path | None = None) -> Path:
    """Where the cache lives: `configured` (the config's feature_cache_dir), else $SER_SEARCH_FEATURE_CACHE,
    else <prepared>/feature-cache when the prepared directory is writable here, else a per-user
    directory under the system's temporary directory (node-local)."""
    if configured is not None:
        return Path(configured)
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    if corpus_root is not None and Path(corpus_root).is_dir():
        target = Path(corpus_root) / CACHE_SUBDIR
        if (target.is_dir() and os.access(target, os.W_OK | os.X_OK)) or \
                (not target.exists() and os.access(corpus_root, os.W_OK | os.X_OK)):
            return target
    return Path(tempfile.gettempdir()) / f"ser-search-feature-cache-{os.getuid()}"


def _open(path: Path, meta_path: Path, key: dict[str, Any], shape: tuple[int, ...],
          dtype: type = np.float32) -> np.ndarray:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FeatureCacheError(f"feature cache {path}: its key file {meta_path} is unreadable ({e})") from None
    if meta != key:
        raise FeatureCacheError(f"feature cache {path}: its key file does not match (another corpus or frontend "
                                f"under a colliding name)")
    try:
        # copy-on-write mapping: reads share the page cache; the file itself is never written
        arr = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise FeatureCacheError(f"feature cache {path}: unreadable ({e})") from None
    if arr.dtype != np.dtype(dtype) or arr.shape != tuple(shape):
        raise FeatureCacheError(f"feature cache {path}: holds {arr.dtype} {arr.shape}, expected "
                                f"{np.dtype(dtype)} {shape}")
    return arr


def open_or_build(directory: Path, key: dict[str, Any], shape: tuple[int, ...],
                  fill: Callable[[np.ndarray], None], dtype: type = np.float32) -> tuple[np.ndarray, bool]:
    """The cached array for `key`, mapped read-only, and whether this call computed it.

    `fill` receives a writable `dtype` array of `shape` (a fresh file's mapping) and must write
    every row. Only one process per file runs it at a time; the others wait on the lock and then
    map the finished file. A file that fails its checks is rebuilt under the lock."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = key_name(key)
    path, meta_path = directory / f"{name}.npy", directory / f"{name}.json"
    if path.exists():  # the fast path: renamed into place whole, so existing means finished
        with contextlib.suppress(FeatureCacheError):
            arr = _open(path, meta_path, key, shape, dtype)
            _tidy(directory, name)
            return arr, False
    with open(directory / f"{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if fill raises
        remove_stale_temporaries(directory, name)
        if path.exists():
            try:
                return _open(path, meta_path, key, shape, dtype), False
            except FeatureCacheError:
                path.unlink()  # under the lock: nobody else is writing it
        mine = f".{name}.{_host()}.{os.getpid()}.tmp"
        tmp, meta_tmp = directory / f"{mine}.npy", directory / f"{mine}.json"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            fill(out)
            out.flush()
            del out
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            meta_tmp.write_text(json.dumps(key, sort_keys=True), encoding="utf-8")
            os.replace(meta_tmp, meta_path)  # the key first: a finished .npy always has its key
            os.replace(tmp, path)
        finally:  # whatever fill raised (a KeyboardInterrupt, a trial stopped): no GB-sized leftover
            tmp.unlink(missing_ok=True)
            meta_tmp.unlink(missing_ok=True)
        return _open(path, meta_path, key, shape, dtype), True


def _host() -> str:
    """This machine's name as a temporary file names it (no dots: the pid follows the last one)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _tidy(directory: Path, name: str) -> None:
    """On the fast path: temporaries of a finished file are a killed filler's (the process that
    finished it took the lock after the killed one died, but may have seen it not yet reaped).
    Removed under the lock when nobody holds it; never waits, never fails the read (a read-only
    directory keeps them)."""
    if not any(directory.glob(f".{name}.*.tmp.*")):
        return
    with contextlib.suppress(OSError), open(directory / f"{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError (an OSError) when held
        remove_stale_temporaries(directory, name)


def remove_stale_temporaries(directory: Path, name: str) -> list[Path]:
    """Remove the temporary files of cache file `name` left by a process of this host that no
    longer exists (a killed trial runs no `finally`), and return them. Called under the file's
    lock, by the next process to fill it. A temporary of another host (a cache directory on a
    shared file system) or of a live process is left alone; so is one whose name says no pid.
    Names: .<name>.<host>.<pid>.tmp.{npy,json}, or .<name>.<pid>.tmp.* as before hosts were named."""
    removed = []
    host = _host()
    for leftover in Path(directory).glob(f".{name}.*.tmp.*"):
        middle = leftover.name[len(name) + 2:].rsplit(".tmp.", 1)[0]  # "<host>.<pid>" or "<pid>"
        owner, _, pid = middle.rpartition(".")
        if not pid.isdigit() or (owner and owner != host) or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed
