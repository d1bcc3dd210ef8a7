"""Training and evaluating one trial.

Read the modules in the order a trial runs:

- `results`: what a trial hands back (EpochReport, FitResult, FoldsResult) and what it needs of
  a corpus (CorpusLike): the contracts other packages read;
- `setup`: the device, the seed, the model, and the trial's tensors (`prepare_trial`), with
  `split_features`, `spectrograms` and `speakers` beneath it;
- `state`: the resumable state, each checkpoint's writing beside its reading;
- `evaluation`: a split's predictions, and the final evaluation of the selected epoch;
- `run`: one fold's model, loss and optimisers, and one epoch of training (FoldRun);
- `folds`: k fold runs in lockstep, selected on their mean (FoldsRun);
- `loop`: `fit`, the epoch loop that runs either.

Every name this package has always offered is importable from it (`from ser_core.train import
fit`), and pickles that name `ser_core.train.<name>` still load. The names are looked up on
first use rather than imported here, so that a reader of checkpoints (ser_core.predict) or the
cost model (ser_core.cost), which import `ser_core.train.setup` / `.state`, loads neither the
training loop nor its optimisers: importing a submodule runs this file first.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for readers and type checkers
    from .evaluation import final_evaluation, predict
    from .folds import FoldsRun
    from .loop import fit, fit_folds
    from .results import CorpusLike, EpochCallback, EpochReport, FitResult, FoldsResult, NonFiniteLossError
    from .run import FoldRun
    from .setup import (TrialData, build_model, prepare_trial, resolve_device, seed_everything,
                        trained_split_features, trained_split_inputs)
    from .split_features import RowFeatures, SplitFeatures, keep_on_device
    from .state import load_checkpoint, save_checkpoint

__all__ = [
    "CorpusLike", "EpochCallback", "EpochReport", "FitResult", "FoldRun", "FoldsResult", "FoldsRun",
    "NonFiniteLossError", "RowFeatures", "SplitFeatures", "TrialData", "build_model", "final_evaluation", "fit",
    "fit_folds", "keep_on_device", "load_checkpoint", "predict", "prepare_trial", "resolve_device",
    "save_checkpoint", "seed_everything", "trained_split_features", "trained_split_inputs",
]

# The submodules in reading order: a name of __all__ is served by the first that has it.
_MODULES = ("results", "setup", "split_features", "state", "evaluation", "run", "folds", "loop")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            found = importlib.import_module(f".{module}", __name__)
            if hasattr(found, name):
                globals()[name] = value = getattr(found, name)  # looked up once
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
