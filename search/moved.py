"""Old module paths of `search`, kept importable after the packages were laid out by data flow.

Ray Tune pickles its experiment state (the searcher, scheduler, callbacks and the trainable)
with classes named by module path: a snapshot written before the move says
`search.pruning.PruningAwareOptunaSearch`. A meta-path finder maps each old path to the module
that holds those names now, on first import only, so `import search` stays cheap and the
packages that must not import Ray do not pull it in.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old path → the module that holds its names now
MOVED: dict[str, str] = {
    "search.config": "search.definition",
    "search.space": "search.definition.space",
    "search.pareto": "search.definition.objectives",
    "search.study": "search.driver.study",
    "search.pruning": "search.driver.searcher",
    "search.asha_state": "search.driver.asha",
    "search.mo_asha": "search.driver.mo_asha",
    "search.checkpoints": "search.driver.checkpoints",
    "search.driver_lock": "search.driver.lock",
    "search.warm_start": "search.driver.warm_start",
    "search.runner": "search.driver",
    "search.trainable": "search.worker.trainable",
    "search.overhead": "search.worker.overhead",
    "search.recorder": "search.recording.recorder",
    "search.trackers": "search.recording.trackers",
    "search.trackers_mlflow": "search.recording.mlflow_runs",
    "search.trackers_wandb": "search.recording.wandb_runs",
    "search.leaderboard": "search.analysis.leaderboard",
    "search.claims": "search.analysis.claims",
    "search.claims.arms": "search.analysis.claims.arms",
    "search.claims.file": "search.analysis.claims.file",
    "search.claims.model": "search.analysis.claims.model",
    "search.claims.report": "search.analysis.claims.report",
    "search.claims.stats": "search.analysis.claims.stats",
    "search.demo": "search.cli.demo",
    "search.demolog": "search.cli.demolog",
    "search.jobs": "search.cli.jobs",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module that replaced it (the same object, not a copy)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        module = importlib.import_module(new)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new), is_package=hasattr(module, "__path__"))


def install() -> None:
    """Put the finder on sys.meta_path once (ahead of the path finder: `search.claims` is a
    package no more, and no file answers the other old paths)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
