"""Per-file work: decode, trim, segment and add the noisy copies of one clip (runs in workers).

Everything a worker process needs is here and picklable (Params, Clip, the per-file function), so
a spawned worker imports this module only for the work it does; decode_all keeps the clips in
input order whatever the number of workers, so the manifest's rows are deterministic.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import numpy as np
from tqdm.auto import tqdm

from ..audio import AudioError, add_noise, decode_audio, fix_length, trim_and_segment


@dataclass(frozen=True)
class Params:
    sample_rate: int
    length: int
    top_db: float | None
    max_seconds: float
    copies: int
    snr_db: float
    seed: int


@dataclass
class Clip:
    index: int
    waves: np.ndarray | None = None     # (1 + copies, length) float32: original then noisy copies
    valid_samples: int = 0
    duration: float = 0.0
    sha1: str = ""
    notes: tuple[str, ...] = ()
    reason: str | None = None           # set when rejected
    kind: str | None = None


def _sha1(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def _process(params: Params, task: tuple[int, str]) -> Clip:
    index, path = task
    try:
        digest = _sha1(path)
        decoded = decode_audio(path, params.sample_rate, params.max_seconds)
        # trim_and_segment is also what `predict` runs, so training and prediction see the same input.
        original, valid = trim_and_segment(decoded.wave, params.sample_rate, segment_samples=params.length,
                                           top_db=params.top_db)
        speech = original[:valid]
        # Noise is added to the speech before padding, so the SNR is the speech's and the
        # padding stays exact zeros in originals and copies alike. Seeded by content: the
        # same file gets the same noise whatever else is in the corpus.
        rng = np.random.default_rng([params.seed, int(digest[:16], 16)])
        waves = np.stack([original] + [fix_length(add_noise(speech, params.snr_db, rng), params.length)
                                       for _ in range(params.copies)])
        return Clip(index, waves, valid, decoded.source_seconds, digest, decoded.notes)
    except AudioError as exc:
        return Clip(index, reason=exc.reason, kind=exc.kind)
    except OSError as exc:
        return Clip(index, reason=f"unreadable: {exc.strerror or exc}", kind="unreadable")
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a corpus; it is reported
        return Clip(index, reason=f"decode failed: {type(exc).__name__}: {exc}", kind="decode failed")


def decode_all(paths: list[str], params: Params, workers: int, progress: bool) -> Iterator[Clip]:
    """Clips in input order (so rows are deterministic), decoded in `workers` processes."""
    work = partial(_process, params)
    tasks = list(enumerate(paths))
    bar = tqdm(total=len(tasks), desc="decoding", unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(tasks) < 2 * workers:
            for task in tasks:
                yield work(task)
                bar.update()
        else:
            # spawn: safe whatever threads the parent runs (torch, arrow); each worker pays a few
            # seconds of librosa/numba start-up, hence workers=1 by default.
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            try:
                for clip in pool.map(work, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers)))):
                    yield clip
                    bar.update()
            finally:  # on an error or Ctrl-C, drop the queued files instead of decoding them all
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
