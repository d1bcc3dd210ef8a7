"""Packing: N concurrent trials on one device, and where adding trials stops paying.

Why: a sweep shares each GPU between trials (Ray fractional GPUs, `gpus_per_trial` in a sweep
file). One paper-size CNN-Transformer trial leaves most of a large GPU idle (small kernels,
launch-bound), so packing trials should raise the sweep's throughput — until the GPU is busy,
after which more trials only split it. This script finds that point, so a sweep file's default
`gpus_per_trial` follows from a measurement rather than a guess.

For each N (--n 1,2,4,8) N identical trials start at once on a private local Ray, each a Ray task
with `num_gpus=1/N` (CPU: `--device cpu`, 1 CPU each, N capped at the CPUs Ray has), each running
`ser_core.train.fit` for --epochs epochs of the paper-size CNN-Transformer (TrainConfig
defaults: 4 conv blocks + 4 Transformer layers, AdamW, batch 32, bf16 autocast on CUDA) on the
same prepared synthetic corpus (the WAVs and options of benchmarks/epoch.py, 80/10/10, two noisy
copies per training clip). Plain Ray tasks rather than Ray Tune: the question is what N
co-located fits cost, not Tune's bookkeeping (benchmarks/sweep.py measures that); a task's
resources are exactly Tune's per-trial resources, `max_calls=1` gives every trial a fresh
process (clean peak-memory figures), and a start line (a small actor) holds every trial until
all N have started, so the timed epochs overlap.

Measured per N:
  aggregate clips/s  training rows x timed epochs, summed over trials, / wall time of the packed
                     phase: epochs 2..E of every trial (epoch 1 and fit's setup — feature caching,
                     CUDA start-up — are one-time costs and excluded; an epoch is fit's
                     EpochReport.seconds: the training pass + scoring validation, as in epoch.py).
                     The window runs from the first trial's epoch-2 start to the last trial's end,
                     so a straggler lowers the figure; "overlap" is the share of that window in
                     which all N trials were in timed epochs.
  GPU utilisation    nvidia-smi's utilization.gpu (share of time any kernel ran; not SM occupancy),
                     sampled every 0.5 s in a thread, mean over the window; "n/a" on CPU.
  peak memory/trial  torch.cuda.max_memory_allocated inside each trial (the largest trial shown;
                     CUDA context and allocator slack come on top: see nvidia-smi's peak
                     memory.used); on CPU each trial's max RSS (resource.getrusage).
Then the scaling efficiency aggregate(N)/aggregate(1), and the recommendation: gpus_per_trial =
1/N for the largest N reached by doubling while each step still gained >= 10 % over N/2.

    python benchmarks/packing.py --device cuda [--n 1,2,4,8] [--clips 4720] [--epochs 3]
    python benchmarks/packing.py --device cpu --n 1,2 --max-train-clips 256   # small CPU mode
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import librosa
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import cpu_model, default_workdir, synthetic_wav_corpus  # noqa: E402
from benchmarks.epoch import SAMPLE_RATE, SNR_DB, TRIM_TOP_DB  # noqa: E402
from ser_core.config import TrainConfig  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.labels import EMOTIONS  # noqa: E402
from ser_core.prepare import PrepareOptions, prepare_corpora  # noqa: E402
from ser_core.train import fit  # noqa: E402
from search.driver.sweep import connect  # noqa: E402 - the product's way to start a local Ray

GAIN_TO_KEEP_PACKING = 1.10   # N is worth it when aggregate(N) >= 1.1 x aggregate(N/2)
SAMPLE_INTERVAL_S = 0.5
START_LINE_TIMEOUT_S = 600.0  # every trial must have started by then, or the round fails


# ----------------------------------------------------------------------------- shared with sweep.py


def interrupt_on_signals() -> None:
    """`timeout` (gpu.sh) ends a step with SIGTERM, a person with Ctrl-C; both become
    KeyboardInterrupt, so Ray is shut down and what was measured so far is still printed.
    Call it after Ray has started: Ray's core worker installs its own SIGTERM handler (a stack
    dump, then death) and this replaces it; SIGINT is restored even where a shell ignored it."""
    def interrupt(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def private_ray_env() -> None:
    """Ray workers must import ser_core from this checkout whatever the caller's cwd, and a
    benchmark measures its own local cluster, never one RAY_ADDRESS points at."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, paths)])
    if os.environ.pop("RAY_ADDRESS", None):
        print("  (RAY_ADDRESS ignored: the benchmarks start their own local Ray)", flush=True)


def benchmark_corpus(workdir: Path, n_clips: int, seconds: float, seed: int = 0) -> Path:
    """epoch.py's prepared corpus (same WAVs, same options, same folder), reused when one with
    exactly these options is already there: preparing the paper-size corpus takes ~30 s."""
    root, files = synthetic_wav_corpus(workdir / f"wav48k-{n_clips}", n_clips, seed=seed)
    out = workdir / f"prepared-{len(files)}-{seconds:g}s"
    options = PrepareOptions(sample_rate=SAMPLE_RATE, segment_seconds=seconds, trim_top_db=TRIM_TOP_DB,
                             protocol="utterance", augment_copies=2, augment_snr_db=SNR_DB, seed=seed)
    if not _prepared_matches(out, options, root, len(files)):
        prepare_corpora({"synthetic": root}, out, options, progress=False, overwrite=True)
    return out


def start_benchmark(what: str, device: str, workdir: Path, n_clips: int, seconds: float,
                    seed: int = 0) -> PreparedCorpus:
    """What both Ray benchmarks do first: a private Ray environment, the device checked, and
    the benchmark corpus prepared (or reused) and read into memory for the object store."""
    private_ray_env()
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"{what}: --device cuda requested but torch sees no CUDA device")
    return PreparedCorpus.load(benchmark_corpus(workdir, n_clips, seconds, seed)).in_memory()


def _prepared_matches(out: Path, options: PrepareOptions, root: Path, n_files: int) -> bool:
    try:
        proto = json.loads((out / "protocol.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = options.model_dump(include={"sample_rate", "segment_seconds", "trim_top_db", "protocol",
                                         "augment_copies", "augment_snr_db", "seed"})
    counts = proto.get("counts") or {}
    return (all(proto.get(k) == v for k, v in wanted.items())
            and proto.get("corpora") == {"synthetic": str(root)}
            and isinstance(counts, dict) and counts.get("prepared") == n_files)


def gpu_index() -> str:
    """The GPU nvidia-smi should watch: the first one CUDA_VISIBLE_DEVICES names, else 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return first or "0"


def describe_machine(device: str) -> str:
    """Like common.machine_summary, but without creating a CUDA context in the driver (it would
    hold GPU memory for the whole run and show up in nvidia-smi's memory figures)."""
    gpu = "none used"
    if device == "cuda":
        try:
            gpu = subprocess.run(["nvidia-smi", "-i", gpu_index(), "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=10,
                                 check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            gpu = f"unknown (nvidia-smi failed: {e})"
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
            f"{' (CUDA ' + str(torch.version.cuda) + ')' if device == 'cuda' else ''}, ray {ray.__version__}, "
            f"librosa {librosa.__version__}, Python {platform.python_version()}, GPU: {gpu}")


@dataclass
class GpuSampler:
    """nvidia-smi in a thread every `interval` s: (wall time, utilisation %, memory used MiB).

    A thread and the CLI rather than NVML bindings: nvidia-smi is on every GPU machine, and
    polling it costs the benchmarked processes nothing. Without nvidia-smi (or with enabled=False,
    on CPU) it records nothing and every figure reads n/a."""

    enabled: bool = True
    interval: float = SAMPLE_INTERVAL_S
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    problem: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.enabled and shutil.which("nvidia-smi") is None:
            self.enabled, self.problem = False, "nvidia-smi not found on PATH"

    def __enter__(self) -> "GpuSampler":
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "-i", gpu_index(), "--query-gpu=utilization.gpu,memory.used",
               "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            t = time.time()
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout
                util, mem = (float(x) for x in out.strip().splitlines()[0].split(","))
                self.samples.append((t, util, mem))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
                self.problem = f"nvidia-smi sample failed: {e}"
            self._stop.wait(max(0.0, self.interval - (time.time() - t)))

    def between(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


# ----------------------------------------------------------------------------- one packed round


@dataclass
class TrialRun:
    """What one packed trial reports back: when each epoch's callback ran (wall clock), each
    epoch's seconds, and its peak memory."""

    marks: list[tuple[float, float]]   # (time.time() in on_epoch, EpochReport.seconds)
    peak_bytes: int

    def timed(self) -> tuple[float, float, list[float]]:
        """(start, end, seconds) of epochs 2..E. Epoch e starts when epoch e-1's callback returns
        (nothing of fit runs between them; epoch 1's callback waits for all trials first); its end
        is start + seconds, which leaves out the final evaluation fit runs before the last callback."""
        starts = [t for t, _ in self.marks[:-1]]
        secs = [s for _, s in self.marks[1:]]
        return starts[0], starts[-1] + secs[-1], secs


@dataclass
class Round:
    n: int
    gpus_per_trial: float
    trials: list[TrialRun]
    n_train: int
    wall_s: float
    util_mean: float | None
    mem_used_peak_mib: float | None

    @property
    def window(self) -> tuple[float, float]:
        spans = [t.timed()[:2] for t in self.trials]
        return min(s for s, _ in spans), max(e for _, e in spans)

    @property
    def aggregate(self) -> float:
        t0, t1 = self.window
        epochs = sum(len(t.timed()[2]) for t in self.trials)
        return self.n_train * epochs / (t1 - t0)

    @property
    def per_trial(self) -> float:
        return statistics.median(self.n_train / statistics.median(t.timed()[2]) for t in self.trials)

    @property
    def overlap(self) -> float:
        spans = [t.timed()[:2] for t in self.trials]
        t0, t1 = self.window
        return max(0.0, min(e for _, e in spans) - max(s for s, _ in spans)) / (t1 - t0)

    @property
    def peak_mib(self) -> float:
        return max(t.peak_bytes for t in self.trials) / 2**20


def _trial(cfg_json: str, corpus: Any, start_line: Any, threads: int) -> dict[str, Any]:
    """Runs in a Ray worker: wait at the start line, then one fit, timing its epochs. Returns
    TrialRun's fields as a dict (a class defined in a script's __main__ would travel by value)."""
    torch.set_num_threads(threads)
    cfg = TrainConfig.model_validate_json(cfg_json)
    cuda = cfg.device.startswith("cuda")

    def wait_for_all(phase: str) -> None:
        ray.get(start_line.arrive.remote(phase))
        deadline = time.time() + START_LINE_TIMEOUT_S
        while not ray.get(start_line.all_here.remote(phase)):
            if time.time() > deadline:
                raise TimeoutError(f"packing: not every trial of the round reached {phase!r} within "
                                   f"{START_LINE_TIMEOUT_S:.0f} s (does the cluster have the CPUs/GPU share "
                                   "for all N at once?)")
            time.sleep(0.02)

    marks: list[tuple[float, float]] = []

    def on_epoch(report: Any, _state: Any) -> None:
        if report.epoch == 1:  # setup times differ a little; the timed epochs start together
            wait_for_all("timed epochs")
        marks.append((time.time(), report.seconds))

    wait_for_all("start")
    fit(cfg, corpus, on_epoch=on_epoch)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:  # Linux reports ru_maxrss in KiB
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"marks": marks, "peak_bytes": int(peak)}


class _StartLine:
    """Counts arrivals per phase; trials poll it so that none begins a phase (fit, the timed
    epochs) before all N are there."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.here: dict[str, int] = {}

    def arrive(self, phase: str) -> None:
        self.here[phase] = self.here.get(phase, 0) + 1

    def all_here(self, phase: str) -> bool:
        return self.here.get(phase, 0) >= self.n


def gpu_share(n: int) -> float:
    """1/N rounded down to Ray's resource precision (1e-4), so N shares never exceed one GPU."""
    return int(10_000 / n) / 10_000


def run_round(n: int, cfg: TrainConfig, corpus_ref: Any, n_train: int, device: str, cpus: float) -> Round:
    gpus = gpu_share(n) if device == "cuda" else 0.0
    task = ray.remote(max_calls=1)(_trial).options(num_cpus=cpus, num_gpus=gpus)
    line = ray.remote(num_cpus=0)(_StartLine).remote(n)
    with GpuSampler(enabled=device == "cuda") as sampler:
        t0 = time.perf_counter()
        refs = [task.remote(cfg.model_copy(update={"seed": i}).model_dump_json(), corpus_ref, line,
                            max(1, int(cpus))) for i in range(n)]
        try:
            trials = [TrialRun(**t) for t in ray.get(refs)]
        except BaseException:
            for r in refs:
                ray.cancel(r, force=True)
            raise
        wall = time.perf_counter() - t0
    ray.kill(line)
    rnd = Round(n, gpus, trials, n_train, wall, None, None)
    samples = sampler.between(*rnd.window)
    if samples:
        rnd.util_mean = statistics.mean(u for _, u, _ in samples)
        rnd.mem_used_peak_mib = max(m for _, _, m in sampler.samples)
    elif device == "cuda":
        print(f"  (no nvidia-smi samples for N={n}: {sampler.problem or 'window shorter than the interval'})",
              flush=True)
    return rnd


# ----------------------------------------------------------------------------- reporting


def recommend(rounds: list[Round]) -> tuple[int, str]:
    """Largest N reached by doubling from N=1 while each step gained >= 10 % over N/2."""
    by_n = {r.n: r for r in rounds}
    if 1 not in by_n:
        return min(by_n), "N=1 was not measured, so no gain could be judged"
    best, why = 1, "no N=2 round to compare with"
    while 2 * best in by_n:
        gain = by_n[2 * best].aggregate / by_n[best].aggregate
        if gain < GAIN_TO_KEEP_PACKING:
            return best, (f"N={2 * best} gains only {100 * (gain - 1):+.0f} % over N={best}, "
                          f"< {100 * (GAIN_TO_KEEP_PACKING - 1):.0f} %")
        best, why = 2 * best, f"N={2 * best} gains {100 * (gain - 1):+.0f} % over N={best}"
    if best > 1:
        why += f"; N={2 * best} was not measured"
    return best, why


def print_table(rounds: list[Round], device: str) -> None:
    base = next((r.aggregate for r in rounds if r.n == 1), None)
    mem_label = "peak alloc/trial MiB" if device == "cuda" else "peak RSS/trial MiB"
    print(f"\n  {'N':>2} {'gpu/trial':>9} {'aggregate clips/s':>18} {'per trial':>10} {'eff. vs N=1':>11} "
          f"{'vs N/2':>7} {'overlap':>8} {'GPU util':>9} {'GPU mem used':>13} {mem_label:>21} {'round s':>8}")
    prev: dict[int, float] = {}
    for r in rounds:
        prev[r.n] = r.aggregate
        half = prev.get(r.n // 2) if r.n % 2 == 0 else None
        print(f"  {r.n:>2} {fmt(r.gpus_per_trial if device == 'cuda' else None, '.4g'):>9} {r.aggregate:18.1f} "
              f"{r.per_trial:10.1f} {fmt(r.aggregate / base if base else None, '.2f', 'x'):>11} "
              f"{fmt(100 * (r.aggregate / half - 1) if half else None, '+.0f', ' %'):>7} "
              f"{100 * r.overlap:7.0f}% {fmt(r.util_mean, '.0f', ' %'):>9} "
              f"{fmt(r.mem_used_peak_mib, '.0f', ' MiB'):>13} {r.peak_mib:21.0f} {r.wall_s:8.1f}", flush=True)


def print_recommendation(rounds: list[Round], device: str) -> None:
    if not rounds:
        print("\nno round finished: nothing to recommend")
        return
    n, why = recommend(rounds)
    if device == "cuda":
        print(f"\nrecommended gpus_per_trial = 1/{n} = {gpu_share(n):.4g}: the largest N whose aggregate still "
              f"improved by >= {100 * (GAIN_TO_KEEP_PACKING - 1):.0f} % over N/2 ({why})")
        print(f"RECOMMENDED_GPUS_PER_TRIAL={gpu_share(n):.4g}")
    else:
        print(f"\nrecommended packing on this CPU: {n} concurrent 1-CPU trial(s) (a GPU recommendation needs "
              f"--device cuda; {why})")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="1,2,4,8", help="trials per device to try, comma-separated (default 1,2,4,8)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--clips", type=int, default=320, help="source WAV files (default 320; 4720 = the paper's)")
    p.add_argument("--seconds", type=float, default=3.5, help="segment length in seconds (default 3.5)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial; the first is not timed (default 3)")
    p.add_argument("--max-train-clips", type=int, default=None,
                   help="training rows per epoch (data.max_train_clips; default: the whole training split)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray CPUs per trial (default 1)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA (TrainConfig's default is on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=default_workdir(),
                   help="where WAV files and the prepared corpus are kept")
    args = p.parse_args(argv)
    try:
        args.ns = sorted({int(x) for x in args.n.split(",") if x.strip()})
    except ValueError:
        p.error(f"--n takes comma-separated whole numbers, e.g. 1,2,4,8; got {args.n!r}")
    if not args.ns or args.ns[0] < 1:
        p.error(f"--n needs at least one N >= 1, got {args.n!r}")
    if args.epochs < 2:
        p.error("--epochs must be >= 2: the first epoch is setup and is not timed")
    if args.clips < 10 * len(EMOTIONS):
        p.error(f"--clips must be at least {10 * len(EMOTIONS)}: the 80/10/10 split needs 10 clips per emotion")
    if args.cpus_per_trial <= 0 or args.seconds <= 0 or (args.max_train_clips is not None and args.max_train_clips < 2):
        p.error("--cpus-per-trial and --seconds must be > 0, --max-train-clips >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus = start_benchmark("packing", args.device, args.workdir, args.clips, args.seconds, args.seed)
    prepared = corpus.root
    n_train = len(corpus.evaluation_split(0).rows["train"])
    if args.max_train_clips:
        n_train = min(n_train, args.max_train_clips)
    cfg = TrainConfig.model_validate({
        "data": {"prepared": str(prepared), "max_train_clips": args.max_train_clips},
        "optim": {"epochs": args.epochs}, "device": args.device, "amp": not args.fp32,
    })

    connect(None, num_cpus=args.num_cpus)
    interrupt_on_signals()
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        ns = [n for n in args.ns if n * args.cpus_per_trial <= cpus]
        skipped = [n for n in args.ns if n not in ns]
        print(f"packing benchmark: {len(corpus)} prepared rows from {args.clips} WAV files ({prepared})")
        print(f"  machine: {describe_machine(args.device)}")
        precision = "bf16 autocast" if args.device == "cuda" and not args.fp32 else "fp32"
        print(f"  per trial: fit, {args.epochs} epochs (epoch 1 untimed), {n_train} training rows + "
              f"{len(corpus.evaluation_split(0).rows['val'])} validation clips per epoch, paper-size "
              f"CNNTransformer (TrainConfig defaults), batch {cfg.optim.batch_size}, {precision}, "
              f"{args.cpus_per_trial:g} CPU(s) per trial; local Ray with {cpus:.0f} CPUs, "
              f"{ray.cluster_resources().get('GPU', 0):.0f} GPU(s)")
        if skipped:
            print(f"  N={','.join(map(str, skipped))} skipped: {cpus:.0f} CPUs hold at most "
                  f"{int(cpus // args.cpus_per_trial)} trials of {args.cpus_per_trial:g} CPU")
        if args.device == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
            raise SystemExit("packing: --device cuda but the local Ray found no GPU")
        corpus_ref = ray.put(corpus)
        rounds: list[Round] = []
        try:
            for n in ns:
                rounds.append(run_round(n, cfg, corpus_ref, n_train, args.device, args.cpus_per_trial))
                print(f"  N={n}: {rounds[-1].aggregate:.1f} clips/s aggregate "
                      f"({rounds[-1].wall_s:.0f} s for the round)", flush=True)
        except KeyboardInterrupt:
            print(f"\ninterrupted: reporting the {len(rounds)} round(s) that finished", flush=True)
        if rounds:
            print_table(rounds, args.device)
            print("  aggregate = training rows x timed epochs over all trials / the packed window; per trial = "
                  "median over trials of rows / median timed epoch; overlap = share of the window all N "
                  "trials were in timed epochs")
        print_recommendation(rounds, args.device)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
