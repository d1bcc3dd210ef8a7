"""A split's normalised spectrograms, indexable by a batch of positions: what an epoch slices.

Two shapes of the same thing. `RowFeatures` reads the node's shared raw spectrograms
(ser_core.feature_cache) and normalises per batch; `SplitFeatures` runs the frontend on the
split's own waveforms (no shared cache). Either keeps the split's normalised features on the
trial's device when they fit (`keep_on_device` decides), so an epoch only indexes a tensor.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..features import FeatureNormalizer, SpeakerNormalizer, num_frames
from .results import CorpusLike


def valid_frames(corpus: CorpusLike, rows: np.ndarray, frontend_cfg, enabled: bool) -> Tensor | None:
    """True (unpadded) length in frames per row, when the manifest records it."""
    if not enabled or "valid_samples" not in corpus.manifest.columns:
        return None
    samples = corpus.manifest["valid_samples"].to_numpy()[rows]
    frames = [num_frames(frontend_cfg, int(s)) for s in samples]
    return torch.as_tensor(frames, dtype=torch.long)


class SplitFeatures:
    """One split's normalised spectrograms, indexable by a batch of positions.

    Cached: computed once on the device (the waveforms, noisy copies included, never change,
    so neither do their spectrograms) and sliced every epoch. Not cached: computed per batch
    from the split's waveform tensor, for corpora whose spectrograms would not fit."""

    def __init__(self, waves: Tensor, frontend: nn.Module, normalizer: "FeatureNormalizer | SpeakerNormalizer | None",
                 batch: int = 128, rows: Tensor | None = None) -> None:
        self.waves, self.frontend, self.normalizer, self.batch = waves, frontend, normalizer, batch
        self.rows = rows  # corpus row of each position: what a SpeakerNormalizer looks speakers up by
        self._raw: Tensor | None = None
        self.cache: Tensor | None = None

    def __len__(self) -> int:
        return len(self.waves) if self.cache is None else len(self.cache)

    @torch.no_grad()
    def raw_batches(self, lengths: Tensor | None, keep: bool):
        """Unnormalised spectrogram batches (with frame counts). With `keep`, the frontend writes
        each batch straight into one preallocated tensor for the cache: no list of batches to
        concatenate, so one copy of the split's features in memory, not three."""
        raw: Tensor | None = None
        for s in range(0, len(self.waves), self.batch):
            wave = self.waves[s:s + self.batch]
            if raw is None:
                f = self.frontend(wave)
                if keep:
                    raw = f.new_empty((len(self.waves), *f.shape[1:]))
                    f = raw[:len(f)].copy_(f)
            else:
                f = self.frontend(wave, out=raw[s:s + len(wave)])
            yield f if lengths is None else (f, lengths[s:s + self.batch])
        self._raw = raw

    def raw_batches_with_lengths(self, lengths: Tensor | None, keep: bool) -> Iterator[tuple[Tensor, Tensor | None]]:
        """(raw spectrograms, frame counts or None) batches: slices of what a kept pass already
        computed, else a pass of the frontend (kept when the split's features are cached). What
        fitting a second normaliser (per speaker) reads after the global one took the first pass."""
        if self._raw is not None:
            for s in range(0, len(self._raw), self.batch):
                yield self._raw[s:s + self.batch], None if lengths is None else lengths[s:s + self.batch]
            return
        for item in self.raw_batches(lengths, keep=keep):
            yield item if lengths is not None else (item, None)

    @torch.no_grad()
    def spectrograms(self) -> Tensor:
        """Every row's unnormalised spectrogram in one tensor: what `raw_batches(keep=True)`
        filled, or filled now."""
        if self._raw is None:
            for _ in self.raw_batches(None, keep=True):
                pass
        return self._raw

    def _normalize(self, feats: Tensor, idx: Tensor | slice, inplace: bool = False) -> Tensor:
        if isinstance(self.normalizer, SpeakerNormalizer):
            return self.normalizer(feats, self.rows[idx], inplace=inplace)
        return self.normalizer(feats, inplace=inplace)

    @torch.no_grad()
    def build_cache(self) -> None:
        self.cache = self._normalize(self.spectrograms(), slice(None), inplace=True)
        self._raw, self.waves = None, None

    def __getitem__(self, idx: Tensor | slice) -> Tensor:
        if self.cache is not None:
            return self.cache[idx]
        with torch.no_grad():
            return self._normalize(self.frontend(self.waves[idx]), idx)


class RowFeatures:
    """One split's rows of the node's shared raw spectrograms (ser_core.feature_cache), normalised
    per batch: a gathered batch minus a mean vector, over a std vector (per speaker: the rows'
    speakers' vectors, gathered) — tensor ops on the batch, nothing per sample. With `on_device`
    the split's rows are copied to the device once and normalised there in place (a GPU trial
    whose features fit); otherwise every batch is gathered from the mapping, so the trials of a
    node share one copy of the features in the page cache."""

    def __init__(self, raw: Tensor, rows: Tensor, normalizer: "FeatureNormalizer | SpeakerNormalizer",
                 device: torch.device, on_device: bool, chunk: int = 256) -> None:
        self.raw, self.rows, self.normalizer, self.device = raw, rows, normalizer, device
        self.cache: Tensor | None = None
        if on_device:
            n_frames = raw.shape[1:]
            self.cache = torch.empty((len(rows), *n_frames), dtype=raw.dtype, device=device)
            for s in range(0, len(rows), chunk):
                part = self.cache[s:s + chunk]
                part.copy_(raw.index_select(0, rows[s:s + chunk]), non_blocking=False)
                self._normalize(part, rows[s:s + chunk], inplace=True)
            self.raw = None

    def _normalize(self, feats: Tensor, rows: Tensor, inplace: bool) -> Tensor:
        if isinstance(self.normalizer, SpeakerNormalizer):
            return self.normalizer(feats, rows, inplace=inplace)
        return self.normalizer(feats, inplace=inplace)

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def __getitem__(self, idx: Tensor | slice) -> Tensor:
        if self.cache is not None:
            return self.cache[idx]
        rows = self.rows[idx.cpu() if isinstance(idx, Tensor) else idx]
        batch = self.raw.index_select(0, rows)  # a fresh tensor: normalised in place
        if self.device.type != "cpu":
            batch = batch.to(self.device, non_blocking=True)
        return self._normalize(batch, rows, inplace=True)


def keep_on_device(setting: str, nbytes: int, device_type: str, free_bytes: int | None,
                   share: float = 0.25, cpu_limit: int = 2 * 1024**3) -> bool:
    """Whether a trial keeps its normalised features (`nbytes`) on its device for the whole run.

    A pure function of the setting, the sizes and the device's free memory (`free_bytes`, e.g.
    torch.cuda.mem_get_info's first value; None on CPU), so the CUDA decision is tested on CPU.
    "on"/"off" decide outright; "auto" keeps them on a GPU when they take under `share` of its
    free memory (packed trials share the GPU, and the model and activations need the rest), and
    in RAM on a CPU under `cpu_limit`."""
    if setting != "auto":
        return setting == "on"
    if device_type == "cuda":
        return free_bytes is not None and nbytes < share * free_bytes
    return nbytes < cpu_limit


def use_feature_cache(setting: str, nbytes: int, device: torch.device) -> bool:
    """`keep_on_device` with the device's free memory read now (only when "auto" needs it)."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" and setting == "auto" else None
    return keep_on_device(setting, nbytes, device.type, free)
