"""Benchmark 6 (P4): early stopping that does not cost the answer — the same TPE search with ASHA and
without (FIFO) on EmoDB, each search's best configuration confirmed, for several search seeds.

Why: ASHA is worth its epochs only if the configuration it leaves standing is as good as the one a
search that trains every trial to the end would pick. A sweep's own best score cannot say so (the
survivor of a pruned search and the winner of a full one are each one lucky-or-not run), so each
side's best configuration — chosen by validation UA only, as `ser-search confirm` chooses it — is
re-run with fresh seeds and compared on those confirmed runs.

What runs, all through the project's own machinery:
  prepare   EmoDB (../shared/data/emodb, --emodb or $SER_SEARCH_EMODB) with ser_core.prepare's
            `prepare_corpora` (what `ser-search prepare` calls): speaker protocol, `--folds standard`
            (5 folds of one male + one female speaker), `--labels native` (EmoDB's 7 classes, boredom
            included, as issue 14's EmoDB runs use), 2.0 s segments (every file of this copy is 2.00 s),
            no noisy copies (time); reused when already prepared with the same options.
  search    for each search seed (the TPE sampler's `[sweep] seed`): one sweep file, run twice with
            search.driver.run_sweep — ASHA with the [scheduler] given (default: search.definition's
            SchedulerSection defaults, what a sweep file without those keys ships), and FIFO: the same
            file with grace_period = max_epochs, i.e. ASHA with no rung before the last epoch (as
            benchmarks/sweep.py --run-fifo does). Space: search/sweeps/demo.toml's [space] (8 loss
            families, lr, family parameters, cover_choices) with the frontend fixed to Mel by default
            (--frontends mel,stft searches both: a 321-bin STFT epoch costs ~8x a 40-band Mel one on a
            CPU), the demo's tiny CNN-Transformer. Test fold 0, validation fold 1 (speakers 10 + 09).
  confirm   search.driver.run_confirm on each sweep: its best configuration (top 1 by validation UA
            over completed trials), --confirm-seeds fresh seeds (the smallest the search did not use:
            both sides get the same ones, so they pair by seed), no early stopping; --confirm-folds
            repeats them on other test folds. When both sides of a seed chose the identical
            configuration, the second reuses the first's confirmed runs (same config, same seeds: the
            same numbers on CPU) instead of training them again, and says so.

Printed: per seed and side — epochs spent by the search (sum of epochs_run over its trials), trials
completed / stopped, wall time, the best searched validation UA (the chosen trial's), confirmed
validation and test UA (mean ± 95 % Student-t half-width over the confirmation runs); per seed and
over all seeds, ASHA's confirmed val UA minus FIFO's and the epochs ratio ASHA / FIFO; and whether
the target holds: ASHA within 1 UA point of FIFO (confirmed validation UA, mean over seeds) with at
most 25 % of FIFO's search epochs (summed over seeds). Confirmation epochs are the same on both sides
and are not counted. Wall times depend on the machine's load; epochs and UA do not.

    python benchmarks/early_stopping.py                       # 3 seeds x (ASHA, FIFO), 12 trials, 16 epochs
    python benchmarks/early_stopping.py --grace-period 2 --reduction-factor 3 --results DIR
                                                              # another ASHA setting; FIFO sweeps in DIR reused
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The target of issue 15's P4: ASHA within this many UA (fraction) of FIFO's confirmed best ...
UA_TOLERANCE = 0.01
# ... with at most this share of FIFO's search epochs.
EPOCHS_SHARE = 0.25

# ----------------------------------------------------------------------------- pure figures


def epochs_spent(trials: pd.DataFrame) -> int:
    """Epochs a search trained: the sum of epochs_run over its search-stage trials (a stopped trial
    counts the epochs it ran, an errored one what it reported, none as 0)."""
    if trials.empty:
        return 0
    rows = trials[trials["stage"] == "search"] if "stage" in trials.columns else trials
    return int(pd.to_numeric(rows["epochs_run"], errors="coerce").fillna(0).sum())


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, 95 % Student-t half-width, n) of the finite values; half-width NaN below 2 values."""
    from search.analysis.leaderboard import mean_ci95  # noqa: PLC0415 - the leaderboard's own interval

    return mean_ci95([v for v in values if v is not None and math.isfinite(v)])


@dataclass
class Side:
    """One search (ASHA or FIFO) of one seed and its confirmed best configuration."""

    seed: int
    side: str                      # "ASHA" or "FIFO"
    epochs: int                    # search epochs spent
    trials: int
    completed: int
    pruned: int
    searched_val_ua: float         # the chosen trial's validation UA in the search
    confirmed_val: list[float] = field(default_factory=list)
    confirmed_test: list[float] = field(default_factory=list)
    wall_s: float = math.nan       # the search's run_sweep wall time (machine load changes it)
    chosen: str = ""               # the chosen configuration, in words
    reused_confirmation: str = ""  # the sweep whose confirmed runs were reused, if any

    @property
    def val(self) -> tuple[float, float, int]:
        return mean_ci(self.confirmed_val)

    @property
    def test(self) -> tuple[float, float, int]:
        return mean_ci(self.confirmed_test)


@dataclass(frozen=True)
class Verdict:
    val_diff: float        # ASHA's confirmed val UA minus FIFO's (mean over seeds where several)
    test_diff: float       # the same for test UA (reported, not judged: selection is by validation)
    epochs_ratio: float    # ASHA's search epochs / FIFO's (summed over seeds where several)
    ua_ok: bool
    epochs_ok: bool

    @property
    def holds(self) -> bool:
        return self.ua_ok and self.epochs_ok


def verdict(asha: Sequence[Side], fifo: Sequence[Side], ua_tolerance: float = UA_TOLERANCE,
            epochs_share: float = EPOCHS_SHARE) -> Verdict:
    """The P4 target over paired seeds: the mean over seeds of (ASHA - FIFO) confirmed validation UA
    is at least -ua_tolerance, and ASHA's search epochs summed over the seeds are at most
    epochs_share of FIFO's. Each seed's own confirmed mean is one unit (confirmation seeds are
    repeats inside a unit). Pass one side each for a single seed's verdict."""
    if not asha or len(asha) != len(fifo):
        raise ValueError(f"verdict needs the same number of ASHA and FIFO searches (got {len(asha)}, {len(fifo)})")
    if [a.seed for a in asha] != [f.seed for f in fifo]:
        raise ValueError("verdict pairs ASHA and FIFO searches by seed: the seeds differ")
    val = [a.val[0] - f.val[0] for a, f in zip(asha, fifo)]
    test = [a.test[0] - f.test[0] for a, f in zip(asha, fifo)]
    fifo_epochs = sum(f.epochs for f in fifo)
    ratio = sum(a.epochs for a in asha) / fifo_epochs if fifo_epochs else math.nan
    val_diff = sum(val) / len(val)
    test_diff = sum(test) / len(test)
    # a small tolerance for float noise: a difference of exactly -1 point is "within 1 point"
    return Verdict(val_diff=val_diff, test_diff=test_diff, epochs_ratio=ratio,
                   ua_ok=math.isfinite(val_diff) and val_diff >= -ua_tolerance - 1e-12,
                   epochs_ok=math.isfinite(ratio) and ratio <= epochs_share + 1e-12)


def _pm(stat: tuple[float, float, int]) -> str:
    mean, half, n = stat
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" + (f" ± {half:.3f}" if math.isfinite(half) else "") + f" (n={n})"


def table(sides: Sequence[Side]) -> str:
    """The per-seed, per-side table (markdown)."""
    head = ("| seed | side | search epochs | trials (completed / stopped) | search wall | best searched val UA | "
            "confirmed val UA | confirmed test UA | chosen configuration |")
    lines = [head, "|" + "---|" * 9]
    for s in sides:
        chosen = s.chosen + (f" (confirmed runs of {s.reused_confirmation})" if s.reused_confirmation else "")
        wall = f"{s.wall_s:.0f} s" if math.isfinite(s.wall_s) else "-"
        lines.append(f"| {s.seed} | {s.side} | {s.epochs} | {s.trials} ({s.completed} / {s.pruned}) | {wall} | "
                     f"{s.searched_val_ua:.3f} | {_pm(s.val)} | {_pm(s.test)} | {chosen} |")
    return "\n".join(lines)


def summary(asha: Sequence[Side], fifo: Sequence[Side]) -> str:
    """Per-seed differences and ratios, then the verdict over all seeds."""
    lines = []
    for a, f in zip(asha, fifo):
        v = verdict([a], [f])
        lines.append(f"seed {a.seed}: ASHA - FIFO confirmed val UA {100 * v.val_diff:+.1f} points (test "
                     f"{100 * v.test_diff:+.1f}), epochs {a.epochs} / {f.epochs} = {v.epochs_ratio:.2f}: "
                     f"{'holds' if v.holds else 'misses'}")
    v = verdict(asha, fifo)
    lines.append(f"all {len(asha)} seeds: ASHA - FIFO confirmed val UA {100 * v.val_diff:+.1f} points (mean over "
                 f"seeds; test {100 * v.test_diff:+.1f}), search epochs {sum(a.epochs for a in asha)} / "
                 f"{sum(f.epochs for f in fifo)} = {v.epochs_ratio:.2f}")
    lines.append(f"target (within {100 * UA_TOLERANCE:.0f} UA point of FIFO, <= {100 * EPOCHS_SHARE:.0f} % of its "
                 f"epochs): {'HOLDS' if v.holds else 'MISSED'} (UA {'ok' if v.ua_ok else 'missed'}, epochs "
                 f"{'ok' if v.epochs_ok else 'missed'})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runs



def prepare(args: argparse.Namespace) -> Path:
    """EmoDB prepared as `ser-search prepare --protocol speaker --folds standard --labels native` does it;
    reused when the same options were prepared before."""
    from benchmarks.common import find_emodb  # noqa: PLC0415
    from ser_core.prepare import PrepareOptions, prepare_corpora  # noqa: PLC0415

    options = PrepareOptions(protocol="speaker", standard_folds=True, labels="native",
                             segment_seconds=args.segment_seconds, augment_copies=args.augment_copies)
    out = args.workdir / f"prepared-emodb-native-standard-{args.segment_seconds:g}s-{args.augment_copies}copies"
    if not (out / "protocol.json").is_file():
        t0 = time.perf_counter()
        prepare_corpora({"emodb": find_emodb(args.emodb, "early-stopping benchmark")}, out, options, progress=False, overwrite=True)
        print(f"  prepared EmoDB in {time.perf_counter() - t0:.1f} s: {out}", flush=True)
    return out


def space(frontends: list[str]) -> str:
    """demo.toml's [space], with the frontend axis replaced by the frontends given."""
    from benchmarks.sweep import demo_space  # noqa: PLC0415

    text = demo_space()
    value = f'"{frontends[0]}"' if len(frontends) == 1 else "{ choices = [" + ", ".join(f'"{f}"' for f in frontends) + "] }"
    text, n = re.subn(r"^frontend\s*=.*$", f"frontend = {value}", text, count=1, flags=re.MULTILINE)
    if n != 1:
        raise SystemExit("early-stopping benchmark: demo.toml's [space] has no frontend axis to replace")
    return text


def sweep_text(name: str, seed: int, args: argparse.Namespace, prepared: Path, grace_period: int) -> str:
    from benchmarks.common import tiny_cpu_sweep  # noqa: PLC0415 - librosa and torch: not for the pure figures

    return tiny_cpu_sweep(written_by=f"benchmarks/early_stopping.py; the [space] is search/sweeps/demo.toml's "
                                     f"(frontend: {args.frontends})", name=name, trials=args.trials,
                          concurrent=args.concurrent, cover_choices=True, seed=seed, prepared=prepared,
                          max_epochs=args.max_epochs, grace_period=grace_period,
                          reduction_factor=args.reduction_factor, space=space(args.frontends))


def _finished(sweep_dir: Path, n: int) -> bool:
    """A sweep (or confirmation) of n trials already ran to its end here: reuse it."""
    from search.results import read_trials  # noqa: PLC0415

    if not (sweep_dir / "trials.parquet").is_file():
        return False
    trials = read_trials(str(sweep_dir))
    return len(trials) >= n and trials["status"].isin(["completed", "pruned", "error"]).all()


def _describe(row: pd.Series) -> str:
    from ser_core.losses import loss_param_specs  # noqa: PLC0415

    params = [f"{row['loss_family']}", f"lr {row['lr']:.2g}"]
    for col in (spec.name for spec in loss_param_specs()):  # a row has only its own family's set
        if col in row and pd.notna(row[col]):
            params.append(f"{col} {row[col]:.2g}")
    return f"{row['frontend']}, " + ", ".join(params)


def _config_identity(config_json: str) -> str:
    raw = json.loads(config_json)
    raw.pop("seed", None)
    return json.dumps(raw, sort_keys=True)


def run_side(side: str, seed: int, args: argparse.Namespace, prepared: Path, corpus: Any,
             confirmed: dict[str, str]) -> Side:
    """One search and the confirmation of its best configuration; `confirmed` maps a configuration's
    identity to the confirmation sweep that already ran it (filled here)."""
    from search.definition import load_sweep  # noqa: PLC0415
    from search.results import read_trials  # noqa: PLC0415
    from search.driver.sweep import _choose_for_confirmation, run_confirm, run_sweep  # noqa: PLC0415

    fifo = side == "FIFO"
    grace = args.max_epochs if fifo else args.grace_period
    tag = f"t{args.trials}-e{args.max_epochs}-{'-'.join(args.frontends)}"
    name = (f"es-s{seed}-fifo-{tag}" if fifo
            else f"es-s{seed}-asha-g{args.grace_period}-rf{args.reduction_factor:g}-{tag}")
    sweep_dir = args.results / name
    wall = math.nan
    if _finished(sweep_dir, args.trials):
        print(f"\nseed {seed}, {side}: reusing the finished sweep {sweep_dir}", flush=True)
    else:
        path = args.workdir / "sweeps" / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sweep_text(name, seed, args, prepared, grace), encoding="utf-8")
        print(f"\nseed {seed}, {side}: sweep {path} (grace {grace}, reduction {args.reduction_factor:g}, max "
              f"{args.max_epochs} epochs), results in {sweep_dir}", flush=True)
        t0 = time.time()
        run_sweep(load_sweep(path), str(args.results), corpus=corpus, echo=not args.quiet)
        wall = time.time() - t0
        print(f"  search done in {wall:.0f} s", flush=True)
    trials = read_trials(str(sweep_dir))
    chosen = _choose_for_confirmation(trials, 1, None)  # what run_confirm(top=1) will confirm
    if chosen.empty:
        raise SystemExit(f"early-stopping benchmark: {name} has no completed trial to confirm")
    best = chosen.iloc[0]
    identity = _config_identity(best["config_json"])
    conf_name = f"{name}-confirm-{args.confirm_seeds}s" + (
        f"-f{'.'.join(map(str, args.confirm_folds))}" if args.confirm_folds else "")
    runs = args.confirm_seeds * max(1, len(args.confirm_folds))
    reused = ""
    if identity in confirmed and confirmed[identity] != conf_name:
        conf_name = reused = confirmed[identity]
        print(f"  its best configuration is the one {reused} confirmed: reusing those runs", flush=True)
    elif _finished(args.results / conf_name, runs):
        print(f"  reusing the finished confirmation {args.results / conf_name}", flush=True)
    else:
        t0 = time.time()
        run_confirm(str(args.results), name, top=1, seeds=args.confirm_seeds, cpus_per_trial=1, gpus_per_trial=0,
                    max_concurrent=args.concurrent, corpus=corpus, folds=args.confirm_folds or None,
                    echo=not args.quiet, name=conf_name)
        print(f"  confirmation ({runs} runs) done in {time.time() - t0:.0f} s", flush=True)
    confirmed.setdefault(identity, conf_name)
    conf = read_trials(str(args.results / conf_name))
    conf = conf[conf["status"] == "completed"]
    status = trials["status"].value_counts()
    return Side(seed=seed, side=side, epochs=epochs_spent(trials), trials=len(trials),
                completed=int(status.get("completed", 0)), pruned=int(status.get("pruned", 0)),
                searched_val_ua=float(best["val_ua"]), confirmed_val=[float(x) for x in conf["val_ua"]],
                confirmed_test=[float(x) for x in conf["test_ua"]], wall_s=wall, chosen=_describe(best),
                reused_confirmation=reused)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from search.definition import SchedulerSection  # noqa: PLC0415

    shipped = SchedulerSection(max_epochs=1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="TPE sampler seeds, comma-separated (default 0,1,2)")
    p.add_argument("--trials", type=int, default=12, help="num_samples per sweep (default 12)")
    p.add_argument("--max-epochs", type=int, default=16, help="epochs of a trial that is not stopped (default 16)")
    p.add_argument("--grace-period", type=int, default=shipped.grace_period,
                   help=f"ASHA grace period (default: the shipped {shipped.grace_period})")
    p.add_argument("--reduction-factor", type=float, default=shipped.reduction_factor,
                   help=f"ASHA reduction factor (default: the shipped {shipped.reduction_factor:g})")
    p.add_argument("--frontends", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=["mel"],
                   help="frontend choices of the space (default mel; mel,stft = the demo's)")
    p.add_argument("--confirm-seeds", type=int, default=3, help="confirmation seeds per best configuration (default 3)")
    p.add_argument("--confirm-folds", type=_ints, default=[],
                   help="test folds of the confirmation runs (default: the search's, fold 0)")
    p.add_argument("--concurrent", type=int, default=2, help="trials at a time, 1 CPU each (default 2)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    p.add_argument("--segment-seconds", type=float, default=2.0, help="prepared clip length (default 2.0)")
    p.add_argument("--augment-copies", type=int, default=0, help="noisy copies per clip (default 0)")
    p.add_argument("--emodb", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ser-search-early-stopping")
    p.add_argument("--results", type=Path, default=None,
                   help="results directory (default WORKDIR/results); finished sweeps in it are reused")
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    args = p.parse_args(argv)
    if not args.seeds or args.trials < 1 or args.max_epochs < 1 or args.confirm_seeds < 1:
        p.error("--seeds, --trials, --max-epochs and --confirm-seeds must be given and >= 1")
    try:
        SchedulerSection(max_epochs=args.max_epochs, grace_period=args.grace_period,
                         reduction_factor=args.reduction_factor)
    except ValueError as e:
        p.error(f"ASHA settings: {e}")
    if args.grace_period == args.max_epochs:
        p.error("--grace-period equal to --max-epochs is the FIFO side itself")
    args.results = (args.results or args.workdir / "results").resolve()
    args.workdir = args.workdir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import ray  # noqa: PLC0415

    from benchmarks.packing import describe_machine, interrupt_on_signals, private_ray_env  # noqa: PLC0415
    from ser_core.corpus import PreparedCorpus  # noqa: PLC0415
    from search.driver.sweep import connect  # noqa: PLC0415

    private_ray_env()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    prepared = prepare(args)
    corpus = PreparedCorpus.load(prepared).in_memory()
    print(f"early-stopping benchmark: EmoDB {prepared} ({len(corpus)} clips, {corpus.n_folds} speaker folds, native "
          f"labels); seeds {args.seeds}; {args.trials} trials per sweep, max {args.max_epochs} epochs; ASHA grace "
          f"{args.grace_period}, reduction {args.reduction_factor:g} vs FIFO (grace = max epochs); confirmation: "
          f"{args.confirm_seeds} seeds{f' x folds {args.confirm_folds}' if args.confirm_folds else ' on fold 0'}; "
          f"{args.concurrent} trials at a time of 1 CPU", flush=True)
    print(f"  machine: {describe_machine('cpu')}", flush=True)
    connect(None, num_cpus=args.num_cpus)
    interrupt_on_signals()
    asha: list[Side] = []
    fifo: list[Side] = []
    confirmed: dict[str, str] = {}
    try:
        for seed in args.seeds:
            # FIFO first: its sweeps do not depend on the ASHA setting, so a rerun with another one reuses them
            fifo.append(run_side("FIFO", seed, args, prepared, corpus, confirmed))
            asha.append(run_side("ASHA", seed, args, prepared, corpus, confirmed))
            print("\n" + table([s for pair in zip(asha, fifo) for s in pair]), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: the table holds the seeds that finished", flush=True)
    finally:
        ray.shutdown()
    n = min(len(asha), len(fifo))
    if not n:
        print("no seed finished both sides")
        return
    print(f"\nearly stopping vs FIFO, EmoDB, {args.trials} trials x max {args.max_epochs} epochs, ASHA grace "
          f"{args.grace_period} reduction {args.reduction_factor:g}; {time.time() - started:.0f} s in all\n")
    print(table([s for pair in zip(asha[:n], fifo[:n]) for s in pair]))
    print()
    print(summary(asha[:n], fifo[:n]))


if __name__ == "__main__":
    main()
