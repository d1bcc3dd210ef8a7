"""Predict emotions of arbitrary audio files with a checkpoint written by `ser-search train`.

Files go through the same decoding, trimming and segmenting as the prepared corpus the model
was trained on, and the model gets each clip's true length in frames as it did in training and
evaluation (padding masked), so a prediction sees what training saw."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import AudioError, load_audio, trim_and_segment
from .config import TrainConfig
from .features import FeatureNormalizer, FrontendConfig, build_frontend, num_frames
from .train.setup import build_model, fused_functionals_config
from .train.state import load_checkpoint


@dataclass
class Prediction:
    path: Path
    label: str | None
    probabilities: dict[str, float]
    error: str | None = None


class Predictor:
    def __init__(self, checkpoint: dict[str, Any] | Path) -> None:
        state = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
        self.config = TrainConfig.model_validate(state["config"])
        self.frontend_cfg = FrontendConfig.model_validate(state["frontend"])
        self.labels: list[str] = list(state["labels"])
        # A cross-corpus model was trained on the shared classes only; it never predicts the rest.
        self.classes: list[str] = list(state.get("classes") or self.labels)
        self._class_index = torch.tensor([self.labels.index(c) for c in self.classes])
        self.segment_samples = int(state["segment_samples"])
        self.preprocessing = state.get("preprocessing", {})
        self.frontend = build_frontend(self.frontend_cfg)
        self.normalizer = FeatureNormalizer(self.frontend_cfg.n_features)
        self.normalizer.load_state_dict(state["normalizer"])
        self.model = build_model(self.config.model, self.frontend_cfg.n_features, len(self.labels),
                                 self.frontend_cfg.layers)
        # a fused model (model.fuse_functionals) reads each clip's functionals beside its spectrogram
        self.functionals: torch.nn.Module | None = None
        if self.config.model.fuse_functionals != "off":
            functionals_cfg = fused_functionals_config(self.config.model, self.frontend_cfg.sample_rate)
            self.functionals = build_frontend(functionals_cfg)
            self.functionals_normalizer = FeatureNormalizer(functionals_cfg.n_features)
            self.functionals_normalizer.load_state_dict(state["functionals_normalizer"])
        self.model.load_state_dict(state["model"])
        self.model.eval()

    def _waveform(self, path: Path) -> tuple[np.ndarray, int]:
        """The clip as the prepared corpus holds it, and its samples of speech before the padding
        (the manifest's `valid_samples`)."""
        sr = self.frontend_cfg.sample_rate
        audio = load_audio(path, sr, max_seconds=self.preprocessing.get("max_source_seconds", 60.0))
        return trim_and_segment(audio, sr, segment_samples=self.segment_samples,
                                top_db=self.preprocessing.get("trim_top_db", 30.0))

    def _lengths(self, valid_samples: list[int]) -> torch.Tensor | None:
        """True lengths in frames, exactly as training and evaluation compute them
        (ser_core.train.split_features.valid_frames); None for a model trained on whole padded
        segments."""
        if not self.config.variable_length:
            return None
        return torch.as_tensor([num_frames(self.frontend_cfg, int(s)) for s in valid_samples], dtype=torch.long)

    @torch.no_grad()
    def predict(self, paths: list[Path]) -> list[Prediction]:
        out: list[Prediction] = []
        good: list[tuple[Path, np.ndarray, int]] = []
        for p in paths:
            try:
                good.append((Path(p), *self._waveform(Path(p))))
            except AudioError as e:
                out.append(Prediction(Path(p), None, {}, error=str(e)))
        if good:
            x = torch.from_numpy(np.stack([w for _, w, _ in good]).astype(np.float32))
            lengths = self._lengths([v for _, _, v in good])
            feats = self.frontend(x)
            normalizer = self.normalizer
            if self.config.normalization == "speaker":
                # trained on per-speaker statistics: the files of one call are taken as one
                # speaker and normalised with their own (over real frames, as in training)
                normalizer = FeatureNormalizer(self.frontend_cfg.n_features).fit(
                    [feats if lengths is None else (feats, lengths)])
            inputs: tuple = (normalizer(feats), lengths)
            if self.functionals is not None:  # over each clip's speech, as the cache computed them
                u = self.functionals(x, lengths=torch.as_tensor([v for _, _, v in good]))
                u_norm = (self.functionals_normalizer if self.config.normalization != "speaker"
                          else FeatureNormalizer(u.shape[1]).fit([u]))  # as the spectrograms above
                inputs += (u_norm(u),)
            logits, _ = self.model(*inputs)
            probs = torch.softmax(logits.float()[:, self._class_index], dim=1).numpy()
            for (p, _, _), row in zip(good, probs):
                out.append(Prediction(p, self.classes[int(row.argmax())],
                                      {lab: float(v) for lab, v in zip(self.classes, row)}))
        order = {Path(p): i for i, p in enumerate(paths)}
        return sorted(out, key=lambda pr: order[pr.path])
