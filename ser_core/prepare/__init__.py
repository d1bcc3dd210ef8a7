"""Corpus preparation: adapters + audio decoding -> a prepared corpus directory (see
ser_core.corpus for the layout).

Preprocessing follows the CNN-Transformer paper (resample, mono, librosa silence trim, a fixed
3.5 s segment from the first non-silent frame, Gaussian-noise copies that triple the training
set), each step configurable. Folds are assigned here and stored per clip, so training can pick
any fold without preparing again. A bad file never stops a run: it is listed in
rejects.parquet with its reason and counted in the report.

A package, one step per module:
  options     PrepareOptions, what a run is asked to do
  candidates  the adapters' scan and the label filter (what is left out becomes a Reject)
  folds       the protocol's folds, or a benchmark's fold lists (--folds-from)
  decode      per-file decoding, trimming and noisy copies, in worker processes
  output      the output directory: never clobbered, installed atomically
  pipeline    prepare_corpora, the steps in order
  report      PrepareReport and its summary
  errors      PrepareError

The public names are re-exported here, so `from ser_core.prepare import X` and pickles naming
`ser_core.prepare.X` keep working.
"""
from __future__ import annotations

from .errors import PrepareError
from .folds import DEFAULT_FOLDS
from .options import PrepareOptions
from .pipeline import prepare_corpora
from .report import PrepareReport

__all__ = ["DEFAULT_FOLDS", "PrepareError", "PrepareOptions", "PrepareReport", "prepare_corpora"]
