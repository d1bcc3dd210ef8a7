"""Spectrogram features: frontends run on the trial's device, and the normalisers fitted on them.

A package, one concept per module:
  config       FrontendConfig (the validated, sweepable description) and num_frames
  decibels     power_to_db, the per-example dB step every log frontend ends with
  frontends    the torch frontends (STFT, log-mel, MFCC) equal to librosa's output, the openSMILE
               functionals frontend, build_frontend
  functionals  openSMILE's utterance functionals (eGeMAPS, ComParE 2016), from the optional
               extra [baselines]
  ssl          frozen self-supervised encoders (WavLM, HuBERT, wav2vec 2.0, Whisper's encoder):
               every hidden layer's mean per clip, from the optional extra [ssl]
  moments      per-row / per-group (frames, mean, M2) statistics, merged exactly in float64
  normalizers  FeatureNormalizer (training-split statistics) and SpeakerNormalizer (per speaker)

Every name is re-exported here, so `from ser_core.features import X` and pickles that name
`ser_core.features.X` keep working. FEATURES_VERSION lives here, not in a submodule: it versions
the maths of the whole package, and ser_core.feature_cache reads it as `features.FEATURES_VERSION`.
"""
from __future__ import annotations

from .config import FrontendConfig, FrontendKind, PadMode, WindowName, num_frames
from .decibels import AMIN, power_to_db
from .frontends import MFCC, LogMelSpectrogram, LogPowerSpectrogram, OpenSmileFunctionals, SSLLayerMeans, build_frontend
from .functionals import FUNCTIONAL_SETS, FUNCTIONALS_VERSION, clip_functionals, is_functionals, speech_lengths
from .moments import group_statistics, merge_row_moments, row_moments, statistics_from_row_moments
from .normalizers import FeatureNormalizer, SpeakerNormalizer
from .ssl import SSL_VERSION, SSLEncoderError, clip_layer_means, encoder_shape

# The version of what this package computes for the node's spectrogram cache (functionals have
# their own, FUNCTIONALS_VERSION, in .functionals): the frontends'
# maths (windows, padding, STFT, mel filters, power_to_db, the DCT) and row_moments. The cache
# (ser_core/feature_cache.py) keys its files by it, with the librosa and torch releases, so BUMP
# IT WITH ANY CHANGE TO THAT MATHS, or a persistent cache keeps serving the old code's arrays.
FEATURES_VERSION = 1

__all__ = [
    "AMIN",
    "FEATURES_VERSION",
    "FUNCTIONALS_VERSION",
    "FUNCTIONAL_SETS",
    "MFCC",
    "FeatureNormalizer",
    "FrontendConfig",
    "FrontendKind",
    "LogMelSpectrogram",
    "LogPowerSpectrogram",
    "OpenSmileFunctionals",
    "SSLEncoderError",
    "SSLLayerMeans",
    "SSL_VERSION",
    "PadMode",
    "SpeakerNormalizer",
    "WindowName",
    "build_frontend",
    "clip_functionals",
    "clip_layer_means",
    "encoder_shape",
    "group_statistics",
    "is_functionals",
    "merge_row_moments",
    "num_frames",
    "power_to_db",
    "row_moments",
    "speech_lengths",
    "statistics_from_row_moments",
]
