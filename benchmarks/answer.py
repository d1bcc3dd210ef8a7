"""Benchmark 5: time to an answer — the same search run with plain Ray Tune + Optuna and with ser-search.

Why: a researcher buys the answer to "which loss and frontend win, with which λ, α?", not a
faster epoch. The alternative they would pick is plain Ray Tune + Optuna with the trainable
everyone writes, so that is the baseline, written as a careful user of those libraries alone
would write it:

  conventional  a function trainable that reads the WAV files with librosa in a torch Dataset /
                DataLoader (features per file, every epoch: decode, trim at top_db 30 as prepare
                does, a 3.5 s segment, log-Mel or log-power STFT via librosa), per-frequency
                statistics from a pass over its training files, the SAME model code and loss
                functions (ser_core.train.build_model, ser_core.losses.build_loss, stock modules,
                float32), AdamW with the trial's lr and gradient clipping, a checkpoint and a
                tune.report per epoch; Ray's stock `ray.tune.search.optuna.OptunaSearch` (seeded
                TPE) + `ASHAScheduler`, one trial per CPU.
  ser-search    `ser-search sweep` (search.driver.run_sweep, what the command runs) on the same
                clips (the prepared corpus the conventional side's file lists come from), the
                same space, TPE seed, ASHA settings and trial count.

Both sides search the demo sweep's space (search/sweeps/demo.toml: 8 loss families x Mel/STFT, lr,
family parameters) through the same define-by-run function (search.definition.SweepConfig.define_by_run),
and turn a trial's parameters into the same settings (SweepConfig.trial_config), so they differ only
in how a trial gets its data and what it pays around its epochs — and in ser-search telling Optuna
ASHA's stops as pruned. demo.toml's covering first trials (`cover_choices`) are off unless
--cover-choices on: with 16 family x frontend combinations they would be 16 of 24 trials, a
different search from the conventional side's TPE.

Printed for both: wall time (the Tuner's / run_sweep's call; Ray is started once before both and
timed apart), trials/hour, mean per-trial overhead (driver-stamped trial wall time minus the
trial's epoch seconds, plus what it paid between its process's start and its function's entry:
Ray stamps a trial's start only then), epochs spent, best validation UA reached (any epoch of any trial), the time
at which each side first reached within 1 UA point of its own final best (from every report's
wall-clock stamp), peak RSS per trial, and the ratios; then ser-search's overhead breakdown
(search/worker/overhead.py) and the conventional trial's. With several seeds, the ratios over the seeds; with
--same-configs K, each side's top K configurations over its searches trained again by both trainers (two seeds
each), which tells a side that trains worse from a search that looked elsewhere.

    python benchmarks/answer.py                 # EmoDB (../shared/data/emodb or $SER_SEARCH_EMODB), 24 trials
    python benchmarks/answer.py --seeds 0,1,2   # both sides once per TPE seed, then the ratios over the seeds
    python benchmarks/answer.py --seeds 0,1,2 --same-configs 1   # + each side's best trained by both trainers
    python benchmarks/answer.py --full          # RAVDESS-sized synthetic corpus (1440 clips), 64 trials
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray.tune import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import tiny_cpu_sweep  # noqa: E402
from benchmarks.packing import describe_machine, fmt, interrupt_on_signals, private_ray_env  # noqa: E402
from benchmarks.sweep import demo_space, overhead_breakdown, print_breakdown  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.feature_cache import CACHE_SUBDIR  # noqa: E402
from ser_core.prepare import PrepareOptions, prepare_corpora  # noqa: E402
from search.definition import SchedulerSection, SweepConfig, parse_sweep  # noqa: E402
from search.results import read_epochs, read_trials  # noqa: E402
from search.driver.sweep import connect, run_sweep  # noqa: E402

METRIC = "val_ua"


# ----------------------------------------------------------------------------- the corpus



def prepared_corpus(args: argparse.Namespace) -> tuple[PreparedCorpus, float, str]:
    """The prepared corpus both sides use (noisy copies off: the conventional side reads exactly
    the prepared clips' source files), reused when already prepared; (corpus, seconds, what)."""
    if args.full:
        from benchmarks.common import synthetic_wav_corpus  # noqa: PLC0415
        root, files = synthetic_wav_corpus(args.workdir / "wav48k-1440", 1440, seed=0)
        name, what = "synthetic", f"RAVDESS-sized synthetic corpus ({len(files)} WAV files at 48 kHz, {root})"
    else:
        from benchmarks.common import find_emodb  # noqa: PLC0415
        root = find_emodb(args.emodb, "answer benchmark", "; --full runs on a synthetic corpus instead")
        name, what = "emodb", f"EmoDB ({root})"
    out = args.workdir / f"answer-prepared-{name}"
    t0 = time.perf_counter()
    if not (out / "protocol.json").is_file():
        prepare_corpora({name: root}, out, PrepareOptions(augment_copies=0), progress=False, overwrite=True)
    return PreparedCorpus.load(out), time.perf_counter() - t0, what


def sweep_file(args: argparse.Namespace, name: str, prepared: Path, seed: int) -> str:
    return tiny_cpu_sweep(written_by="benchmarks/answer.py; the [space] is search/sweeps/demo.toml's", name=name,
                          trials=args.trials, concurrent=args.concurrent, cover_choices=args.cover_choices == "on",
                          seed=seed, prepared=prepared, max_epochs=args.max_epochs, grace_period=args.grace_period,
                          reduction_factor=args.reduction_factor, space=demo_space())


# ----------------------------------------------------------------------------- the conventional side


def conventional_trainable(sweep: SweepConfig):
    """The function trainable a careful Ray Tune + Optuna user writes (see the module docstring)."""

    def conventional_trial(config: dict[str, Any], data: dict[str, Any]) -> None:
        entered = time.time()
        import librosa  # noqa: PLC0415 - in the trial's process, as the user's script imports them
        import torch  # noqa: PLC0415
        from ray import tune  # noqa: PLC0415
        from sklearn.metrics import balanced_accuracy_score  # noqa: PLC0415
        from torch import nn  # noqa: PLC0415
        from torch.utils.data import DataLoader, Dataset  # noqa: PLC0415

        from benchmarks.common import librosa_features  # noqa: PLC0415
        from ser_core.features import FrontendConfig, num_frames  # noqa: PLC0415
        from ser_core.losses import build_loss  # noqa: PLC0415
        from ser_core.train import build_model  # noqa: PLC0415

        from search.worker.overhead import process_started_at  # noqa: PLC0415 - instrumentation only (/proc)

        started = process_started_at()
        # what the trial paid before its function ran (outside the driver's wall stamps, as on the other side)
        phases: dict[str, float] = {"launch": 0.0 if started is None else entered - started,
                                    "imports": time.time() - entered}
        cfg = sweep.trial_config(config)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        fe = FrontendConfig.model_validate({**cfg.frontend.model_dump(), "sample_rate": data["sample_rate"]})
        seg = data["segment_samples"]

        class WavDataset(Dataset):
            def __init__(self, files: list[str], labels: list[int]) -> None:
                self.files, self.labels = files, labels

            def __len__(self) -> int:
                return len(self.files)

            def __getitem__(self, i: int):
                y, _ = librosa.load(self.files[i], sr=fe.sample_rate, mono=True)
                _, (start, _end) = librosa.effects.trim(y, top_db=30)
                y = y[start:start + seg]
                frames = num_frames(fe, max(len(y), 1))
                y = librosa.util.fix_length(y, size=seg)
                return torch.from_numpy(librosa_features(y, fe).astype(np.float32)), frames, self.labels[i]

        train = WavDataset(data["train_files"], data["train_labels"])
        val = WavDataset(data["val_files"], data["val_labels"])
        # Statistics of the training files (per frequency, real frames only), one pass.
        t = time.time()
        total = np.zeros(fe.n_features)
        total_sq = np.zeros(fe.n_features)
        count = 0
        for x, n, _ in DataLoader(train, batch_size=32, num_workers=0):
            for xi, ni in zip(x.double().numpy(), n.numpy()):
                total += xi[:, :ni].sum(axis=1)
                total_sq += np.square(xi[:, :ni]).sum(axis=1)
                count += int(ni)
        mean = torch.tensor(total / count, dtype=torch.float32)[:, None]
        std = torch.tensor(np.sqrt(np.maximum(total_sq / count - (total / count) ** 2, 1e-10)),
                           dtype=torch.float32)[:, None]
        phases["statistics_pass"] = time.time() - t

        t = time.time()
        n_classes = data["num_classes"]
        model = build_model(cfg.model, fe.n_features, n_classes)
        loss_fn = build_loss(cfg.loss.family, num_classes=n_classes, embed_dim=model.embed_dim, **cfg.loss.params())
        params = list(model.parameters()) + list(loss_fn.model_parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        center_opt = loss_fn.center_optimizer()
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = DataLoader(train, batch_size=cfg.optim.batch_size, shuffle=True, generator=gen, num_workers=0)
        val_loader = DataLoader(val, batch_size=64, num_workers=0)
        phases["model"] = time.time() - t
        phases["checkpoint_report"] = 0.0

        for epoch in range(1, cfg.optim.epochs + 1):
            t0 = time.time()
            model.train()
            loss_fn.train()
            for x, n, y in loader:
                if len(y) < 2:  # BatchNorm needs two samples
                    continue
                logits, z = model((x - mean) / std, n)
                loss = loss_fn(logits, z, y)
                optimizer.zero_grad()
                if center_opt is not None:
                    center_opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip or float("inf"))
                optimizer.step()
                if center_opt is not None:
                    loss_fn.before_center_step()
                    center_opt.step()
            model.eval()
            preds, ys = [], []
            with torch.no_grad():
                for x, n, y in val_loader:
                    logits, _ = model((x - mean) / std, n)
                    preds.append(logits.argmax(dim=1).numpy())
                    ys.append(y.numpy())
            val_ua = float(balanced_accuracy_score(np.concatenate(ys), np.concatenate(preds)))
            seconds = time.time() - t0
            t = time.time()
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                           os.path.join(d, "checkpoint.pt"))
                phases["checkpoint_report"] += time.time() - t
                tune.report({METRIC: val_ua, "epoch": epoch, "epoch_seconds": seconds, "reported_at": time.time(),
                             "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                             "phases_json": json.dumps(phases)},
                            checkpoint=tune.Checkpoint.from_directory(d))

    return conventional_trial


class TrialStamps(Callback):
    """The driver's start and end time of every trial (what ser-search's recorder stamps)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started.setdefault(trial.trial_id, time.time())

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.finished[trial.trial_id] = time.time()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.finished[trial.trial_id] = time.time()


def conventional_data(corpus: PreparedCorpus) -> dict[str, Any]:
    """The conventional side's file lists: the prepared corpus's fold-0 train and validation clips
    (their source files), labels renumbered over the classes present, as the user's script would."""
    split = corpus.evaluation_split(0)
    m = corpus.manifest
    present = sorted(set(m["label_id"].iloc[np.concatenate([split.rows["train"], split.rows["val"]])]))
    remap = {old: new for new, old in enumerate(present)}
    out: dict[str, Any] = {"sample_rate": corpus.sample_rate, "segment_samples": int(corpus.waveforms.shape[1]),
                           "num_classes": len(present)}
    for name in ("train", "val"):
        rows = m.iloc[split.rows[name]]
        rows = rows[~rows["augmented"]]
        out[f"{name}_files"] = rows["path"].astype(str).tolist()
        out[f"{name}_labels"] = [remap[int(i)] for i in rows["label_id"]]
    return out


def run_conventional(args: argparse.Namespace, sweep: SweepConfig, corpus: PreparedCorpus, storage: Path,
                     name: str, seed: int) -> tuple[float, TrialStamps]:
    import optuna  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415
    from ray.tune.schedulers import ASHAScheduler  # noqa: PLC0415
    from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

    stamps = TrialStamps()
    searcher = OptunaSearch(space=sweep.define_by_run, metric=METRIC, mode="max",
                            sampler=optuna.samplers.TPESampler(seed=seed))
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=args.max_epochs, grace_period=args.grace_period,
                              reduction_factor=args.reduction_factor)
    trainable = tune.with_resources(tune.with_parameters(conventional_trainable(sweep), data=conventional_data(corpus)),
                                    {"cpu": 1})
    tuner = tune.Tuner(trainable,
                       tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                                   num_samples=args.trials, max_concurrent_trials=args.concurrent),
                       run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[stamps], verbose=0))
    t0 = time.time()
    tuner.fit()
    return t0, stamps


# ----------------------------------------------------------------------------- the same configurations, both trainers


def same_configurations(args: argparse.Namespace, sweep: SweepConfig, corpus: PreparedCorpus, results: Path,
                        pairs: dict[int, tuple[Side, Side]], k: int, seeds: tuple[int, ...] = (0, 1)) -> None:
    """Each side's top-k configurations over all its searches (by the best val UA a search saw), trained again by
    BOTH trainers with `seeds`, the rest of the configuration as searched: a side's searched best
    is the maximum over ~100 noisy numbers on a ~90-clip validation fold, so two sides' bests
    differ by where each search happened to look; the same configuration trained by each tells
    whether one side TRAINS worse. The conventional side runs in Tune (its trainable needs
    tune.report), 2 at a time; ser-search's `fit` in this process with one torch thread."""
    import scipy.stats  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from ser_core.train import fit  # noqa: PLC0415

    configs: list[tuple[str, dict[str, Any]]] = []
    for index, short in ((0, "conventional"), (1, "ser-search")):
        found = [(ua, tpe_seed, params) for tpe_seed, sides in pairs.items() for ua, params in sides[index].top(k)]
        for ua, tpe_seed, params in sorted(found, key=lambda t: -t[0])[:k]:  # the side's top k over all its searches
            for seed in seeds:
                configs.append((f"{short} s{tpe_seed} {ua:.3f}", {**params, "seed": seed}))
    trainable = conventional_trainable(sweep)

    def by_index(config: dict[str, Any], data: dict[str, Any]) -> None:
        return trainable(configs[config["i"]][1], data)

    grid = tune.Tuner(tune.with_resources(tune.with_parameters(by_index, data=conventional_data(corpus)), {"cpu": 1}),
                      param_space={"i": tune.grid_search(list(range(len(configs))))},
                      tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrent),
                      run_config=tune.RunConfig(name=f"same-configs-{int(time.time())}", storage_path=str(results),
                                                verbose=0))
    conv_curves = {r.config["i"]: list(r.metrics_dataframe[METRIC]) for r in grid.fit()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a 1-CPU trial has
    try:
        ours_curves = {i: [h.val_ua for h in fit(sweep.trial_config(params), corpus).history]
                       for i, (_, params) in enumerate(configs)}
    finally:
        torch.set_num_threads(threads)
    print(f"\nthe same configurations trained by both (each side's top {k} over its searches x seeds {list(seeds)}; "
          f"best val UA over the {args.max_epochs} epochs):")
    print(f"  {'found by (TPE seed, searched best)':<37}{'family':<15}{'frontend':<9}{'seed':>5}"
          f"{'conventional':>14}{'ser-search':>12}")
    diffs = []
    for i, (origin, params) in enumerate(configs):
        a, b = max(conv_curves[i]), max(ours_curves[i])
        diffs.append(b - a)
        print(f"  {origin:<37}{params['loss_family']:<15}{params['frontend']:<9}{params['seed']:>5}{a:>14.3f}{b:>12.3f}")
    d = np.array(diffs)
    half = float(scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    print(f"  ser-search - conventional on the same configurations: {100 * d.mean():+.1f} points "
          f"(95 % t interval {100 * (d.mean() - half):+.1f} to {100 * (d.mean() + half):+.1f}, {len(d)} pairs)")


# ----------------------------------------------------------------------------- figures


@dataclass
class Side:
    label: str
    start: float                # wall clock when its Tuner / run_sweep was called
    wall: float
    trials: int
    epochs: int
    overhead: pd.Series         # seconds per trial outside its epochs
    curve: pd.DataFrame         # reported_at, val_ua of every epoch report, in time order
    peak_rss: pd.Series
    breakdown: Any = None
    searched: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (trial's best val UA, its params)

    def top(self, k: int) -> list[tuple[float, dict[str, Any]]]:
        return sorted(self.searched, key=lambda t: -t[0])[:k]

    @property
    def best(self) -> float:
        return float(self.curve[METRIC].max())

    @property
    def time_to_answer(self) -> float:
        """Seconds from the start until an epoch first reported within 0.01 of the side's final best."""
        return self.time_to_reach(self.best)

    def time_to_reach(self, best: float) -> float:
        """Seconds from the start until an epoch first reported within 0.01 of `best`; inf if never."""
        hit = self.curve[self.curve[METRIC] >= best - 0.01]
        return float(hit["reported_at"].iloc[0] - self.start) if len(hit) else float("inf")

    @property
    def trials_per_hour(self) -> float:
        return 3600 * self.trials / self.wall


def _results(tune_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in tune_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def _searched(results: dict[str, list[dict[str, Any]]]) -> list[tuple[float, dict[str, Any]]]:
    """Each trial's best reported val UA and its sampled parameters (Tune's logged config)."""
    return [(max(r[METRIC] for r in rows), dict(rows[0]["config"])) for rows in results.values()
            if rows and "config" in rows[0]]


def conventional_side(start: float, wall: float, stamps: TrialStamps, tune_dir: Path) -> Side:
    results = _results(tune_dir)
    overhead, rss, phases = {}, {}, {}
    for tid, rows in results.items():
        t_wall = stamps.finished.get(tid, rows[-1]["reported_at"]) - stamps.started.get(tid, start)
        phases[tid] = json.loads(rows[-1]["phases_json"])
        overhead[tid] = t_wall - sum(r["epoch_seconds"] for r in rows) + phases[tid].get("launch", 0.0)
        rss[tid] = rows[-1]["peak_rss_mib"]
    curve = pd.DataFrame([{"reported_at": r["reported_at"], METRIC: r[METRIC]} for rows in results.values()
                          for r in rows]).sort_values("reported_at")
    return Side("Ray Tune + Optuna (conventional)", start, wall, len(results), sum(len(r) for r in results.values()),
                pd.Series(overhead), curve, pd.Series(rss), pd.DataFrame.from_dict(phases, orient="index"),
                _searched(results))


def ser_search_side(start: float, wall: float, sweep_dir: Path) -> Side:
    trials, epochs = read_trials(str(sweep_dir)), read_epochs(str(sweep_dir))
    in_epochs = epochs.groupby("trial_id")["seconds"].sum().reindex(trials["trial_id"]).fillna(0.0)
    t_wall = (trials["finished_at"] - trials["started_at"]).dt.total_seconds().to_numpy()
    breakdown = overhead_breakdown(str(sweep_dir), trials, in_epochs)
    launch = 0.0 if breakdown is None else breakdown["launch"].fillna(0.0).to_numpy()
    overhead = pd.Series(t_wall - in_epochs.to_numpy() + launch, index=trials["trial_id"])
    results = _results(sweep_dir / "tune")
    curve = pd.DataFrame([{"reported_at": r["reported_at"], METRIC: r[METRIC]} for rows in results.values()
                          for r in rows if "reported_at" in r]).sort_values("reported_at")
    rss = pd.Series({tid: rows[-1].get("peak_rss_mib") for tid, rows in results.items()})
    return Side("ser-search sweep", start, wall, len(trials), int(len(epochs)), overhead, curve, rss, breakdown,
                _searched(results))


def report(conv: Side, ours: Side, args: argparse.Namespace, prepare_s: float) -> None:
    print(f"\n{'':<34}{'conventional':>14}{'ser-search':>14}{'ratio':>10}")

    def row(what: str, a: float, b: float, spec: str, better_low: bool = True) -> None:
        ratio = (a / b if better_low else b / a) if a and b else float("nan")
        print(f"{what:<34}{a:>14{spec}}{b:>14{spec}}{ratio:>9.2f}x")

    row("wall time (s)", conv.wall, ours.wall, ".1f")
    row("trials/hour", conv.trials_per_hour, ours.trials_per_hour, ".0f", better_low=False)
    row("mean per-trial overhead (s)", conv.overhead.mean(), ours.overhead.mean(), ".2f")
    row("epochs spent", conv.epochs, ours.epochs, ".0f")
    row("best validation UA", conv.best, ours.best, ".3f", better_low=False)
    row("time to within 1 UA point (s)", conv.time_to_answer, ours.time_to_answer, ".1f")
    # the same answer: both sides timed to within 1 point of the conventional side's best (inf: never)
    row("  of the conventional best (s)", conv.time_to_answer, ours.time_to_reach(conv.best), ".1f")
    row("peak RSS per trial, mean (MiB)", conv.peak_rss.mean(), ours.peak_rss.mean(), ".0f")
    print(f"(ratios: conventional / ser-search for times, overhead, epochs and memory; ser-search / conventional "
          f"for trials/hour and UA. ser-search's one-time prepare: {prepare_s:.1f} s, not in its wall time; "
          f"time to answer counting it: {ours.time_to_answer + prepare_s:.1f} s, "
          f"{conv.time_to_answer / (ours.time_to_answer + prepare_s):.2f}x)")
    target = conv.time_to_answer / ours.time_to_answer >= 3 and ours.best >= conv.best - 0.01
    print(f"target (answer >= 3x sooner, best val UA no worse than 1 point below): {'MET' if target else 'NOT MET'}")
    print("\nser-search:")
    print_breakdown(ours.breakdown, "  ")
    print("conventional trial, mean seconds per trial:")
    if conv.breakdown is not None and len(conv.breakdown):
        for col in conv.breakdown.columns:
            print(f"    {col:<32} {conv.breakdown[col].mean():6.2f}")
        rest = conv.overhead.mean() - conv.breakdown.sum(axis=1).mean()
        print(f"    {'rest (the last report, stopping)':<32} {rest:6.2f}")
        print(f"    {'total outside epochs':<32} {conv.overhead.mean():6.2f}  (wall - epochs + launch)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="RAVDESS-sized synthetic corpus, 64 trials")
    p.add_argument("--trials", type=int, default=None, help="trials per side (default 24, --full 64)")
    p.add_argument("--max-epochs", type=int, default=4, help="ASHA max_t (default 4)")
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=SchedulerSection(max_epochs=1).reduction_factor,
                   help="ASHA reduction factor (default: the shipped one)")
    p.add_argument("--concurrent", type=int, default=None, help="trials at a time (default: the CPUs)")
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",") if x.strip()], default=[0],
                   help="TPE seeds, comma-separated: both sides run once per seed (default 0)")
    p.add_argument("--emodb", type=Path, default=None)
    p.add_argument("--cover-choices", choices=("on", "off"), default="off",
                   help="ser-search's covering first trials: off (default) = TPE from the first trial, the same "
                        "search as the conventional side's OptunaSearch; on = demo.toml's setting")
    p.add_argument("--same-configs", type=int, default=0, metavar="K",
                   help="then train each side's top K configurations (over its searches) with both trainers, seeds 0 and 1")
    p.add_argument("--only", choices=("conventional", "ser-search"), default=None, help="run one side only")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ser-search-answer")
    args = p.parse_args(argv)
    args.trials = args.trials or (64 if args.full else 24)
    if args.concurrent is None:
        args.concurrent = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if args.trials < 1 or not 1 <= args.grace_period <= args.max_epochs or args.reduction_factor <= 1:
        p.error("--trials >= 1, 1 <= --grace-period <= --max-epochs, --reduction-factor > 1")
    return args


def sweep_for(args: argparse.Namespace, corpus: PreparedCorpus, seed: int = 0, name: str = "answer") -> SweepConfig:
    return parse_sweep(sweep_file(args, name, corpus.root, seed), source="benchmarks/answer.py")


def run_seed(args: argparse.Namespace, corpus: PreparedCorpus, results: Path, stamp: str,
             seed: int) -> tuple[Side | None, Side | None]:
    """Both sides (or the one of --only) for one TPE seed; (conventional, ser-search)."""
    sweep = parse_sweep(sweep_file(args, f"answer-{stamp}-s{seed}", corpus.root, seed), source="benchmarks/answer.py")
    conv = ours = None
    if args.only != "ser-search":
        name = f"conventional-{stamp}-s{seed}"
        start, stamps = run_conventional(args, sweep, corpus, results, name, seed)
        conv = conventional_side(start, time.time() - start, stamps, results / name)
        print(f"  seed {seed}: conventional side done in {conv.wall:.0f} s", flush=True)
    if args.only != "conventional":
        shutil.rmtree(corpus.root / CACHE_SUBDIR, ignore_errors=True)  # its first trial pays the features
        environ = dict(os.environ)
        start = time.time()
        try:
            run_sweep(sweep, str(results), corpus=corpus.in_memory(), echo=False)
        finally:  # run_sweep sets Tune's environment for its driver; the next seed's conventional side gets Tune's own
            os.environ.clear()
            os.environ.update(environ)
        ours = ser_search_side(start, time.time() - start, results / sweep.sweep.name)
        print(f"  seed {seed}: ser-search side done in {ours.wall:.0f} s", flush=True)
    return conv, ours


def summary(pairs: dict[int, tuple[Side, Side]]) -> None:
    """Over the seeds: each seed's time-to-answer ratio and UA difference, their geometric mean and
    mean, and the pooled per-trial overhead. One seed's time to answer is where that seeded search
    happened to find its best (its first trials or its last), so the target is read off the seeds
    together."""
    print(f"\nover {len(pairs)} TPE seeds (conventional / ser-search for times; ser-search - conventional for UA):")
    print(f"{'seed':>6}{'wall ratio':>12}{'answer conv (s)':>17}{'answer ours (s)':>17}{'answer ratio':>14}"
          f"{'best UA conv':>14}{'best UA ours':>14}{'UA diff':>9}")
    ratios, walls, diffs, same = [], [], [], []
    for seed, (conv, ours) in pairs.items():
        ratio, wall = conv.time_to_answer / ours.time_to_answer, conv.wall / ours.wall
        ratios.append(ratio), walls.append(wall), diffs.append(ours.best - conv.best)
        same.append(conv.time_to_answer / ours.time_to_reach(conv.best))  # 0 when ser-search never got there
        print(f"{seed:>6}{wall:>11.2f}x{conv.time_to_answer:>17.1f}{ours.time_to_answer:>17.1f}{ratio:>13.2f}x"
              f"{conv.best:>14.3f}{ours.best:>14.3f}{100 * diffs[-1]:>+8.1f}")
    geo = float(np.exp(np.mean(np.log(ratios))))
    print(f"{'all':>6}{float(np.exp(np.mean(np.log(walls)))):>11.2f}x{'':>34}{geo:>13.2f}x{'':>28}"
          f"{100 * float(np.mean(diffs)):>+8.1f}   (geometric means of the ratios; mean UA difference, points)")
    print("the same answer (ser-search timed to within 1 point of the conventional best): "
          + ", ".join(f"seed {seed} {r:.2f}x" if r > 0 else f"seed {seed} never" for seed, r in zip(pairs, same)))
    ours_overhead = pd.concat([o.overhead for _, o in pairs.values()])
    conv_overhead = pd.concat([c.overhead for c, _ in pairs.values()])
    print(f"per-trial overhead over all {len(ours_overhead)} ser-search trials: mean {ours_overhead.mean():.2f} s, "
          f"median {ours_overhead.median():.2f} s (conventional: mean {conv_overhead.mean():.2f} s)")
    met = geo >= 3 and float(np.mean(diffs)) >= -0.01
    print(f"target over the seeds (answer >= 3x sooner, best val UA no worse than 1 point below): "
          f"{'MET' if met else 'NOT MET'}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    private_ray_env()
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus, prepare_s, what = prepared_corpus(args)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    results = args.workdir / "results"
    t0 = time.perf_counter()
    connect(None, num_cpus=args.concurrent)
    ray_start = time.perf_counter() - t0
    interrupt_on_signals()
    print(f"answer benchmark: {args.trials} trials per side, ASHA (max {args.max_epochs} epochs, grace "
          f"{args.grace_period}, reduction {args.reduction_factor:g}), TPE seeds {args.seeds}, {args.concurrent} at a "
          f"time of 1 CPU; {what}: {len(corpus)} prepared clips; demo space, tiny CNN-Transformer; ser-search's "
          f"cover_choices {args.cover_choices}")
    print(f"  machine: {describe_machine('cpu')}; local Ray started in {ray_start:.1f} s", flush=True)
    pairs: dict[int, tuple[Side, Side]] = {}
    try:
        for seed in args.seeds:
            conv, ours = run_seed(args, corpus, results, stamp, seed)
            if conv is not None and ours is not None:
                print(f"\nTPE seed {seed}:")
                report(conv, ours, args, prepare_s)
                pairs[seed] = (conv, ours)
            else:
                for side in (conv, ours):
                    if side is not None:
                        print(f"{side.label}: wall {side.wall:.1f} s, {side.trials_per_hour:.0f} trials/hour, overhead "
                              f"{side.overhead.mean():.2f} s, {side.epochs} epochs, best val UA {side.best:.3f}, "
                              f"answer at {side.time_to_answer:.1f} s, peak RSS {fmt(side.peak_rss.mean(), '.0f')} MiB")
                        if side.label.startswith("ser"):
                            print_breakdown(side.breakdown, "  ")
        if len(pairs) > 1:
            summary(pairs)
        if pairs and args.same_configs:
            same_configurations(args, sweep_for(args, corpus), corpus, results, pairs, args.same_configs)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
