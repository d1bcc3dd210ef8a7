"""The driver's session: the Ray cluster it joins (or starts on loopback), Tune's settings,
the corpus loaded once on the driver, the run's Tune RunConfig (callbacks, retries, checkpoint
policy), and the lock that keeps one driver per results directory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune

from search.recording.recorder import ParquetRecorder, moved_from
from search.recording.trackers import default_loggers
from search.results import ResultsStore
from search.results.location import TUNE_DIR, bind_results, filesystem, is_uri, join

from .checkpoints import SnapshotSafePruning, checkpoint_config
from .lock import SweepBusyError, hold_sweep


class SweepError(RuntimeError):
    """A sweep cannot start or resume; the message says why and what to do."""


@dataclass
class SweepOutcome:
    sweep_dir: str
    num_trials: int
    num_errors: int
    study_path: str | None              # the study's SQLite file on this machine, if it is one
    study_location: str | None = None   # where the study is (file, URL without password, store copy)


def default_node_ip() -> str | None:
    """Where a local Ray listens. On Linux every 127/8 address is loopback, and Ray keeps
    127.0.0.2 as given (it rewrites 127.0.0.1 to an outside interface), so a local sweep
    never leaves the machine. Elsewhere (macOS has only 127.0.0.1) Ray chooses.
    SER_SEARCH_NODE_IP overrides; "auto" means Ray's own choice."""
    env = os.environ.get("SER_SEARCH_NODE_IP")
    if env:
        return None if env == "auto" else env
    return "127.0.0.2" if platform.system() == "Linux" else None


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a private local one (token auth on)."""
    if ray.is_initialized():
        return
    # Inside a Ray Job (`ray job submit -- ser-search sweep ...`) RAY_ADDRESS names the cluster.
    address = address or os.environ.get("RAY_ADDRESS")
    # A new local cluster turns token auth on by itself (and writes ~/.ray/auth_token if
    # missing); joining a cluster takes the token from RAY_AUTH_TOKEN(_PATH) or that file.
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        ray.init(address=address, **quiet)
        return
    node_ip = default_node_ip()
    kwargs: dict[str, Any] = dict(address="local", include_dashboard=False, num_cpus=num_cpus, **quiet)
    if node_ip:
        kwargs["_node_ip_address"] = node_ip
    ray.init(**kwargs)


def configure_tune() -> None:
    # Tune's status tables would drown the one line per finished trial the recorder prints.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # The experiment snapshot a restore reads, every 2 s instead of every 10 s or more: a
    # killed driver's resume then replays at most ~2 s of each trial, and rarely a trial
    # that Parquet and Optuna already hold as finished (they keep its first outcome).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Tune keeps every checkpoint (search/driver/checkpoints.py deletes them); only the latest needs
    # its metrics in the snapshot, or the snapshot would grow by a result per epoch.
    os.environ.setdefault("TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE", "1")
    # Tune's own loggers only as search/recording/trackers.py lists them: its CSV and JSON logs always,
    # TensorBoard event files only where [logging] asks (Tune would add them whenever tensorboardX is installed).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def start(address: str | None, num_cpus: int | None, corpus: Any, prepared: Path, cpus: float,
           gpus: float) -> tuple[Any, dict[str, float], float]:
    """Connect to Ray, load the corpus once on the driver, size the trials' resources."""
    configure_tune()
    connect(address, num_cpus=num_cpus)
    if corpus is None:
        from ser_core.corpus import PreparedCorpus  # noqa: PLC0415 - only the driver loads it
        corpus = PreparedCorpus.load(prepared).in_memory()
    gpu_fraction = float(gpus) if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return corpus, {"cpu": cpus, "gpu": gpu_fraction}, gpu_fraction


def corpora_of(corpus: Any) -> tuple[str, ...] | None:
    return corpus.corpora() if hasattr(corpus, "corpora") else None


def prepared_id_of(corpus: Any) -> str | None:
    return getattr(corpus, "prepared_id", None)  # a corpus not loaded from disk has no identity


def run_config(run_dir: str, recorder: ParquetRecorder, max_failures: int,
                extra: tuple[tune.Callback, ...] = (), loggers: list[tune.Callback] | None = None) -> tune.RunConfig:
    loggers = default_loggers() if loggers is None else loggers
    return tune.RunConfig(
        # extra (the study's copy) before the recorder: a trial's outcome reaches the stored
        # study before its Parquet row, so a driver killed in between leaves no row Optuna lacks
        name=TUNE_DIR, storage_path=run_dir, callbacks=[*extra, recorder, SnapshotSafePruning(), *loggers],
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=checkpoint_config(),
        verbose=0,
    )


def restore(name: str, results: str, run_dir: str, trainable: Any, *, resume_errored: bool,
            echo: bool) -> tune.Tuner:
    """Tune's `Tuner.restore` of the run in `run_dir`, writing only under `results`. Tune moves
    its own trial directories and checkpoints to where it is restored from; the recorder in its
    snapshot still names the results location it was created with, so it is bound to this one
    (search.results.location.bind_results). A run first recorded elsewhere (its directory was
    moved or copied) says so in one line, and its rows' checkpoint paths move with it. The
    binding holds until `unbind_results(name)` (the caller's finally)."""
    bind_results(name, results)
    tuner = tune.Tuner.restore(join(run_dir, TUNE_DIR), trainable=trainable, resume_unfinished=True,
                               resume_errored=resume_errored)
    first = moved_from(name)
    if first is not None:
        old_dir = join(first, name)
        # checkpoint paths are filesystem paths (no scheme), as Tune's checkpoints give them
        moved = ResultsStore(results, name).rebase("checkpoint", filesystem(old_dir)[1].rstrip("/") + "/",
                                                   filesystem(run_dir)[1].rstrip("/") + "/")
        if echo:
            print(f"resume: {name!r} was first run in {old_dir}; it continues in {run_dir} and writes only there "
                  f"({moved} checkpoint path(s) of finished trials updated)", file=sys.stderr, flush=True)
    return tuner


def announce(what: str, n: int, address: str | None, resources: dict[str, float], run_dir: str) -> None:
    where = address or f"a local Ray ({ray.cluster_resources().get('CPU', 0):.0f} CPUs)"
    print(f"{what}: {n} trials on {where}, {resources['cpu']} CPU + {resources['gpu']} GPU per trial; "
          f"results in {run_dir}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def one_driver(results: str, run_dir: str, what: str) -> Iterator[None]:
    """Hold the run's results directory for this driver (search.driver.lock): a second driver
    on the same sweep or confirmation is refused with a SweepError while this one lives.
    Object-store results have no locks; there the rule is only documented."""
    if is_uri(results):
        yield
        return
    try:
        with hold_sweep(run_dir, what):
            yield
    except SweepBusyError as e:
        raise SweepError(str(e)) from None
