"""Shared pieces of the benchmarks: the WAV files both sides read, the conventional librosa
feature path both benchmarks compare against, timing and the machine description.

The conventional side lives here (not in ser_core) on purpose: it is the baseline the field
uses, written the way a typical SER training script does it, so ser-search is measured
against something real rather than against a straw man of its own code.
"""
from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import librosa
import numpy as np
import torch

from ser_core.features import FrontendConfig
from ser_core.labels import EMOTIONS
from ser_core.synthetic import MAX_CLIPS, MAX_SPEAKERS, generate_corpus

# Acted-speech corpora ship at 44.1-48 kHz (RAVDESS 48 kHz), so the files are written at 48 kHz
# and both pipelines pay for resampling to 16 kHz, as they would on the real corpora.
SOURCE_RATE = 48000
MIN_SPEAKERS = 8   # a gender-balanced set of voices even in the smallest corpus
MIN_CLIPS = MIN_SPEAKERS * len(EMOTIONS)
PAPER_CLIPS = 4720  # RAVDESS 1440 + SAVEE 480 + TESS 2800, the CNN-Transformer paper's corpus


def find_emodb(given: Path | None, who: str, hint: str = "") -> Path:
    """The EmoDB folder: `given`, else $SER_SEARCH_EMODB, else ../shared/data/emodb beside the
    checkout (or shared/data/emodb inside it); SystemExit naming `who` when none holds WAVs."""
    env = os.environ.get("SER_SEARCH_EMODB")
    root = Path(__file__).resolve().parents[1]
    for cand in [given, Path(env) if env else None, root.parent / "shared" / "data" / "emodb",
                 root / "shared" / "data" / "emodb"]:
        if cand is not None and cand.is_dir() and any(cand.glob("*.wav")):
            return cand
    raise SystemExit(f"{who}: EmoDB not found (--emodb DIR, $SER_SEARCH_EMODB or ../shared/data/emodb){hint}")


def default_workdir() -> Path:
    """Generated WAVs are reused between runs (generation is deterministic per seed)."""
    return Path(tempfile.gettempdir()) / "ser-search-bench"


def synthetic_wav_corpus(root: Path, n_clips: int, *, sample_rate: int = SOURCE_RATE,
                         seed: int = 0) -> tuple[Path, list[Path]]:
    """A synthetic emotional-speech corpus of at least `n_clips` WAV files under `root`.

    The speaker count is chosen so speakers x 8 emotions x clips divides `n_clips` when it can
    (320 = 8 x 8 x 5, 4720 = 10 x 8 x 59), otherwise so that it overshoots least.
    Returns the corpus root and its files, sorted.
    """
    if n_clips < MIN_CLIPS:
        raise ValueError(f"--clips must be at least {MIN_CLIPS} "
                         f"({MIN_SPEAKERS} speakers x {len(EMOTIONS)} emotions), got {n_clips}")
    per_round = len(EMOTIONS)
    best: tuple[int, int, int] | None = None  # (overshoot, speakers, clips per emotion)
    for speakers in range(MIN_SPEAKERS, MAX_SPEAKERS + 1):
        clips = math.ceil(n_clips / (per_round * speakers))
        if clips > MAX_CLIPS:
            continue
        cand = (speakers * per_round * clips - n_clips, speakers, clips)
        if best is None or cand < best:
            best = cand
        if cand[0] == 0:
            break
    if best is None:
        raise ValueError(f"--clips {n_clips} is more than the synthetic corpus can hold "
                         f"({MAX_SPEAKERS * per_round * MAX_CLIPS})")
    _, speakers, clips = best
    out = generate_corpus(Path(root), n_speakers=speakers, clips_per_emotion=clips,
                          sample_rate=sample_rate, seed=seed, progress=n_clips > 1000)
    files = sorted(out.rglob("*.wav"))
    return out, files


# ----------------------------------------------------------------------------- conventional path


def librosa_features(y: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """One clip's log-Mel (or log-power STFT) the conventional way: librosa on one array."""
    common = dict(n_fft=cfg.n_fft_resolved, hop_length=cfg.hop_length, win_length=cfg.win_length,
                  window=cfg.window, center=True, pad_mode="constant")
    if cfg.kind == "mel":
        power = librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, power=2.0, n_mels=cfg.n_mels,
                                               fmin=cfg.f_min, fmax=cfg.f_max, htk=False, norm="slaney",
                                               **common)
    elif cfg.kind == "stft":
        power = np.abs(librosa.stft(y=y, **common)) ** 2
    else:
        raise ValueError(f"librosa_features: kind {cfg.kind!r} is not benchmarked (mel or stft)")
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=cfg.top_db)


def librosa_load(path: Path, sample_rate: int, segment_samples: int) -> np.ndarray:
    """Decode + resample one file with librosa.load and cut/pad it to the segment length."""
    y, _ = librosa.load(path, sr=sample_rate, mono=True)
    return librosa.util.fix_length(data=y, size=segment_samples)


# ----------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer reads finished work and not launched work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """`with timer() as t: ...; t()` gives the block's wall-clock seconds once it has ended."""
    start = time.perf_counter()
    box: list[float] = []
    yield lambda: box[0]
    box.append(time.perf_counter() - start)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch sees no CUDA device")
    return torch.device(name)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_summary(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op threads), librosa {librosa.__version__}, "
            f"Python {platform.python_version()}, GPU: {gpu}")


def rate_line(label: str, clips: int, seconds: float) -> str:
    return f"  {label:<62} {clips / seconds:9.1f} clips/s  ({clips} clips in {seconds:.2f} s)"


TINY_MODEL = ('{ name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, '
              'n_layers = 1, ff_dim = 64 }')  # the demo's model


def tiny_cpu_sweep(*, written_by: str, name: str, trials: int, concurrent: int, cover_choices: bool, seed: int,
                   prepared: Path, max_epochs: int, grace_period: int, reduction_factor: float, space: str) -> str:
    """A sweep file for the EmoDB benchmarks (answer.py, early_stopping.py): `space` ([space]
    TOML) searched with TPE `seed` and ASHA over fold 0 of `prepared`, one CPU per trial, the
    demo's tiny CNN-Transformer on 40-band Mel (or STFT where the space picks it)."""
    return f"""# Written by {written_by}.
[sweep]
name = "{name}"
num_samples = {trials}
max_concurrent_trials = {concurrent}
cover_choices = {str(cover_choices).lower()}
seed = {seed}

[data]
prepared = "{prepared}"
fold = 0

[scheduler]
max_epochs = {max_epochs}
grace_period = {grace_period}
reduction_factor = {reduction_factor:g}

[resources]
cpus_per_trial = 1
gpus_per_trial = 0

{space}
[base]
device = "cpu"
model = {TINY_MODEL}
frontend = {{ n_mels = 40 }}
optim = {{ name = "adamw", weight_decay = 1e-4 }}
"""
