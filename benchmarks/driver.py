"""The driver's ceiling: how many trial reports one Tune driver sustains through ser-search's
real driver path, what each report costs in ser-search's callbacks, and how the driver's memory
grows with the number of trials (issue 24, "the driver's ceiling, measured").

Why: a sweep over a cluster sends every epoch report of every trial through one process, the Tune
driver, whose callbacks run inline with Ray Tune's event loop. Training is not what is measured
here, so each trial is a cheap stand-in that reports like `search/worker/trainable.py` (the same
metric keys every epoch: epoch, train_loss, val_loss, val_ua, val_wa, best_val_ua, epoch_seconds,
the cost metrics, node, the overhead breakdown; on the last epoch the `final_*` keys and
`final_json` with the confusion matrices; a checkpoint directory with every report) and trains
nothing. Everything else is the product's:

  product       `search.driver.run_sweep` on a sweep file written to --workdir (demo.toml's search
                space; num_samples, concurrency and ASHA rungs from the flags): seeded TPE through
                PruningAwareOptunaSearch (the pruned bridge) on the SQLite study beside the
                results, ASHA with its rung state in Tune's snapshots, the ParquetRecorder, the
                checkpoint policy (SnapshotSafePruning, keep_latest_checkpoints), StudyMirror,
                Tune's CSV/JSON loggers, the product's Tune settings (search.driver.session).
                The stand-in replaces `search.driver.sweep.make_trainable` in the driver process
                (a monkeypatch: nothing in the product changes).
  plain         the floor set by Ray Tune and Optuna: the same stand-in, trial count, space, TPE
                seed, ConcurrencyLimiter, ASHAScheduler rungs, actor reuse, loggers and Tune
                settings, with Ray's stock OptunaSearch on the same kind of SQLite study, and none
                of ser-search's callbacks, searcher bridge, rung state or checkpoint pruning.
  plain-memory  plain with Optuna's in-memory storage: plain minus plain-memory is what the
                SQLite study costs the driver.

Each (configuration, trial count) runs in a fresh child process with its own local Ray (2 CPUs
unless --num-cpus; each trial asks for CPUs / --concurrent, so exactly --concurrent trials fit, each
in a reused Ray actor, as on a cluster whose GPUs bound the trials), so memory and Ray's state never
carry over. (With room for more actors than trials, e.g. --cpus-per-trial 0.01, Tune starts actors
ahead for trials it cannot run yet and the machine spends its CPUs starting Python processes.) The stand-in reports as
fast as the driver takes reports (Tune's function trainable blocks each report until the driver
has fetched it; --epoch-seconds adds a sleep per epoch), so the driver is the bottleneck.

Printed, per trial count and configuration:
  rep/s                 reports per second sustained: reports Tune processed between the first and
                        the last report, over that span (the actors' start-up before it and the
                        sweep's end after it are shown apart)
  wall ms, CPU ms       the driver's wall time per report (1 / rep/s) and its CPU time per report
                        (the driver process's user+system CPU over the run / reports); rep/CPU-s =
                        1000 / CPU ms, the rate a driver with a core of its own could reach; vs
                        plain: both over plain's (the issue's target: product <= 1.20x plain)
  per report            p50 / p99 / max of the time one report spends in ser-search's callbacks
                        (ParquetRecorder.on_trial_result + SnapshotSafePruning.on_checkpoint), and
                        in the searcher's on_trial_result (Optuna's intermediate value in the
                        study; ser-search's bridge or Ray's stock OptunaSearch)
  per trial             suggest (TPE + the study's writes), the searcher's and the recorder's
                        on_trial_complete, Tune's experiment snapshots; and how each hook's cost
                        moved over the sweep (median of the first vs the last tenth of its calls)
  RSS                   the driver's resident memory (/proc, sampled every --sample-s) before the
                        sweep, at its end, its peak, and growth per 1,000 trials (least-squares
                        slope of RSS over ended trials: whole run, and second half); product minus
                        plain is ser-search's share (target: below Ray's own)
  where the time goes   shares of the first..last report span per layer, each hook without the
                        timed hooks it called: Optuna (searcher hooks), ser-search's callbacks,
                        Tune's loggers, ASHA, Tune's own result / checkpoint handling and
                        experiment snapshots, the driver idle in ray.wait (waiting for the trials'
                        actors: where this is large, the driver is not the bottleneck), and the
                        rest (Tune's event loop, actor calls, trial start/stop); the largest named
                        layer and the setting that lifts it
  ceiling               per report: Ray Tune alone (plain-memory's CPU), what the SQLite study adds
                        (plain - plain-memory), what ser-search adds (product - plain); the largest
And the recorder micro-benchmark (no Ray): a ParquetRecorder on a results directory already
holding --rows epoch rows (written with store.upsert_epochs in batches), driven with --reports
stand-in reports through `on_trial_result` (the hot path) and ~--reports/30 trial ends through
`on_trial_complete` (pruned and completed); p50/p99 per call at each size and the ratio of the
p99 at the largest size to the one at the smallest (target: within 2x from 1k to 100k rows).

    python benchmarks/driver.py                                   # 100 / 1,000 / 10,000 trials + micro
    python benchmarks/driver.py --trials 100 --rows 1000 10000    # a quick check (~8 min on 2 cores)
    python benchmarks/driver.py --trials 1000 --configs product plain --skip-micro
    python benchmarks/driver.py --from-json FILE       # print the figures a --json run saved

On the 2-core machine the workers' processes share the CPUs with the driver, so the sustained rate
is a driver-plus-workers figure; the CPU-per-report figures are the driver's alone.
"""
from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("product", "plain", "plain-memory")
DEMO_SWEEP = ROOT / "search" / "sweeps" / "demo.toml"
METRIC = "best_val_ua"  # search.driver.sweep.METRIC
TINY_MODEL = ('{ name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, '
              'n_layers = 1, ff_dim = 64 }')  # the demo's model (only validated: nothing trains)
# the cost metrics every report carries (ser_core.cost.COST_METRICS); stand-in values, measured by no one
STANDIN_COST = {"params": 48_712, "macs": 21_504_000, "latency_ms": 1.9}


# ----------------------------------------------------------------------------- the stand-in trial


def standin_quality(params: dict[str, Any]) -> float:
    """A trial's plateau validation UA, fixed by its parameters (so TPE and ASHA see structure)."""
    digest = hashlib.md5(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return 0.3 + 0.4 * (int(digest[:8], 16) / 0xFFFFFFFF)


def standin_metrics(epoch: int, max_epochs: int, quality: float, best: float, rng: random.Random,
                    node: str, seconds: float, labels: tuple[str, ...], started: float) -> dict[str, Any]:
    """One epoch's report with the keys search/worker/trainable.py reports (the final keys on the
    last epoch), values drawn to look like a learning curve."""
    val_ua = max(0.0, min(1.0, quality * (1 - math.exp(-epoch / 2.5)) + rng.gauss(0, 0.01)))
    best = max(best, val_ua)
    now = time.time()
    phases = {"process_objects": 0.0, "config": 0.0012, "cost": 0.31, "fit_data": 0.05, "fit_model": 0.02,
              "checkpoint_report": 0.004 * epoch, "fit_between_epochs": 0.001 * epoch, "final_eval": 0.0}
    overhead = {"phases": phases, "reused": True, "trial_in_process": 2, "pid": os.getpid(),
                "process_started_at": started - 5.0, "entered_at": started, "peak_rss_mib": 412.3,
                "memory_mib": {"rss": 401.2, "pss": 233.9, "private_dirty": 180.2, "private_clean": 0.1}}
    metrics: dict[str, Any] = {
        "epoch": epoch, "train_loss": 2.0 * math.exp(-epoch / 3) + rng.random() * 0.05,
        "val_loss": 2.1 * math.exp(-epoch / 4) + rng.random() * 0.05, "val_ua": val_ua,
        "val_wa": max(0.0, min(1.0, val_ua + rng.gauss(0, 0.02))), "best_val_ua": best,
        "epoch_seconds": seconds, "node": node, **STANDIN_COST,
    }
    if epoch >= max_epochs:  # the trainable's final report: the best epoch's evaluation
        n = len(labels)
        conf = [[(6 if i == j else 1) for j in range(n)] for i in range(n)]
        for split, ua in (("val", best), ("test", best - 0.03)):
            metrics.update({f"final_{split}_ua": ua, f"final_{split}_wa": ua + 0.01,
                            f"final_{split}_precision_macro": ua - 0.01, f"final_{split}_recall_macro": ua,
                            f"final_{split}_f1_macro": ua - 0.02})
        metrics.update({"final_best_epoch": epoch, "final_epochs_run": epoch, "final_compactness_val": 0.41,
                        "final_compactness_test": 0.43, "final_train_seconds": seconds * epoch})
        metrics["final_json"] = json.dumps({"labels": list(labels), "classes": list(labels), "classes_dropped": {},
                                            "confusion_val": conf, "confusion_test": conf})
    metrics.update({"overhead_json": json.dumps(overhead), "peak_rss_mib": 412.3, "reported_at": now})
    return metrics


def make_standin(max_epochs: int, epoch_seconds: float, checkpoint_bytes: int,
                 labels: tuple[str, ...]) -> Callable[[dict[str, Any], Any], None]:
    """A function trainable with `ser_trial`'s signature (params, corpus) that trains nothing:
    it reports every epoch with a checkpoint (trial_state.pt of `checkpoint_bytes`; best.pt too
    on the last epoch, as the real one), resumes from its checkpoint's epoch, and ends after
    `max_epochs` (the sweep's TrainConfig epochs). Defined in the benchmark's __main__, so Ray
    pickles it by value: workers need nothing of this file."""

    def standin_trial(params: dict[str, Any], corpus: Any) -> None:
        import ray  # noqa: PLC0415
        from ray import tune  # noqa: PLC0415

        started = time.time()
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                start = json.loads(Path(d, "standin.json").read_text())["epoch"]
        if start >= max_epochs:
            return
        node = ray.util.get_node_ip_address()
        quality = standin_quality(params)
        rng = random.Random(quality)
        best = 0.0
        for epoch in range(start + 1, max_epochs + 1):
            t0 = time.perf_counter()
            if epoch_seconds > 0:
                time.sleep(epoch_seconds)
            metrics = standin_metrics(epoch, max_epochs, quality, best, rng, node,
                                      time.perf_counter() - t0, labels, started)
            best = metrics["best_val_ua"]
            with tempfile.TemporaryDirectory() as d:
                Path(d, "standin.json").write_text(json.dumps({"epoch": epoch}))
                Path(d, "trial_state.pt").write_bytes(b"\0" * checkpoint_bytes)
                if epoch >= max_epochs:
                    Path(d, "best.pt").write_bytes(b"\0" * checkpoint_bytes)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return standin_trial


# ----------------------------------------------------------------------------- timing the hooks


class Ledger:
    """Seconds per call of each timed hook; per report, the seconds of each group's hooks that
    handled it (keyed by trial id and training_iteration)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)  # each call's seconds, nested hooks included
        self.excl: dict[str, list[float]] = defaultdict(list)   # the same without the timed hooks it called
        self.starts: dict[str, list[float]] = defaultdict(list)  # perf_counter at each call's start
        self.local = threading.local()  # per thread: .stack of open timed calls, .depth per group
        self.per_report: dict[str, dict[tuple[str, int], float]] = defaultdict(lambda: defaultdict(float))
        self.report_times: list[float] = []  # perf_counter at each result Tune processed
        self.trials_done = 0
        self.actors_started = 0


LEDGER = Ledger()


def _arg(args: tuple, kwargs: dict, name: str, index: int) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


def _key_callback_result(args: tuple, kwargs: dict) -> tuple[str, int] | None:
    trial, result = _arg(args, kwargs, "trial", 2), _arg(args, kwargs, "result", 3)
    return (trial.trial_id, result.get("training_iteration")) if trial is not None and result else None


def _key_searcher_result(args: tuple, kwargs: dict) -> tuple[str, int] | None:
    trial_id, result = _arg(args, kwargs, "trial_id", 0), _arg(args, kwargs, "result", 1)
    return (trial_id, result.get("training_iteration")) if trial_id and result else None


def _key_checkpoint(args: tuple, kwargs: dict) -> tuple[str, int] | None:
    trial = _arg(args, kwargs, "trial", 2)  # Tune has just set last_result to the report it saves
    return (trial.trial_id, (trial.last_result or {}).get("training_iteration")) if trial is not None else None


def timed(cls: type, method: str, hook: str, group: str,
          report_key: Callable[[tuple, dict], Any] | None = None, after: Callable[[], None] | None = None) -> None:
    """Wrap `cls.method` (in this process only) so each outermost call within `group` is timed
    into LEDGER.calls[hook] (a hook calling another of its group, e.g. the searcher's
    on_trial_complete calling its on_trial_result, counts once)."""
    orig = getattr(cls, method, None)
    if orig is None:
        print(f"  (not timed: {cls.__name__}.{method} does not exist in this Ray)", flush=True)
        return

    @functools.wraps(orig)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        local = LEDGER.local
        if not hasattr(local, "stack"):
            local.stack, local.depth = [], defaultdict(int)
        if local.depth[group]:
            return orig(self, *args, **kwargs)
        local.depth[group] += 1
        frame = [0.0]  # seconds of the timed hooks this call makes
        local.stack.append(frame)
        t0 = time.perf_counter()
        try:
            return orig(self, *args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            local.stack.pop()
            if local.stack:
                local.stack[-1][0] += dt
            local.depth[group] -= 1
            LEDGER.calls[hook].append(dt)
            LEDGER.excl[hook].append(dt - frame[0])
            LEDGER.starts[hook].append(t0)
            if report_key is not None:
                key = report_key(args, kwargs)
                if key is not None:
                    LEDGER.per_report[group][key] += dt
            if after is not None:
                after()

    setattr(cls, method, wrapper)


def time_ray_tune() -> None:
    """Ray Tune's own work on the driver, in every configuration: each result's processing
    (scheduler, searcher and callbacks inside it), each checkpoint's, the experiment snapshots,
    ASHA's decisions, the CSV/JSON loggers."""
    from ray.tune.execution.tune_controller import TuneController  # noqa: PLC0415
    from ray.tune.logger.logger import LoggerCallback  # noqa: PLC0415
    from ray.tune.schedulers.async_hyperband import AsyncHyperBandScheduler  # noqa: PLC0415

    orig = TuneController._process_trial_result

    @functools.wraps(orig)
    def process(self: Any, trial: Any, result: dict) -> Any:
        LEDGER.report_times.append(time.perf_counter())
        return orig(self, trial, result)

    TuneController._process_trial_result = process
    import ray  # noqa: PLC0415
    from ray.actor import ActorClass  # noqa: PLC0415

    wait = ray.wait

    @functools.wraps(wait)
    def timed_wait(*args: Any, **kwargs: Any) -> Any:  # the driver idle, waiting for the trials' actors
        t0 = time.perf_counter()
        try:
            return wait(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            LEDGER.calls["ray.wait"].append(dt)
            LEDGER.excl["ray.wait"].append(dt)
            LEDGER.starts["ray.wait"].append(t0)
            stack = getattr(LEDGER.local, "stack", None)
            if stack:  # inside a timed hook: not that hook's own time
                stack[-1][0] += dt

    ray.wait = timed_wait
    remote = ActorClass._remote

    @functools.wraps(remote)
    def counted_remote(self: Any, *args: Any, **kwargs: Any) -> Any:  # a new actor: a Python process to start
        LEDGER.actors_started += 1
        return remote(self, *args, **kwargs)

    ActorClass._remote = counted_remote
    timed(TuneController, "_process_trial_result", "tune.result", "tune.result")
    timed(TuneController, "_on_saving_result", "tune.checkpoint", "tune.checkpoint")
    timed(TuneController, "checkpoint", "tune.snapshot", "tune.snapshot")  # called every step; due or not
    timed(TuneController, "save_to_dir", "tune.save_to_dir", "tune.save_to_dir")  # a snapshot taken
    timed(AsyncHyperBandScheduler, "on_trial_result", "asha.on_trial_result", "asha")
    timed(LoggerCallback, "on_trial_result", "loggers.on_trial_result", "loggers")


def _count_done() -> None:
    LEDGER.trials_done += 1


def time_product() -> None:
    """ser-search's hooks on the driver, wrapped in this process (the product is not changed)."""
    from search.driver.asha import AshaRungState  # noqa: PLC0415
    from search.driver.checkpoints import SnapshotSafePruning  # noqa: PLC0415
    from search.driver.searcher import PruningAwareOptunaSearch  # noqa: PLC0415
    from search.driver.study import StudyMirror  # noqa: PLC0415
    from search.recording.recorder import ParquetRecorder  # noqa: PLC0415

    for hook in ("on_trial_start", "on_trial_complete", "on_trial_error", "get_state", "on_experiment_end"):
        if hook in vars(ParquetRecorder):  # the hooks this version of the recorder has
            timed(ParquetRecorder, hook, f"recorder.{hook}", "recorder")
    timed(ParquetRecorder, "on_trial_result", "recorder.on_trial_result", "recorder", _key_callback_result)
    timed(PruningAwareOptunaSearch, "suggest", "searcher.suggest", "searcher")
    timed(PruningAwareOptunaSearch, "on_trial_result", "searcher.on_trial_result", "searcher", _key_searcher_result)
    timed(PruningAwareOptunaSearch, "on_trial_complete", "searcher.on_trial_complete", "searcher", after=_count_done)
    timed(SnapshotSafePruning, "on_checkpoint", "pruning.on_checkpoint", "pruning", _key_checkpoint)
    timed(SnapshotSafePruning, "get_state", "pruning.get_state", "pruning")
    timed(AshaRungState, "get_state", "asha_state.get_state", "asha_state")
    for hook in ("on_trial_start", "on_trial_complete", "get_state"):
        timed(StudyMirror, hook, f"mirror.{hook}", "mirror")


def time_plain() -> None:
    from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

    timed(OptunaSearch, "suggest", "searcher.suggest", "searcher")
    timed(OptunaSearch, "on_trial_result", "searcher.on_trial_result", "searcher", _key_searcher_result)
    timed(OptunaSearch, "on_trial_complete", "searcher.on_trial_complete", "searcher", after=_count_done)


def rss_mib() -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource  # noqa: PLC0415

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def cpu_s() -> float:
    """This process's user + system CPU seconds, all threads."""
    t = os.times()
    return t.user + t.system


class MemorySampler:
    """The driver's RSS every `every` seconds, with the finished-trial and report counts then."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.samples: list[tuple[float, float, int, int]] = []  # (t, rss MiB, trials done, reports)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        self.samples.append((time.perf_counter(), rss_mib(), LEDGER.trials_done, len(LEDGER.report_times)))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than 3 distinct x."""
    if len({x for x, _ in points}) < 3:
        return None
    mx, my = statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


GROWTH_HOOKS = ("searcher.suggest", "searcher.on_trial_result", "searcher.on_trial_complete",
                "recorder.on_trial_result", "recorder.on_trial_complete", "tune.save_to_dir", "tune.result")


def early_late(values: list[float], floor: float = 0.0) -> tuple[float | None, float | None]:
    """Median of the first and of the last tenth of the calls (at least 3 each) that took more
    than `floor` seconds: a hook whose cost grows with the sweep shows it here."""
    values = [v for v in values if v > floor]
    k = max(3, len(values) // 10)
    if len(values) < 2 * k:
        return None, None
    return statistics.median(values[:k]), statistics.median(values[-k:])


def dist(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "total": sum(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": max(values) if values else None, "mean": statistics.fmean(values) if values else None}


# ----------------------------------------------------------------------------- the sweep file


def demo_section(name: str, path: Path = DEMO_SWEEP) -> str:
    """A section of the demo sweep, verbatim (the benchmark searches what users run)."""
    import re  # noqa: PLC0415

    text = path.read_text(encoding="utf-8")
    m = re.search(rf"^\[{name}\][^\n]*\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if m is None:
        raise SystemExit(f"driver benchmark: no [{name}] section in {path}")
    return f"[{name}]\n" + m.group(1).strip() + "\n"


def sweep_toml(name: str, args: argparse.Namespace, trials: int) -> str:
    return f"""# Written by benchmarks/driver.py; the [space] is search/sweeps/demo.toml's. Nothing trains:
# the trainable is a stand-in (benchmarks/driver.py make_standin).
[sweep]
name = "{name}"
description = "benchmarks/driver.py: {trials} stand-in trials"
num_samples = {trials}
max_concurrent_trials = {args.concurrent}
cover_choices = true
seed = {args.seed}

[data]
prepared = "{args.workdir / 'no-corpus'}"
fold = 0

[scheduler]
max_epochs = {args.max_epochs}
grace_period = {args.grace_period}
reduction_factor = {args.reduction_factor:g}

[resources]
cpus_per_trial = {args.cpus_per_trial:g}
gpus_per_trial = 0

{demo_section("space")}
[base]
device = "cpu"
model = {TINY_MODEL}
frontend = {{ n_mels = 40 }}
optim = {{ name = "adamw", weight_decay = 1e-4 }}
"""


def write_sweep(args: argparse.Namespace, name: str, trials: int) -> Path:
    path = args.workdir / "sweeps" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sweep_toml(name, args, trials), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- one configuration (child)


def private_ray() -> None:
    """A local Ray of the benchmark's own; workers import this checkout's packages."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, paths)])
    os.environ.pop("RAY_ADDRESS", None)


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration at one trial count in this process and return its figures."""
    import ray  # noqa: PLC0415

    from ser_core.labels import EMOTIONS  # noqa: PLC0415
    from search.definition import load_sweep  # noqa: PLC0415
    from search.driver.session import configure_tune, connect  # noqa: PLC0415

    config, trials = args.child, args.trials[0]
    private_ray()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"driver-{config}-{trials}-{stamp}"
    sweep = load_sweep(write_sweep(args, name, trials))
    results = args.workdir / "results"
    standin = make_standin(args.max_epochs, args.epoch_seconds, args.checkpoint_kib * 1024, tuple(EMOTIONS))
    corpus = {"stand_in": True}  # a corpus without evaluation_split: run_sweep's protocol check is skipped

    time_ray_tune()
    if config == "product":
        import search.driver.sweep as driver_sweep  # noqa: PLC0415
        driver_sweep.make_trainable = lambda to_config: standin  # the one swap: the trainable
        time_product()
    else:
        time_plain()
    configure_tune()  # the product's Tune settings in every configuration (snapshot period, loggers)
    t0 = time.perf_counter()
    connect(None, num_cpus=args.num_cpus)
    ray_start_s = time.perf_counter() - t0
    gc.collect()

    def progress() -> None:
        while not done.wait(args.progress_s):
            print(f"    [{config} {trials}] {time.perf_counter() - w0:6.0f} s: {LEDGER.trials_done} trials ended, "
                  f"{len(LEDGER.report_times)} reports, driver RSS {rss_mib():.0f} MiB",
                  flush=True)

    done = threading.Event()
    statuses: dict[str, int] = {}
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with MemorySampler(args.sample_s) as mem:
        cpu0, w0 = cpu_s(), time.perf_counter()
        threading.Thread(target=progress, daemon=True).start()
        try:
            if config == "product":
                outcome = driver_sweep.run_sweep(sweep, str(results), corpus=corpus, echo=False)
                errors = outcome.num_errors
            else:
                errors = run_plain(sweep, results / name, standin, corpus, config == "plain", args)
        finally:
            done.set()
        w1, cpu1 = time.perf_counter(), cpu_s()
    if config == "product":
        from search.results import read_epochs, read_trials  # noqa: PLC0415
        rows = read_trials(str(results / name))
        statuses = rows["status"].value_counts().to_dict() if len(rows) else {}
        epoch_rows = len(read_epochs(str(results / name)))
    else:
        epoch_rows = None
    ray.shutdown()
    if not args.keep:
        shutil.rmtree(results / name, ignore_errors=True)

    calls = {hook: dist(v) for hook, v in LEDGER.calls.items()}
    per_report = {group: list(v.values()) for group, v in LEDGER.per_report.items()}
    ser = ("recorder", "pruning")  # ser-search's callbacks that see every report
    keys = set().union(*(LEDGER.per_report[g].keys() for g in ser)) if config == "product" else set()
    ser_per_report = [sum(LEDGER.per_report[g].get(k, 0.0) for g in ser) for k in keys]
    searcher_keys = set(LEDGER.per_report["searcher"])
    both_per_report = [sum(LEDGER.per_report[g].get(k, 0.0) for g in (*ser, "searcher"))
                       for k in keys | searcher_keys]
    rt = LEDGER.report_times
    samples = mem.samples
    growth = [(d, rss) for _, rss, d, _ in samples if d >= 1]
    late = [(d, rss) for d, rss in growth if d >= trials / 2]
    return {
        "config": config, "trials": trials, "errors": errors, "statuses": statuses, "epoch_rows": epoch_rows,
        "ray_start_s": ray_start_s, "wall_s": w1 - w0,
        "cpu_s": cpu1 - cpu0,
        "reports": len(rt), "trials_done": LEDGER.trials_done, "actors_started": LEDGER.actors_started,
        "sustained_rps": (len(rt) - 1) / (rt[-1] - rt[0]) if len(rt) > 1 and rt[-1] > rt[0] else None,
        "first_report_s": rt[0] - w0 if rt else None, "after_last_report_s": w1 - rt[-1] if rt else None,
        "rss_start": samples[0][1], "rss_end": samples[-1][1], "rss_peak": max(s[1] for s in samples),
        "rss_per_1000": None if (s := _slope(growth)) is None else 1000 * s,
        "rss_per_1000_late": None if (s := _slope(late)) is None else 1000 * s,
        "load": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "growth": {hook: early_late(LEDGER.calls[hook]) for hook in GROWTH_HOOKS if LEDGER.calls.get(hook)}
        # the prunes that did work (its get_state returns at once between them)
        | ({"pruning.get_state (> 1 ms)": early_late(LEDGER.calls["pruning.get_state"], 0.001)}
           if LEDGER.calls.get("pruning.get_state") else {}),
        # between the first and the last report: each hook's own seconds (without the timed hooks it called)
        "window_s": rt[-1] - rt[0] if len(rt) > 1 else 0.0,
        "window_excl": {hook: sum(x for t, x in zip(LEDGER.starts[hook], LEDGER.excl[hook]) if rt[0] <= t <= rt[-1])
                        for hook in LEDGER.excl} if rt else {},
        "calls": calls, "ser_per_report": dist(ser_per_report),
        "searcher_per_report": dist(per_report.get("searcher", [])),
        "both_per_report": dist(both_per_report),
    }


def run_plain(sweep: Any, run_dir: Path, standin: Callable, corpus: Any, sqlite: bool,
              args: argparse.Namespace) -> int:
    """Ray Tune + stock OptunaSearch + ASHAScheduler, nothing of ser-search's driver."""
    import optuna  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415
    from ray.tune.schedulers import ASHAScheduler  # noqa: PLC0415
    from ray.tune.search import ConcurrencyLimiter  # noqa: PLC0415
    from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

    from search.recording.trackers import default_loggers  # noqa: PLC0415 - Tune's CSV + JSON loggers

    run_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}") if sqlite else None
    searcher = OptunaSearch(space=sweep.define_by_run, metric=METRIC, mode="max", storage=storage,
                            study_name=sweep.sweep.name, sampler=optuna.samplers.TPESampler(seed=sweep.sweep.seed),
                            points_to_evaluate=sweep.covering_points() or None)
    trainable = tune.with_resources(tune.with_parameters(standin, corpus=corpus),
                                    {"cpu": sweep.resources.cpus_per_trial, "gpu": 0})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=sweep.sweep.max_concurrent_trials),
            scheduler=ASHAScheduler(time_attr="epoch", max_t=sweep.scheduler.max_epochs,
                                    grace_period=sweep.scheduler.grace_period,
                                    reduction_factor=sweep.scheduler.reduction_factor),
            num_samples=sweep.sweep.num_samples, reuse_actors=sweep.resources.reuse_actors),
        run_config=tune.RunConfig(name="tune", storage_path=str(run_dir), callbacks=default_loggers(),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=None), verbose=0),
    )
    grid = tuner.fit()
    return sum(1 for r in grid if r.error is not None)


# ----------------------------------------------------------------------------- the recorder micro-benchmark


def micro_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """ParquetRecorder.on_trial_result / on_trial_complete per call, on a results directory
    already holding `rows` epoch rows, for each of --rows. No Ray: fake trial objects."""
    import optuna  # noqa: PLC0415

    from ser_core.labels import EMOTIONS  # noqa: PLC0415
    from search.definition import load_sweep  # noqa: PLC0415
    from search.recording.recorder import ParquetRecorder  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    epochs_per_trial = args.max_epochs
    for rows in args.rows:
        name = f"driver-micro-{rows}-{stamp}"
        sweep = load_sweep(write_sweep(args, name, 100))
        results = args.workdir / "micro"
        recorder = ParquetRecorder(name, sweep.trial_config, str(results), 0.0, echo=False)
        store = recorder.store
        t0 = time.perf_counter()
        rng = random.Random(rows)
        batch: list[dict[str, Any]] = []
        for i in range(rows):
            trial, epoch = divmod(i, epochs_per_trial)
            batch.append({"sweep": name, "trial_id": f"pre{trial:07d}", "epoch": epoch + 1,
                          "train_loss": rng.random(), "val_loss": rng.random(), "val_ua": rng.random(),
                          "val_wa": rng.random(), "best_val_ua": rng.random(), "seconds": 1.0})
            if len(batch) == args.prefill_batch or i == rows - 1:
                store.upsert_epochs(batch)
                batch = []
        for flush in ("flush", "close"):  # a store that buffers (append-only parts): written before timing
            if callable(getattr(store, flush, None)):
                getattr(store, flush)()
                break
        prefill_s = time.perf_counter() - t0
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rows))
        n_trials = max(2, math.ceil(args.reports / 3))
        report_s: list[float] = []
        pruned_s: list[float] = []
        completed_s: list[float] = []
        made = 0
        warm = SimpleNamespace(trial_id="warmup", config={}, last_result=None, checkpoint=None)
        for epoch in range(1, 11):  # untimed: first calls pay for imports, caches, the writer's start
            result = standin_metrics(epoch, 99, 0.5, 0.0, random.Random(0), "127.0.0.2", 0.5, tuple(EMOTIONS),
                                     time.time())
            recorder.on_trial_result(iteration=0, trials=[], trial=warm, result=result | {"training_iteration": epoch})
        for j in range(n_trials):
            ot = study.ask()
            constants = sweep.define_by_run(ot) or {}  # samples into ot.params, returns the fixed axes
            params = {k: v for k, v in (dict(ot.params) | constants).items() if k in sweep.space}
            completes = j % 5 == 4  # every fifth trial reaches the last epoch, the others are pruned
            last = args.max_epochs if completes else min(3, args.max_epochs - 1) or 1
            trial = SimpleNamespace(trial_id=f"new{j:05d}", config=params, last_result=None, checkpoint=None)
            recorder.on_trial_start(iteration=0, trials=[], trial=trial)
            quality, best = standin_quality(params), 0.0
            rrng = random.Random(j)
            # the epochs before a completed trial's last few are written untimed (only 3 timed per trial)
            first_timed = max(1, last - 2)
            for epoch in range(1, last + 1):
                result = standin_metrics(epoch, args.max_epochs, quality, best, rrng, "127.0.0.2", 0.5,
                                         tuple(EMOTIONS), time.time())
                best = result["best_val_ua"]
                result["training_iteration"] = epoch
                result["trial_id"] = trial.trial_id
                s = time.perf_counter()
                recorder.on_trial_result(iteration=made, trials=[], trial=trial, result=result)
                if epoch >= first_timed and len(report_s) < args.reports:
                    report_s.append(time.perf_counter() - s)
                made += 1
                trial.last_result = result
            if completes:
                trial.checkpoint = SimpleNamespace(path=str(results / name / "tune" / trial.trial_id / "checkpoint_8"))
            s = time.perf_counter()
            recorder.on_trial_complete(iteration=made, trials=[], trial=trial)
            (completed_s if completes else pruned_s).append(time.perf_counter() - s)
        for flush in ("flush", "close"):
            if callable(getattr(store, flush, None)):
                s = time.perf_counter()
                getattr(store, flush)()
                flush_s = time.perf_counter() - s
                break
        else:
            flush_s = None
        if callable(getattr(store, "close", None)):  # a background writer stops with its store
            store.close()
        out.append({"rows": rows, "prefill_s": prefill_s, "report": dist(report_s), "pruned": dist(pruned_s),
                    "completed": dist(completed_s), "flush_s": flush_s})
        print(f"  {rows:>8,} rows: on_trial_result p50 {ms(out[-1]['report']['p50'])} p99 "
              f"{ms(out[-1]['report']['p99'])} ms ({len(report_s)} reports; prefill {prefill_s:.1f} s)", flush=True)
        if not args.keep:
            shutil.rmtree(results / name, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- printing


def ms(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else f"{1000 * v:{spec}}"


def fmt(v: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def machine() -> str:
    import optuna  # noqa: PLC0415
    import ray  # noqa: PLC0415

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "memory unknown"
    return (f"{model}, {os.cpu_count()} logical CPUs, {memory}, "
            f"load average {load:.1f}; ray {ray.__version__}, optuna {optuna.__version__}, "
            f"Python {platform.python_version()}")


def _own(r: dict[str, Any], *prefixes: str) -> float:
    """Seconds of the hooks named by `prefixes` (without the timed hooks they called) between the
    first and the last report."""
    return sum(v for h, v in r["window_excl"].items() if h.startswith(prefixes))


def _total(r: dict[str, Any], *hooks: str) -> float:
    return sum(r["calls"].get(h, {}).get("total", 0.0) for h in hooks)


def breakdown(r: dict[str, Any]) -> dict[str, float]:
    """Seconds of the span between the first and the last report per layer, each hook counted
    without the timed hooks it called (so Tune's result handling excludes the searcher's and the
    callbacks' time inside it); the rest is Tune's event loop, actor calls, trial start/stop."""
    parts = {
        "Optuna (searcher: suggest, report, tell)": _own(r, "searcher."),
        "ser-search callbacks (recorder, checkpoint pruning, rung state, study mirror)":
            _own(r, "recorder.", "pruning.", "asha_state.", "mirror."),
        "Tune's CSV/JSON loggers": _own(r, "loggers."),
        "ASHA's decisions": _own(r, "asha."),
        "Tune: result handling (own part)": _own(r, "tune.result"),
        "Tune: checkpoint handling (own part)": _own(r, "tune.checkpoint"),
        "Tune: experiment snapshots (own part)": _own(r, "tune.snapshot", "tune.save_to_dir"),
    }
    parts["idle: waiting for the trials' actors (ray.wait)"] = _own(r, "ray.wait")
    parts["rest: Tune's event loop, actor calls, trial start/stop"] = max(0.0, r["window_s"] - sum(parts.values()))
    return parts


LIFTS = {
    "Ray Tune": "Ray Tune's own per-report cost (event loop, one actor call per report and one per checkpoint): "
                "report less often, checkpoint less often, or shard the sweep over several drivers",
    "Optuna": "an RDB server for the study: [sweep] optuna_storage = \"postgresql://...\" (or --optuna-storage); "
              "TPE's own cost grows with the trials it reads",
    "ser-search": "the largest of ser-search's hooks listed above (the recorder's writes; SnapshotSafePruning's "
                  "get_state, which reads the whole stored snapshot back at most every PRUNE_EVERY_S)",
    "Tune's CSV": "fewer Tune loggers (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS is already set; CSV/JSON stay)",
    "ASHA": "fewer rungs (grace_period, reduction_factor)",
    "Tune: result": "fewer reports (report every k epochs) or TUNE_RESULT_BUFFER_LENGTH (no effect with a "
                    "checkpoint per report)",
    "Tune: checkpoint": "fewer checkpoints (Tune handles each one as a second actor call)",
    "Tune: experiment": "a longer snapshot period: TUNE_GLOBAL_CHECKPOINT_S (ser-search sets 2 s; a snapshot "
                        "serialises every trial, so its cost grows with the trial count)",
    "rest": "more trials per actor call is Ray Tune's own limit: concurrency beyond what the event loop "
            "turns over does not raise the rate",
}


def per_report(r: dict[str, Any]) -> tuple[float | None, float | None]:
    """Wall seconds per report (1 / sustained rate) and the driver's CPU seconds per report."""
    wall = 1 / r["sustained_rps"] if r["sustained_rps"] else None
    return wall, (r["cpu_s"] / r["reports"] if r["reports"] else None)


def print_sweeps(results: list[dict[str, Any]]) -> None:
    by = {(r["config"], r["trials"]): r for r in results}
    for n in sorted({r["trials"] for r in results}):
        plain = by.get(("plain", n))
        print(f"\n{n:,} trials")
        print(f"  {'':<13}{'wall s':>7}{'reports':>8}{'rep/s':>7}{'wall ms':>9}{'CPU ms':>8}{'rep/CPU-s':>10}"
              f"{'vs plain':>14}{'RSS MiB start/end/peak':>24}{'MiB/1k trials':>15}{'load':>11}")
        for config in CONFIGS:
            r = by.get((config, n))
            if r is None:
                continue
            wall_per, cpu_per = per_report(r)
            vs = ""
            if plain is not None and config != "plain":
                pw, pc = per_report(plain)
                if wall_per and pw and cpu_per and pc:
                    vs = f"{wall_per / pw:.2f}x/{cpu_per / pc:.2f}x"
            load = "/".join(fmt(v, ".1f") for v in r.get("load", [None, None]))
            print(f"  {config:<13}{r['wall_s']:>7.0f}{r['reports']:>8}{fmt(r['sustained_rps']):>7}"
                  f"{ms(wall_per, '.1f'):>9}"
                  f"{ms(cpu_per, '.1f'):>8}{fmt(1 / cpu_per if cpu_per else None):>10}{vs:>14}"
                  f"{r['rss_start']:>12.0f}/{r['rss_end']:.0f}/{r['rss_peak']:.0f}"
                  f"{fmt(r['rss_per_1000'], '.0f') + ' (' + fmt(r.get('rss_per_1000_late'), '.0f') + ')':>15}"
                  f"{load:>11}")
        print("  rep/s: reports per second sustained (first..last report); wall ms, CPU ms: the driver's wall\n"
              "  time and CPU time per report; rep/CPU-s: reports per second of driver CPU, the rate a driver\n"
              "  with a core of its own could reach if nothing else limited it; vs plain: wall/CPU per report\n"
              "  over plain's (target <= 1.20x); MiB/1k trials: slope of the driver's RSS over ended trials, whole\n"
              "  run (second half); load: the machine's 1-minute load average at the start/end (2 cores: above\n"
              "  ~2, the figures are contended)")
        for config in CONFIGS:
            r = by.get((config, n))
            if r is None:
                continue
            c = r["calls"]
            print(f"  {config}: {r['trials_done']} trials ended ({r['errors']} errors"
                  + (f"; trials.parquet {', '.join(f'{v} {k}' for k, v in sorted(r['statuses'].items()))}, "
                     f"{r['epoch_rows']} epoch rows" if r["statuses"] else "")
                  + f"), Ray started in {r['ray_start_s']:.1f} s, {r.get('actors_started', '?')} trial actors started")
            if config == "product":
                ours = [h for h in sorted(c) if h.startswith(("recorder.", "pruning.", "asha_state.", "mirror."))]
                print("    ser-search's hooks in all: " + "; ".join(
                    f"{h} {c[h]['total']:.1f} s ({c[h]['n']} calls, max {ms(c[h]['max'], '.0f')} ms)"
                    for h in ours if c[h]["total"] >= 0.05))
                s, b = r["ser_per_report"], r["both_per_report"]
                print(f"    per report, ser-search's callbacks (recorder.on_trial_result + pruning.on_checkpoint): "
                      f"p50 {ms(s['p50'])} p99 {ms(s['p99'])} max {ms(s['max'])} ms; with the searcher's "
                      f"on_trial_result: p50 {ms(b['p50'])} p99 {ms(b['p99'])} ms")
            q = r["searcher_per_report"]
            print(f"    per report, the searcher's on_trial_result (Optuna's intermediate value"
                  f"{', in SQLite' if config != 'plain-memory' else ', in memory'}): p50 {ms(q['p50'])} "
                  f"p99 {ms(q['p99'])} ms")
            per_trial = [("searcher.suggest", "suggest"), ("searcher.on_trial_complete", "searcher end"),
                         ("recorder.on_trial_complete", "recorder end")]
            snap = c.get("tune.save_to_dir", {})
            print("    per trial: " + "; ".join(f"{label} p50 {ms(c[h]['p50'])} p99 {ms(c[h]['p99'])} ms"
                                                for h, label in per_trial if h in c)
                  + f"; Tune's experiment snapshots: {snap.get('n', 0)}, p50 {ms(snap.get('p50'))} p99 "
                    f"{ms(snap.get('p99'))} ms, {fmt(c.get('tune.snapshot', {}).get('total'), '.1f')} s in all with "
                    f"their upload")
            growth = r.get("growth", {})
            if growth:
                print("    over the sweep, median of the first -> last tenth of calls: " + "; ".join(
                    f"{h} {ms(a)} -> {ms(b)} ms" for h, (a, b) in growth.items() if a is not None))
            if "window_excl" not in r:  # figures saved by an earlier version of this script
                continue
            parts, span = breakdown(r), r["window_s"] or float("nan")
            top = max((k for k in parts if not k.startswith(("rest", "idle"))), key=parts.get)
            print(f"    where the time goes between the first and the last report ({span:.0f} s; "
                  f"{r['first_report_s']:.0f} s before it: actors start, study, Tune; {r['after_last_report_s']:.0f} s "
                  f"after it: trials stop, final snapshot, checkpoints, study finished): "
                  + ", ".join(f"{k} {100 * v / span:.0f} %" for k, v in parts.items()))
            lift = next((v for k, v in LIFTS.items() if top.startswith(k)), "")
            print(f"    largest named layer: {top} ({parts[top]:.1f} s, {100 * parts[top] / span:.0f} %); "
                  f"what lifts it: {lift}")
    memory_note(results)
    ceiling_note(results)


def memory_note(results: list[dict[str, Any]]) -> None:
    by = {(r["config"], r["trials"]): r for r in results}
    print()
    for n in sorted({r["trials"] for r in results}):
        p, q = by.get(("product", n)), by.get(("plain", n))
        if not (p and q):
            continue
        for label, key in (("whole run", "rss_per_1000"), ("second half", "rss_per_1000_late")):
            a, b = p.get(key), q.get(key)
            if a is None or b is None:
                continue
            share = a - b
            print(f"RSS growth at {n:,} trials ({label}): product {a:.1f} MiB per 1,000 trials, plain (Ray + "
                  f"Optuna) {b:.1f}: ser-search's share {share:.1f} MiB per 1,000 trials "
                  f"({'below' if share < b else 'NOT below'} Ray's own; target: below)")


def ceiling_note(results: list[dict[str, Any]]) -> None:
    """Per report: what Ray Tune alone costs the driver (plain-memory), what the SQLite study adds
    (plain - plain-memory), what ser-search adds (product - plain); the largest is the ceiling."""
    by = {(r["config"], r["trials"]): r for r in results}
    searcher = ("searcher.suggest", "searcher.on_trial_result", "searcher.on_trial_complete")
    for n in sorted({r["trials"] for r in results}):
        p, s, m = by.get(("product", n)), by.get(("plain", n)), by.get(("plain-memory", n))
        layers: dict[str, float] = {}
        if sum(x is not None for x in (p, s, m)) < 2:
            continue
        print(f"ceiling at {n:,} trials, driver ms per report (CPU; wall in the hooks):")
        if m and m["reports"]:
            cpu = 1000 * m["cpu_s"] / m["reports"]
            layers["Ray Tune"] = cpu
            print(f"  Ray Tune + ASHA + loggers (plain-memory): CPU {cpu:.1f} ms -> at most {1000 / cpu:.0f} reports/s "
                  f"on a core of its own; Tune's snapshots {1000 * _total(m, 'tune.snapshot') / m['reports']:.1f} ms")
        if s and m and s["reports"] and m["reports"]:
            cpu = 1000 * (s["cpu_s"] / s["reports"] - m["cpu_s"] / m["reports"])
            hooks = 1000 * (_total(s, *searcher) / s["reports"] - _total(m, *searcher) / m["reports"])
            layers["Optuna"] = max(cpu, hooks)
            print(f"  + Optuna's SQLite study (plain - plain-memory): CPU {cpu:+.1f} ms, searcher hooks' wall "
                  f"{hooks:+.1f} ms "
                  f"(suggest, intermediate value, tell; SQLite commits included)")
        if p and s and p["reports"] and s["reports"]:
            cpu = 1000 * (p["cpu_s"] / p["reports"] - s["cpu_s"] / s["reports"])
            own = 1000 * sum(v["total"] for h, v in p["calls"].items()
                             if h.startswith(("recorder.", "pruning.", "asha_state.", "mirror."))) / p["reports"]
            bridge = 1000 * (_total(p, *searcher) / p["reports"] - _total(s, *searcher) / s["reports"])
            layers["ser-search"] = max(cpu, own + bridge)
            print(f"  + ser-search (product - plain): CPU {cpu:+.1f} ms; its callbacks {own:.1f} ms, the searcher "
                  "bridge "
                  f"{bridge:+.1f} ms per report (vs stock OptunaSearch)")
        if layers:
            top = max(layers, key=layers.get)
            print(f"  the ceiling: {top} ({layers[top]:.1f} ms per report); what lifts it: "
                  + next(v for k, v in LIFTS.items() if k.startswith(top) or top.startswith(k.split(':')[0])))


def print_micro(micro: list[dict[str, Any]]) -> None:
    print("\nrecorder micro-benchmark (ParquetRecorder driven directly, no Ray): ms per call vs epoch rows "
          "already written")
    print(f"  {'rows':>9}{'prefill s':>10}{'report p50':>11}{'p99':>8}{'max':>8}{'pruned end p50':>16}{'p99':>8}"
          f"{'completed end p50':>19}{'p99':>8}")
    for m in micro:
        print(f"  {m['rows']:>9,}{m['prefill_s']:>10.1f}{ms(m['report']['p50']):>11}{ms(m['report']['p99']):>8}"
              f"{ms(m['report']['max']):>8}{ms(m['pruned']['p50']):>16}{ms(m['pruned']['p99']):>8}"
              f"{ms(m['completed']['p50']):>19}{ms(m['completed']['p99']):>8}"
              + (f"   (final flush {m['flush_s'] * 1000:.1f} ms)" if m["flush_s"] is not None else ""))
    if len(micro) >= 2:
        lo, hi = micro[0], micro[-1]
        for what, key in (("on_trial_result", "report"), ("on_trial_complete (pruned)", "pruned"),
                          ("on_trial_complete (completed)", "completed")):
            a, b = lo[key]["p99"], hi[key]["p99"]
            if a and b:
                print(f"  {what}: p99 at {hi['rows']:,} rows / p99 at {lo['rows']:,} rows = {b / a:.2f}x "
                      + ("(target: <= 2x from 1k to 100k rows)" if key == "report" else ""))


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 10000],
                   help="sweep sizes, num_samples (default 100 1000 10000)")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                   help="what runs at each size (default: all three)")
    p.add_argument("--concurrent", type=int, default=16, help="max_concurrent_trials (default 16)")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="Ray CPUs per trial (default: the local Ray's CPUs / --concurrent: exactly --concurrent fit)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--max-epochs", type=int, default=9, help="ASHA max_t, the stand-in's epochs (default 9)")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA grace period (default 1)")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--epoch-seconds", type=float, default=0.0, help="the stand-in's sleep per epoch (default 0)")
    p.add_argument("--checkpoint-kib", type=int, default=4, help="the stand-in's checkpoint file size (default 4)")
    p.add_argument("--seed", type=int, default=0, help="TPE seed")
    p.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000],
                   help="micro-benchmark: epoch rows already written (default 1000 10000 100000)")
    p.add_argument("--reports", type=int, default=300, help="micro-benchmark: timed reports per size (default 300)")
    p.add_argument("--prefill-batch", type=int, default=10000, help="micro-benchmark: rows per prefill upsert")
    p.add_argument("--skip-micro", action="store_true", help="no recorder micro-benchmark")
    p.add_argument("--skip-sweeps", action="store_true", help="only the recorder micro-benchmark")
    p.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling period (default 0.5 s)")
    p.add_argument("--progress-s", type=float, default=30.0, help="a progress line every so often (default 30 s)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ser-search-bench" / "driver",
                   help="sweep files, results (deleted after each run unless --keep), child logs")
    p.add_argument("--keep", action="store_true", help="keep each run's results directory")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    p.add_argument("--from-json", type=Path, default=None,
                   help="run nothing: print the figures a --json file (or a child's JSON in WORKDIR/logs) holds")
    p.add_argument("--child", choices=CONFIGS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.trials) < 1 or args.concurrent < 1 or args.max_epochs < 1:
        p.error("--trials, --concurrent and --max-epochs must be >= 1")
    if not 1 <= args.grace_period <= args.max_epochs or args.reduction_factor <= 1:
        p.error("need 1 <= --grace-period <= --max-epochs and --reduction-factor > 1")
    args.workdir = args.workdir.resolve()
    if args.cpus_per_trial is None:
        cpus = args.num_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        args.cpus_per_trial = math.floor(10_000 * cpus / args.concurrent) / 10_000  # Ray's resource precision
    if args.cpus_per_trial <= 0:
        p.error("--cpus-per-trial must be > 0")
    return args


def child_command(args: argparse.Namespace, config: str, trials: int, out: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", config, "--out", str(out),
           "--trials", str(trials), "--concurrent", str(args.concurrent), "--cpus-per-trial", str(args.cpus_per_trial),
           "--max-epochs", str(args.max_epochs), "--grace-period", str(args.grace_period),
           "--reduction-factor", str(args.reduction_factor), "--epoch-seconds", str(args.epoch_seconds),
           "--checkpoint-kib", str(args.checkpoint_kib), "--seed", str(args.seed), "--sample-s", str(args.sample_s),
           "--progress-s", str(args.progress_s), "--workdir", str(args.workdir)]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if args.keep:
        cmd.append("--keep")
    return cmd


def run_in_child(args: argparse.Namespace, config: str, trials: int) -> dict[str, Any] | None:
    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out, log = logs / f"{config}-{trials}-{stamp}.json", logs / f"{config}-{trials}-{stamp}.log"
    t0 = time.perf_counter()
    print(f"  running {config} at {trials:,} trials (child log {log})", flush=True)
    with open(log, "w") as err:
        proc = subprocess.Popen(child_command(args, config, trials, out), stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=ROOT)
        try:
            for line in proc.stdout:  # progress lines; the rest (Ray's warnings) goes to the log
                if line.startswith("    ["):
                    print(line.rstrip(), flush=True)
                else:
                    err.write(line)
                    err.flush()
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    took = time.perf_counter() - t0
    if rc != 0 or not out.exists():
        tail = log.read_text(errors="replace").splitlines()[-25:]
        print(f"  {config} at {trials:,} trials FAILED (exit {rc}) after {took:.0f} s; the end of {log}:\n    "
              + "\n    ".join(tail), flush=True)
        return None
    result = json.loads(out.read_text())
    result["child_s"] = took
    print(f"  {config} at {trials:,} trials: {took:.0f} s in all (Ray's start and stop included)", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        saved = saved if "sweeps" in saved else {"sweeps": [saved], "micro": []}  # one child's figures
        if saved["sweeps"]:
            print_sweeps(saved["sweeps"])
        if saved["micro"]:
            print_micro(saved["micro"])
        return
    if args.child:
        figures = run_child(args)
        args.out.write_text(json.dumps(figures))
        return
    print(f"driver benchmark: {' / '.join(f'{n:,}' for n in args.trials)} stand-in trials, {args.concurrent} at a "
          f"time ({args.cpus_per_trial:g} CPU each), ASHA max {args.max_epochs} epochs (grace {args.grace_period}, "
          f"reduction {args.reduction_factor:g}), a {args.checkpoint_kib} KiB checkpoint per report, "
          f"{args.epoch_seconds:g} s per epoch; configurations: {', '.join(args.configs)}")
    print(f"  machine: {machine()}", flush=True)
    results: list[dict[str, Any]] = []
    micro: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        if not args.skip_sweeps:
            for n in args.trials:
                for config in args.configs:
                    r = run_in_child(args, config, n)
                    if r is not None:
                        results.append(r)
                print_sweeps([r for r in results if r["trials"] == n])
        if not args.skip_micro:
            print(f"\nrecorder micro-benchmark at {', '.join(f'{r:,}' for r in args.rows)} epoch rows", flush=True)
            micro = micro_benchmark(args)
    except KeyboardInterrupt:
        print("\ninterrupted: printing what was measured", flush=True)
    if len({r["trials"] for r in results}) > 1:
        print("\n=== all sizes ===")
        print_sweeps(results)
    if micro:
        print_micro(micro)
    print(f"\ndriver benchmark: {time.perf_counter() - t_all:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"sweeps": results, "micro": micro}, indent=1))


if __name__ == "__main__":
    main()
