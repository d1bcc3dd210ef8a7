"""A restored run creates its new trials where it is restored from, not where it first ran.

Tune's `Tuner.restore` moves the trials of its snapshot to the restored location
(`Trial.set_storage`), but the search algorithm's pickled experiment spec keeps the storage of
the driver that saved it, so every trial the restored generator creates afterwards (a sweep's
remaining samples, a confirmation's remaining grid points) gets its directory, checkpoints and
result.json in the *old* directory, while Tune reads them from the new one ("Could not fetch
metrics ... result.json"). The generators here rebase that spec's storage onto the location this
driver bound for the run (search.results.location.bind_results) when they are restored.
"""
from __future__ import annotations

import copy
from typing import Any

from ray.tune.search import BasicVariantGenerator

from search.results.location import bound_results, filesystem, join


def rebase_storage(storage: Any) -> Any:
    """The StorageContext `storage` (a run's `<results>/<name>` as Tune's storage path) moved to
    the results location bound for `<name>` in this process; unchanged when none is bound or it
    already points there."""
    if storage is None:
        return storage
    name = str(storage.storage_fs_path).rstrip("/").rsplit("/", 1)[-1]
    here = bound_results(name)
    if here is None:
        return storage
    fs, path = filesystem(join(here, name))
    if path.rstrip("/") == str(storage.storage_fs_path).rstrip("/"):
        return storage
    moved = copy.copy(storage)
    moved.storage_filesystem = fs
    moved.storage_fs_path = path
    return moved


def rebase_spec(spec: dict[str, Any]) -> None:
    """Rebase an experiment spec's storage in place."""
    if spec.get("storage") is not None:
        spec["storage"] = rebase_storage(spec["storage"])


class RelocatingVariantGenerator(BasicVariantGenerator):
    """Tune's grid/random generator (a confirmation's grid), rebased on restore."""

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        for iterator in self._iterators:
            rebase_spec(iterator.unresolved_spec)
