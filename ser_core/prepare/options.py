"""What a preparation run is asked to do: the validated PrepareOptions.

Kept apart from the pipeline so callers (the CLI, sweeps, tests) can build and validate options,
and protocol.json's description of the folds (fold_protocol, fold_assignment) follows from them,
without importing the audio and parquet machinery.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PrepareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sample_rate: int = Field(16000, gt=0, description="target rate in Hz (soxr resampling)")
    segment_seconds: float = Field(3.5, gt=0, description="fixed clip length after trimming")
    trim_top_db: float | None = Field(30.0, gt=0, description="librosa trim threshold; None = no trim")
    protocol: Literal["speaker", "utterance", "session"] = "speaker"
    n_folds: int | None = Field(None, ge=3, description="None = protocol default: 5 speaker folds, "
                                "10 utterance folds (80/10/10), one fold per session")
    augment_copies: int = Field(2, ge=0, description="noisy copies per clip; 0 disables augmentation")
    augment_snr_db: float = Field(20.0, description="SNR of the added Gaussian noise")
    iemocap_four_class: bool = False
    # "shared": every corpus on the 8-class EMOTIONS; "native": each corpus's own classes
    # (ser_core.corpora.label_maps.NATIVE_LABELS), e.g. EmoDB's 7 with boredom.
    labels: Literal["shared", "native"] = "shared"
    standard_folds: bool = Field(False, description="speaker protocol: the fixed speaker folds of "
                                 "ser_core.splits.STANDARD_SPEAKER_FOLDS instead of greedy balanced ones")
    folds_from: tuple[Path, ...] = Field((), description="EmoBox corpus folders or test lists whose folds "
                                         "replace the protocol's (ser_core.fold_lists)")
    max_source_seconds: float = Field(60.0, gt=0, description="decode at most this much of each file")
    seed: int = Field(0, ge=0)
    # Measured on EmoDB (454 clips, 2 cores): 1 worker 8.5 s, 2 spawned workers 20 s. A clip
    # costs ~3 ms; each worker pays ~3 s of librosa/numba start-up and the waveforms are
    # pickled back. Worth it only for corpora of many thousands of long clips.
    workers: int = Field(1, ge=1, description="decoding processes (1 = in-process)")

    @model_validator(mode="after")
    def _consistent(self) -> "PrepareOptions":
        if self.max_source_seconds < self.segment_seconds:
            raise ValueError(f"max_source_seconds ({self.max_source_seconds}) must be at least "
                             f"segment_seconds ({self.segment_seconds})")
        if self.protocol == "session" and self.n_folds is not None:
            raise ValueError("n_folds cannot be set with the session protocol (one fold per session)")
        if self.standard_folds and (self.protocol != "speaker" or self.n_folds is not None):
            raise ValueError("standard_folds is a speaker protocol with its own fold count: use it with "
                             "protocol 'speaker' and without n_folds")
        if self.folds_from and (self.protocol != "speaker" or self.n_folds is not None or self.standard_folds):
            raise ValueError("folds_from replaces the protocol's folds: do not combine it with a protocol, "
                             "n_folds or standard_folds")
        return self

    @property
    def fold_protocol(self) -> str:
        """The protocol protocol.json records: a benchmark's lists need not be speaker folds."""
        return "folds-from" if self.folds_from else self.protocol

    @property
    def fold_assignment(self) -> str:
        """How the folds were made (protocol.json's `fold_assignment`)."""
        if self.folds_from:
            return "fold lists"
        if self.protocol == "speaker":
            return "standard speaker folds" if self.standard_folds else "greedy balanced speaker groups"
        return "stratified by label" if self.protocol == "utterance" else "one fold per session"
