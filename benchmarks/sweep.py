"""A 64-trial ASHA sweep end to end, through the product's own `search.driver.run_sweep`.

Why: the packing and epoch benchmarks time training; a sweep also pays for everything around it —
Ray starting a process per trial, the corpus reaching the trial, fit's setup, a checkpoint and a
Parquet row per epoch, ASHA stopping trials. This script runs a real sweep (sweep file written to
--workdir, modelled on search/sweeps/demo.toml with the demo's search space read from that file:
8 loss families x 2 frontends + lr and family parameters, `cover_choices` on) on a private local
Ray, and reads its own results back from trials.parquet / epochs.parquet.

Printed:
  trials/hour          finished trials / the run_sweep call's wall time (Ray is started before it,
                       timed separately; end to end includes it)
  GPU busy fraction    nvidia-smi sampled every 0.5 s during run_sweep: share of samples with
                       utilization.gpu > 0, and the mean utilisation; "n/a" on CPU
  scheduling overhead  per trial: its wall time (trials.parquet started_at..finished_at, both
                       stamped by the driver) minus the sum of its epochs' `seconds`
                       (epochs.parquet): process start, imports, corpus hand-over, fit's setup,
                       per-epoch checkpoints and reports, the final test evaluation, stopping.
                       Mean and median. Shown apart: run_sweep's own start (until the first
                       trial starts) and finish, and trial-slot time outside any trial (queueing
                       between trials, the sweep's ragged end).
  epochs spent         sum of epochs_run vs the same search without early stopping
                       (num_samples x max_epochs). That baseline is computed, not run, unless
                       --run-fifo: then the same sweep file runs again with grace_period =
                       max_epochs — ASHA without a rung before the last epoch, i.e. FIFO — and its
                       figures are measured too. It is the same search (space, seed, covering
                       first trials), but TPE's later proposals follow its own results.

    python benchmarks/sweep.py --device cuda [--trials 64] [--max-epochs 8] [--gpu-fraction 0.25]
    python benchmarks/sweep.py --trials 8 --max-epochs 3            # small CPU mode, tiny model
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import ray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import default_workdir  # noqa: E402
from benchmarks.packing import (  # noqa: E402
    GpuSampler, describe_machine, fmt, interrupt_on_signals, start_benchmark)
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.labels import EMOTIONS  # noqa: E402
from search.definition import SweepConfig, load_sweep  # noqa: E402
from search.worker.overhead import OVERHEAD_JSON  # noqa: E402
from search.results import read_epochs, read_trials  # noqa: E402
from search.driver.sweep import connect, run_sweep  # noqa: E402

DEMO_SWEEP = ROOT / "search" / "sweeps" / "demo.toml"
# The demo's model (a CPU epoch takes seconds) and the paper's (TrainConfig defaults).
MODELS = {
    "tiny": ('{ name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, '
             'n_layers = 1, ff_dim = 64 }', 40),
    "paper": ('{ name = "cnn_transformer" }', 64),
}


def demo_space(path: Path = DEMO_SWEEP) -> str:
    """The [space] section of the demo sweep, verbatim, so the benchmark searches what users run."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SystemExit(f"sweep benchmark: cannot read the demo sweep {path}: {e}") from None
    m = re.search(r"^\[space\][^\n]*\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if m is None:
        raise SystemExit(f"sweep benchmark: no [space] section in {path}")
    return "[space]\n" + m.group(1).strip() + "\n"


def sweep_toml(name: str, args: argparse.Namespace, prepared: Path, grace_period: int) -> str:
    model, n_mels = MODELS[args.model]
    cuda = args.device == "cuda"
    max_train = f"max_train_clips = {args.max_train_clips}\n" if args.max_train_clips else ""
    return f"""# Written by benchmarks/sweep.py; the [space] is search/sweeps/demo.toml's.
[sweep]
name = "{name}"
description = "benchmarks/sweep.py: {args.trials} trials, {args.model} CNN-Transformer, {args.device}"
num_samples = {args.trials}
max_concurrent_trials = {args.concurrent}
cover_choices = true
seed = {args.seed}

[data]
prepared = "{prepared}"
fold = 0
{max_train}
[scheduler]
max_epochs = {args.max_epochs}
grace_period = {grace_period}
reduction_factor = {args.reduction_factor:g}

[resources]
cpus_per_trial = {args.cpus_per_trial:g}
gpus_per_trial = {args.gpu_fraction if cuda else 0:g}

{demo_space()}
[base]
device = "{'auto' if cuda else 'cpu'}"
model = {model}
frontend = {{ n_mels = {n_mels} }}
optim = {{ name = "adamw", weight_decay = 1e-4 }}
"""


@dataclass
class SweepFigures:
    label: str
    trials: int
    statuses: dict[str, int]
    ray_start_s: float
    sweep_s: float
    interrupted: bool
    overhead: pd.Series           # seconds per trial
    epoch_share: float            # sum of epoch seconds / sum of trial wall time
    lead_s: float                 # run_sweep's start until the first trial started
    tail_s: float                 # the last trial's end until run_sweep returned
    slot_gap_s: float             # per trial: idle trial slots between the first start and the last end
    epochs_spent: int
    epochs_rows: int
    epochs_no_stopping: int
    best_val_ua: float | None
    best_test_ua: float | None
    gpu_busy: float | None
    gpu_util: float | None
    breakdown: pd.DataFrame | None = None  # seconds per phase per trial (overhead_breakdown)


    @property
    def trials_per_hour(self) -> float:
        return 3600 * self.trials / self.sweep_s

    @property
    def trials_per_hour_end_to_end(self) -> float:
        return 3600 * self.trials / (self.sweep_s + self.ray_start_s)


# The phases of search/worker/overhead.py in the order a trial pays them, with what each holds.
PHASES = {
    "launch": "the trial's process started -> the trainable entered (Ray's worker boot, unpickling the "
              "trainable with its imports, the corpus from the object store; 0 in a reused actor). Paid "
              "before the driver stamps the trial's start, so outside wall - epochs",
    "process_objects": "a process's first trial: torch._dynamo imported, the process's objects frozen out of "
                       "the garbage collector's sight (search.worker.trainable.freeze_process_objects; 0 after)",
    "config": "the trial's config, its resume checkpoint",
    "cost": "the model's parameters, MACs and single-clip latency on its device (ser_core.cost)",
    "fit_protocol": "fit: an earlier trial's garbage collected and its heap trimmed, device, frontend config, "
                    "protocol split, targets",
    "fit_waveforms": "fit: the split's waveforms to the device",
    "fit_spectrograms_and_normalizer": "fit: spectrograms + normaliser statistics (before the shared cache)",
    "fit_feature_cache": "fit: the node's shared spectrogram cache opened (or computed once per node)",
    "fit_normalizer": "fit: normaliser statistics from the cached spectrograms",
    "fit_normalize": "fit: features normalised / copied for the trial",
    "fit_model": "fit: model, loss, optimisers",
    "fit_between_epochs": "fit, between epochs outside their timed seconds",
    "checkpoint_report": "a checkpoint and a tune.report per epoch",
    "final_eval": "the best epoch's test evaluation (its validation outputs are kept from that epoch)",
    "rest": "wall - epochs - the above: the last report, stopping, the driver's bookkeeping",
}


def overhead_breakdown(sweep_dir: str, trials: pd.DataFrame, in_epochs: pd.Series) -> pd.DataFrame | None:
    """Seconds per phase per trial, from the last `overhead_json` each trial reported (Tune's
    result.json under <sweep>/tune/); `launch` from the trial's process start and entry stamps,
    `rest` from the driver's started_at/finished_at. Ray stamps a trial's start when its trainable
    is entered, so a trial's full cost outside epochs is (wall - epochs) + launch: the `total`.
    None when no trial reported a breakdown."""
    rows = {}
    for path in Path(sweep_dir, "tune").glob("*/result.json"):
        last = None
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if OVERHEAD_JSON in line:
                    last = line
        if last is None:
            continue
        result = json.loads(last)
        info = json.loads(result[OVERHEAD_JSON])
        rows[result["trial_id"]] = {**info["phases"], "_entered_at": info.get("entered_at"),
                                    "_process_started_at": info.get("process_started_at"),
                                    "_reused": bool(info.get("reused")), "peak_rss_mib": info.get("peak_rss_mib"),
                                    "pss_mib": info.get("memory_mib", {}).get("pss"),
                                    "private_mib": (info.get("memory_mib", {}).get("private_dirty", 0.0)
                                                    + info.get("memory_mib", {}).get("private_clean", 0.0)) or None}
    if not rows:
        return None
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(trials["trial_id"])
    wall = (trials["finished_at"] - trials["started_at"]).dt.total_seconds().to_numpy()
    reused = df["_reused"].fillna(False).astype(bool)
    df["launch"] = (df["_entered_at"] - df["_process_started_at"]).where(~reused, 0.0)
    phase_cols = [c for c in PHASES if c in df.columns and c not in ("rest", "launch")]  # inside the wall
    df["rest"] = wall - in_epochs.reindex(df.index).to_numpy() - df[phase_cols].fillna(0.0).sum(axis=1).to_numpy()
    return df


def print_breakdown(df: pd.DataFrame | None, indent: str = "  ") -> None:
    """The mean seconds per phase over trials, and peak memory per trial."""
    if df is None:
        print(f"{indent}overhead breakdown: no trial reported one")
        return
    reported = df[[c for c in PHASES if c in df.columns]].notna().any(axis=1).sum()
    print(f"{indent}overhead breakdown, mean seconds per trial over {reported} trials "
          f"({int(df['_reused'].fillna(False).astype(bool).sum())} in a reused actor):")
    for phase, what in PHASES.items():
        if phase in df.columns and df[phase].notna().any():
            print(f"{indent}  {phase:<32} {df[phase].mean():6.2f}  ({what})")
    total = df[[c for c in PHASES if c in df.columns]].fillna(0.0).sum(axis=1)
    print(f"{indent}  {'total outside epochs':<32} {total.mean():6.2f}  (wall - epochs + launch; median "
          f"{total.median():.2f}, max {total.max():.2f})")
    rss, pss = df["peak_rss_mib"].dropna(), df["pss_mib"].dropna()
    if len(rss):
        print(f"{indent}peak memory per trial (its process's RSS high-water mark since the trial began, counting "
              f"shared pages in full): mean {rss.mean():.0f} "
              f"MiB, max {rss.max():.0f} MiB" + (f"; PSS at its last report (shared pages divided among "
                                                  f"their users): mean {pss.mean():.0f} MiB" if len(pss) else "")
              + (f"; private: mean {df['private_mib'].mean():.0f} MiB" if df["private_mib"].notna().any() else ""))


def figures(label: str, sweep_dir: str, sweep: SweepConfig, ray_start_s: float, span: tuple[float, float],
            interrupted: bool, concurrent: int, samples: list[tuple[float, float, float]] | None) -> SweepFigures:
    """The figures of one finished (or interrupted) sweep from its Parquet files; `span` is the
    run_sweep call's (start, end) in epoch seconds."""
    trials, epochs = read_trials(sweep_dir), read_epochs(sweep_dir)
    if trials.empty:
        raise SystemExit(f"sweep benchmark: no trial of {label} finished (results in {sweep_dir})")
    wall = (trials["finished_at"] - trials["started_at"]).dt.total_seconds()
    in_epochs = epochs.groupby("trial_id")["seconds"].sum().reindex(trials["trial_id"]).fillna(0.0).to_numpy()
    overhead = pd.Series(wall.to_numpy() - in_epochs, index=trials["trial_id"])
    first, last = trials["started_at"].min().timestamp(), trials["finished_at"].max().timestamp()
    done = trials[trials["status"] == "completed"]
    best = done.loc[done["val_ua"].idxmax()] if not done.empty and done["val_ua"].notna().any() else None
    return SweepFigures(
        label=label, trials=len(trials), statuses=trials["status"].value_counts().to_dict(),
        ray_start_s=ray_start_s, sweep_s=span[1] - span[0], interrupted=interrupted, overhead=overhead,
        epoch_share=float(in_epochs.sum() / wall.sum()), lead_s=first - span[0], tail_s=span[1] - last,
        slot_gap_s=float((concurrent * (last - first) - wall.sum()) / len(trials)),
        epochs_spent=int(trials["epochs_run"].fillna(0).sum()), epochs_rows=len(epochs),
        epochs_no_stopping=len(trials) * sweep.scheduler.max_epochs,  # = num_samples unless interrupted
        best_val_ua=None if best is None else float(best["val_ua"]),
        best_test_ua=None if best is None else float(best["test_ua"]),
        gpu_busy=None if not samples else sum(u > 0 for _, u, _ in samples) / len(samples),
        gpu_util=None if not samples else statistics.mean(u for _, u, _ in samples),
        breakdown=overhead_breakdown(sweep_dir, trials, pd.Series(in_epochs, index=trials["trial_id"])),
    )


def run_one(label: str, name: str, args: argparse.Namespace, prepared: Path, corpus: PreparedCorpus,
            grace_period: int, ray_start_s: float) -> SweepFigures:
    path = args.workdir / "sweeps" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sweep_toml(name, args, prepared, grace_period), encoding="utf-8")
    sweep = load_sweep(path)
    print(f"\n{label}: sweep file {path}, results in {args.results / name}", flush=True)
    interrupted = False
    with GpuSampler(enabled=args.device == "cuda") as sampler:
        w0 = time.time()
        try:
            outcome = run_sweep(sweep, str(args.results), corpus=corpus, echo=not args.quiet)
            if outcome.num_errors:
                print(f"  {outcome.num_errors} trial(s) ended in an error: see trials.parquet's error column",
                      flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("  interrupted: reporting the trials that finished", flush=True)
        w1 = time.time()
    samples = sampler.between(w0, w1) if args.device == "cuda" else None
    if args.device == "cuda" and not samples:
        print(f"  (no nvidia-smi samples: {sampler.problem or 'none taken'})", flush=True)
    return figures(label, str(args.results / name), sweep, ray_start_s, (w0, w1), interrupted, args.concurrent,
                   samples)


def report(runs: list[SweepFigures], args: argparse.Namespace) -> None:
    for f in runs:
        o = f.overhead
        print(f"\n{f.label}{' (INTERRUPTED: partial)' if f.interrupted else ''}: {f.trials} trials finished "
              f"({', '.join(f'{n} {s}' for s, n in sorted(f.statuses.items()))})")
        with_start = (f" ({f.trials_per_hour_end_to_end:.0f} counting Ray's start, {f.ray_start_s:.1f} s)"
                      if f.ray_start_s else "")
        print(f"  wall: run_sweep {f.sweep_s:.1f} s, trials/hour {f.trials_per_hour:.0f}{with_start}; "
              f"{f.lead_s:.1f} s before the first trial started (corpus to the object store, Optuna study, "
              f"Tune's start), {f.tail_s:.1f} s after the last one ended")
        print(f"  GPU busy fraction {fmt(None if f.gpu_busy is None else 100 * f.gpu_busy, '.0f', ' %')} of samples, "
              f"mean utilisation {fmt(f.gpu_util, '.0f', ' %')}")
        print(f"  scheduling overhead per trial (wall - epochs): mean {o.mean():.1f} s, median {o.median():.1f} s, "
              f"max {o.max():.1f} s; {100 * f.epoch_share:.0f} % of trial wall time is in epochs")
        print_breakdown(f.breakdown, "  ")
        print(f"  slot time outside any trial: {f.slot_gap_s:.1f} s per trial ({args.concurrent} slots x "
              f"first start..last end - sum of trial walls, over trials; includes the sweep's ragged end)")
        baseline = "measured below" if len(runs) > 1 else "computed, not run"
        print(f"  epochs spent {f.epochs_spent} (epochs.parquet rows: {f.epochs_rows}) vs "
              f"{f.epochs_no_stopping} without early stopping ({f.trials} x {args.max_epochs}, {baseline}): "
              f"{f.epochs_spent / f.epochs_no_stopping:.2f}x")
        print(f"  best completed trial: val UA {fmt(f.best_val_ua, '.3f')}, its test UA {fmt(f.best_test_ua, '.3f')}")
    if len(runs) == 2:
        a, b = runs
        print(f"\nASHA vs no early stopping: epochs {a.epochs_spent} vs {b.epochs_spent} "
              f"({a.epochs_spent / max(b.epochs_spent, 1):.2f}x), run_sweep wall {a.sweep_s:.0f} s vs "
              f"{b.sweep_s:.0f} s ({a.sweep_s / b.sweep_s:.2f}x), best val UA {fmt(a.best_val_ua, '.3f')} vs "
              f"{fmt(b.best_val_ua, '.3f')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=64, help="num_samples of the sweep (default 64)")
    p.add_argument("--max-epochs", type=int, default=8, help="ASHA max_t: epochs of a surviving trial (default 8)")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA grace period (default 1)")
    p.add_argument("--reduction-factor", type=float, default=2.0, help="ASHA reduction factor (default 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--gpu-fraction", type=float, default=0.25, help="gpus_per_trial on cuda (default 0.25)")
    p.add_argument("--concurrent", type=int, default=None,
                   help="max_concurrent_trials (default: 1/gpu-fraction on cuda, the CPUs / cpus-per-trial on cpu)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--model", choices=sorted(MODELS), default=None,
                   help="tiny = the demo's CNN-Transformer, paper = TrainConfig defaults (default: tiny on cpu, "
                        "paper on cuda)")
    p.add_argument("--clips", type=int, default=320, help="source WAV files (default 320)")
    p.add_argument("--seconds", type=float, default=3.5, help="segment length in seconds (default 3.5)")
    p.add_argument("--max-train-clips", type=int, default=None, help="data.max_train_clips of the sweep")
    p.add_argument("--run-fifo", action="store_true",
                   help="also run the same sweep without early stopping (grace_period = max_epochs)")
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    p.add_argument("--reuse-actors", choices=("on", "off"), default=None,
                   help="force Tune's actor reuse on or off for this run (default: the sweep's "
                        "[resources] reuse_actors, true), to measure it")
    p.add_argument("--seed", type=int, default=0, help="TPE seed and corpus seed")
    p.add_argument("--workdir", type=Path, default=default_workdir(),
                   help="WAV files, prepared corpus, sweep files")
    p.add_argument("--results", type=Path, default=None, help="results directory (default WORKDIR/sweep-results)")
    args = p.parse_args(argv)
    if args.trials < 1 or args.max_epochs < 1 or not 1 <= args.grace_period <= args.max_epochs:
        p.error("--trials and --max-epochs must be >= 1, and 1 <= --grace-period <= --max-epochs")
    if args.reduction_factor <= 1:
        p.error(f"--reduction-factor must be > 1, got {args.reduction_factor}")
    if not 0 < args.gpu_fraction <= 1:
        p.error(f"--gpu-fraction must be in (0, 1], got {args.gpu_fraction}")
    if args.clips < 10 * len(EMOTIONS):
        p.error(f"--clips must be at least {10 * len(EMOTIONS)}: the 80/10/10 split needs 10 clips per emotion")
    args.model = args.model or ("paper" if args.device == "cuda" else "tiny")
    if args.concurrent is None:
        affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all CPUs
        cpus = args.num_cpus or (len(affinity(0)) if affinity else os.cpu_count() or 1)
        by_cpu = max(1, int(cpus // args.cpus_per_trial))
        args.concurrent = min(by_cpu, int(1 / args.gpu_fraction + 1e-9)) if args.device == "cuda" else by_cpu
    if args.concurrent < 1:
        p.error("--concurrent must be >= 1")
    args.results = (args.results or args.workdir / "sweep-results").resolve()
    return args


def reuse_actors_in_runner(reuse: bool) -> None:
    """Measure Tune's actor reuse either way: search.driver's TuneConfig, for this process only,
    with reuse_actors forced (True: a later trial runs in a finished trial's process)."""
    import types  # noqa: PLC0415

    from ray import tune  # noqa: PLC0415

    import search.driver as runner  # noqa: PLC0415
    runner.tune = types.SimpleNamespace(**{name: getattr(tune, name) for name in dir(tune) if not name.startswith("__")})
    runner.tune.TuneConfig = lambda **kw: tune.TuneConfig(**{**kw, "reuse_actors": reuse})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reuse_actors is not None:
        reuse_actors_in_runner(args.reuse_actors == "on")
    corpus = start_benchmark("sweep benchmark", args.device, args.workdir, args.clips, args.seconds, args.seed)
    prepared = corpus.root
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    connect(None, num_cpus=args.num_cpus)
    ray_start_s = time.perf_counter() - t0
    interrupt_on_signals()
    try:
        if args.device == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
            raise SystemExit("sweep benchmark: --device cuda but the local Ray found no GPU")
        print(f"sweep benchmark: {args.trials} trials, ASHA (max {args.max_epochs} epochs, grace {args.grace_period}, "
              f"reduction {args.reduction_factor:g}), {args.concurrent} at a time, {args.model} CNN-Transformer on "
              f"{args.device}{f', {args.gpu_fraction:g} GPU per trial' if args.device == 'cuda' else ''}; "
              f"{len(corpus)} prepared rows from {args.clips} WAV files ({prepared})")
        print(f"  machine: {describe_machine(args.device)}")
        print(f"  local Ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
              f"{ray.cluster_resources().get('GPU', 0):.0f} GPU(s), started in {ray_start_s:.1f} s", flush=True)
        runs = [run_one("ASHA", f"bench-asha-{stamp}", args, prepared, corpus, args.grace_period, ray_start_s)]
        if args.run_fifo and not runs[0].interrupted:
            try:
                runs.append(run_one("no early stopping (grace_period = max_epochs)", f"bench-noes-{stamp}", args,
                                    prepared, corpus, args.max_epochs, 0.0))
            except KeyboardInterrupt:
                print("  interrupted before the no-early-stopping sweep had results", flush=True)
        report(runs, args)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
