"""Warm-started sweeps (issue 16): does seeding TPE with an earlier sweep's trials find a good
configuration in fewer trials?

What runs, through the project's own machinery (search.driver.run_sweep on one private local Ray):
  prepare   EmoDB (../shared/data/emodb, --emodb or $SER_SEARCH_EMODB) with ser_core.prepare's
            `prepare_corpora`: speaker protocol, standard speaker folds, EmoDB's 7 native classes,
            2.0 s segments, no noisy copies; reused when already prepared. Test fold 0, validation
            fold 1.
  per repetition r (0..--reps-1), three sweeps of --trials trials each, one trial at a time:
    earlier  TPE seed 100 + r
    cold     TPE seed r
    warm     TPE seed r, `[sweep] warm_start = [earlier]`: the earlier sweep's completed and pruned
             trials are in the study before the first proposal
  Every sweep: the same space (SPACE: 4 loss families, a wide log lr range, batch size, dropout
  and the families' parameters), the demo's tiny CNN-Transformer on 40-band Mel, ASHA (--max-epochs,
  --grace-period, reduction factor 2), cover_choices off (it would spend the first trials on fixed
  points in both arms alike).

Printed: for each repetition and arm, the best validation UA (trials.parquet `val_ua`: at the best
epoch, pruned trials' best so far) among the sweep's first k trials (in start order) for k in
--at; then the mean over repetitions and warm minus cold per k, as a Markdown table. Validation UA
only: test UA is not a search criterion.

    python benchmarks/warm_start.py                             # 3 reps x 16 trials, 6 epochs
    python benchmarks/warm_start.py --reps 1 --trials 8 --at 2,4,8 --max-epochs 3
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = """
[space]
loss_family = { choices = ["cross_entropy", "focal", "center", "bce"] }
frontend = "mel"
lr = { low = 1e-4, high = 1e-2, log = true }
batch_size = { choices = [16, 32, 64] }
dropout = { low = 0.0, high = 0.5 }
seed = 0
gamma = { low = 0.5, high = 4.0 }
center_lambda = { low = 1e-3, high = 0.5, log = true }
center_lr = { low = 0.05, high = 1.0, log = true }
"""

BASE = """
[base]
device = "cpu"
model = { name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, n_layers = 1, ff_dim = 64 }
frontend = { n_mels = 40 }
optim = { name = "adamw", weight_decay = 1e-4 }
"""



def prepare(args: argparse.Namespace) -> Path:
    from benchmarks.common import find_emodb  # noqa: PLC0415
    from ser_core.prepare import PrepareOptions, prepare_corpora  # noqa: PLC0415

    out = args.workdir / "prepared-emodb-native-standard-2s"
    if not (out / "protocol.json").is_file():
        t0 = time.perf_counter()
        prepare_corpora({"emodb": find_emodb(args.emodb, "warm-start benchmark")}, out,
                        PrepareOptions(protocol="speaker", standard_folds=True, labels="native",
                                       segment_seconds=2.0, augment_copies=0), progress=False, overwrite=True)
        print(f"prepared EmoDB in {time.perf_counter() - t0:.1f} s: {out}", flush=True)
    return out


def sweep_text(name: str, seed: int, args: argparse.Namespace, prepared: Path, warm: Path | None) -> str:
    warm_line = f'warm_start = ["{warm}"]' if warm else ""
    return f"""
[sweep]
name = "{name}"
num_samples = {args.trials}
max_concurrent_trials = 1
seed = {seed}
cover_choices = false
{warm_line}

[data]
prepared = "{prepared}"
fold = 0

[scheduler]
max_epochs = {args.max_epochs}
grace_period = {args.grace_period}
reduction_factor = 2

[resources]
cpus_per_trial = 1
""" + SPACE + BASE


def best_after(sweep_dir: Path, at: list[int]) -> dict[int, float]:
    """Best validation UA among the sweep's first k trials (start order), for each k."""
    from search.results import read_trials  # noqa: PLC0415

    trials = read_trials(str(sweep_dir)).sort_values("started_at")
    ua = trials["val_ua"].tolist()
    return {k: max((u for u in ua[:k] if not math.isnan(u)), default=float("nan")) for k in at}


def run(name: str, seed: int, args: argparse.Namespace, prepared: Path, warm: Path | None) -> Path:
    from search.definition import load_sweep  # noqa: PLC0415
    from search.driver.sweep import run_sweep  # noqa: PLC0415

    sweep_dir = args.results / name
    if (sweep_dir / "tune").exists() and (sweep_dir / "trials.parquet").exists():
        print(f"  {name}: reusing {sweep_dir}", flush=True)
        return sweep_dir
    path = args.workdir / "sweeps" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sweep_text(name, seed, args, prepared, warm))
    t0 = time.perf_counter()
    run_sweep(load_sweep(path), str(args.results), num_cpus=args.cpus, echo=False)
    print(f"  {name}: {args.trials} trials in {time.perf_counter() - t0:.0f} s", flush=True)
    return sweep_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--at", default="4,8,16", help="trial counts to report the best validation UA after")
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--grace-period", type=int, default=2)
    p.add_argument("--cpus", type=int, default=1, help="CPUs of the local Ray")
    p.add_argument("--emodb", type=Path)
    p.add_argument("--prepared", type=Path, help="an EmoDB already prepared so (speaker folds); default: prepare one")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ser-search-warm-start")
    p.add_argument("--results", type=Path)
    args = p.parse_args()
    args.workdir = args.workdir.resolve()
    args.results = (args.results or args.workdir / "results").resolve()
    at = [int(k) for k in args.at.split(",")]
    if max(at) > args.trials:
        raise SystemExit(f"--at {max(at)} is more than --trials {args.trials}")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import ray  # noqa: PLC0415

    prepared = args.prepared.resolve() if args.prepared else prepare(args)
    rows: dict[str, list[dict[int, float]]] = {"cold": [], "warm": []}
    t0 = time.perf_counter()
    try:
        for r in range(args.reps):
            earlier = run(f"earlier-{r}", 100 + r, args, prepared, None)
            for arm in ("cold", "warm"):
                sweep_dir = run(f"{arm}-{r}", r, args, prepared, earlier if arm == "warm" else None)
                rows[arm].append(best_after(sweep_dir, at))
                print(f"  rep {r} {arm}: " + ", ".join(f"after {k}: {v:.3f}" for k, v in rows[arm][-1].items()),
                      flush=True)
            # the table so far after every repetition: a run cut short still leaves one
            print(f"\n{r + 1} repetition(s) x (earlier, cold, warm) x {args.trials} trials, max_epochs "
                  f"{args.max_epochs}, grace {args.grace_period}, in {time.perf_counter() - t0:.0f} s\n")
            print(table(rows, at), flush=True)
    finally:
        ray.shutdown()


def table(rows: dict[str, list[dict[int, float]]], at: list[int]) -> str:
    lines = ["| best val UA after | " + " | ".join(f"{k} trials" for k in at) + " |", "|---|" + "---|" * len(at)]
    for r in range(len(rows["warm"])):
        for arm in ("cold", "warm"):
            lines.append(f"| rep {r} {arm} | " + " | ".join(f"{rows[arm][r][k]:.3f}" for k in at) + " |")
    for arm in ("cold", "warm"):
        lines.append(f"| **mean {arm}** | " + " | ".join(
            f"{statistics.mean(x[k] for x in rows[arm]):.3f}" for k in at) + " |")
    diffs = {k: [w[k] - c[k] for w, c in zip(rows["warm"], rows["cold"])] for k in at}
    lines.append("| **warm - cold** (mean; per rep) | " + " | ".join(
        f"{statistics.mean(d):+.3f} ({', '.join(f'{x:+.3f}' for x in d)})" for d in diffs.values()) + " |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
