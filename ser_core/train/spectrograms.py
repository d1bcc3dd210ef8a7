"""The node's shared raw spectrograms and per-row moments (ser_core.feature_cache), as a
trial reads them: computed by the first trial on a node that needs them, mapped by every later
one. The waveforms, noisy copies included, never change, so neither do their spectrograms;
the moments let each trial fit its normaliser on its own training rows without a pass over
the spectrograms.

openSMILE's functionals (frontend "egemaps" / "compare") and an SSL encoder's layer means ("ssl")
take the same road as a (clips, features, 1) array, a spectrogram of one frame: cached once per
node like the spectrograms (`shared_utterance_vectors`), or computed in the trial for a corpus
without an identity or with feature_cache = "off"; a row's moments over one frame are the row
itself (`functional_row_moments`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..feature_cache import cache_dir, cache_key, functionals_cache_key, open_or_build, ssl_cache_key
from ..features import FrontendConfig, build_frontend, num_frames, row_moments, speech_lengths
from .results import CorpusLike
from .split_features import valid_frames


def shared_spectrograms(cfg: TrainConfig, corpus: CorpusLike, frontend_cfg, frontend: nn.Module,
                        device: torch.device, identity: dict[str, Any], batch: int) -> np.ndarray:
    """Every manifest row's raw spectrogram from the node's cache, computed here (on this trial's
    device, batch by batch into the cache file) when no trial on this node has yet."""
    waves = corpus.waveforms
    shape = (len(waves), frontend_cfg.n_features, num_frames(frontend_cfg, waves.shape[1]))

    @torch.no_grad()
    def fill(out: np.ndarray) -> None:
        for s in range(0, len(waves), batch):
            wave = torch.from_numpy(np.array(waves[s:s + batch], dtype=np.float32)).to(device)  # a copy: mapped read-only
            if device.type == "cpu":
                frontend(wave, out=torch.from_numpy(out[s:s + len(wave)]))
            else:
                out[s:s + len(wave)] = frontend(wave).float().cpu().numpy()

    key = cache_key(frontend_cfg.model_dump(mode="json"), identity)
    arr, _ = open_or_build(cache_dir(getattr(corpus, "root", None), cfg.feature_cache_dir), key, shape, fill)
    return arr


def shared_row_moments(cfg: TrainConfig, corpus: CorpusLike, frontend_cfg, raw: Tensor,
                       identity: dict[str, Any], batch: int = 64) -> tuple[Tensor, Tensor, Tensor]:
    """Every manifest row's (frames, mean, M2) over its real frames, from the node's cache beside
    the spectrograms (ser_core/feature_cache.py), computed here from `raw` when no trial on this
    node has yet. The frames are this config's (variable_length), so they are part of the key."""
    n_all = len(raw)
    lengths = valid_frames(corpus, np.arange(n_all), frontend_cfg, cfg.variable_length)
    n_rows = (torch.full((n_all,), float(raw.shape[2]), dtype=torch.float64) if lengths is None
              else lengths.to(torch.float64).clamp(0, raw.shape[2]))

    def fill(out: np.ndarray) -> None:
        for s in range(0, n_all, batch):
            _, mean_r, m2_r = row_moments(raw[s:s + batch], n_rows[s:s + batch])
            out[s:s + len(mean_r), 0] = mean_r.numpy()
            out[s:s + len(mean_r), 1] = m2_r.numpy()

    key = {**cache_key(frontend_cfg.model_dump(mode="json"), identity), "row_moments": "real frames" if
           lengths is not None else "all frames"}
    arr, _ = open_or_build(cache_dir(getattr(corpus, "root", None), cfg.feature_cache_dir), key,
                           (n_all, 2, raw.shape[1]), fill, dtype=np.float64)
    moments = torch.from_numpy(arr)
    return n_rows, moments[:, 0], moments[:, 1]


def shared_utterance_vectors(cfg: TrainConfig, corpus: CorpusLike, frontend_cfg: FrontendConfig,
                             identity: dict[str, Any] | None, device: torch.device | None = None) -> np.ndarray:
    """Every manifest row's utterance vector, (clips, n_features, 1) float32: openSMILE's
    functionals (clip by clip on this CPU) or an SSL encoder's layer means (on `device`: the
    trial's GPU when it has one). From the node's cache (computed here when no trial on this node
    has yet), or computed in memory when `identity` is None (no shared cache). Each clip's vector
    is taken over its speech, the manifest's valid_samples (the segment's zero padding is not part
    of the utterance); a manifest without them: each row up to its last non-zero sample."""
    waves = corpus.waveforms
    shape = (len(waves), frontend_cfg.n_features, 1)
    if "valid_samples" in corpus.manifest.columns:
        speech, how = corpus.manifest["valid_samples"].to_numpy().astype(np.int64), "valid_samples"
    else:
        speech, how = None, "trailing zeros stripped"
    frontend = build_frontend(frontend_cfg)
    on = str(device) if device is not None and device.type == "cuda" else "cpu"

    def fill(out: np.ndarray) -> None:
        try:
            for s in range(0, len(waves), frontend.block_rows):
                block = np.asarray(waves[s:s + frontend.block_rows], dtype=np.float32)
                lengths = speech_lengths(block) if speech is None else speech[s:s + len(block)]
                out[s:s + len(block), :, 0] = frontend.vectors(block, lengths, on, first_row=s, rows="manifest row")
        finally:
            frontend.release()

    if identity is None:
        arr = np.empty(shape, dtype=np.float32)
        fill(arr)
        return arr
    if frontend_cfg.kind == "ssl":
        key = ssl_cache_key(str(frontend_cfg.ssl_model), frontend_cfg.sample_rate, identity, how)
    else:
        key = functionals_cache_key(frontend_cfg.kind, frontend_cfg.sample_rate, identity, how)
    arr, _ = open_or_build(cache_dir(getattr(corpus, "root", None), cfg.feature_cache_dir), key, shape, fill)
    return arr


def functional_row_moments(raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`shared_row_moments` of functionals, which have one frame per row: each row's frame count
    is 1, its mean the row itself and its M2 zero, so no cache is needed for them."""
    n = len(raw)
    mean = raw[:, :, 0].to(torch.float64)
    return torch.ones(n, dtype=torch.float64), mean, torch.zeros_like(mean)
