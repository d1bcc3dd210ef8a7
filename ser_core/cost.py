"""What one trial's model costs to run: parameters, multiply-accumulates and latency per clip.

Why: a multi-objective sweep trades accuracy against model cost, so every trial measures its
model's cost once, on its own device, cheaply enough (well under a second for the demo model)
that no trial notices. Three figures, each for ONE clip of the prepared corpus's segment length
as the model sees it (the frontend's output: `n_features` x `n_frames`, normalised):

- `params`: trainable parameters of the model (not a loss family's own state such as
  center loss's centers, which inference never uses).
- `macs`: multiply-accumulates of one forward pass at batch 1, counted by
  torch.utils.flop_counter.FlopCounterMode (its FLOPs / 2) on the CPU, whatever the trial's
  device. Counted: the convolutions and every matrix product — linear layers, attention's Q·Kᵀ
  and A·V, the RNN gates' input and recurrent products. Not counted: the spectrogram frontend
  (STFT / Mel / MFCC) and the normaliser, and every elementwise or reduction op (BatchNorm,
  activations, pooling, bias adds, LayerNorm, softmax, masks, the RNN gates' nonlinearities).
  Fused kernels hide their work from the counter (CPU flash attention, oneDNN's and cuDNN's
  LSTM, the Transformer's inference fast path), so the count runs the decomposed maths: math
  attention, oneDNN off, autograd on — the same products, each visible.
- `latency_ms`: median wall time of a single-clip forward pass (batch 1, eval mode,
  torch.inference_mode, the model in channels-last memory as `fit` trains it, bf16 autocast on
  CUDA when the trial uses it) on the trial's device, after a few warm-up passes; on CUDA each
  pass is synchronised. A fixed, small number of passes keeps it cheap; it runs with the torch
  threads the trial has (Ray sets one per reserved CPU), so on a loaded machine it carries that
  machine's noise — compare latencies within one sweep, not across machines.

A full-length clip is timed and counted (no padding mask): the cost of the segment, not of one
clip's speech. The stock modules are timed, as `ser-search predict` runs them, not fit's
ser_core.fastpath training kernels.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig, TrainConfig
from .features import num_frames
from .train.results import CorpusLike
from .train.setup import build_model, resolve_device

COST_METRICS = ("params", "macs", "latency_ms")  # the metric names every Tune result carries
WARMUP_RUNS = 2
TIMED_RUNS = 7


@dataclass(frozen=True)
class ModelCost:
    params: int          # trainable parameters of the model
    macs: int            # multiply-accumulates of one clip's forward pass (module docstring: what counts)
    latency_ms: float    # median single-clip forward time on `device`
    device: str          # where latency_ms was measured
    threads: int         # torch's intra-op threads while it was measured
    seconds: float = 0.0  # what measuring cost

    def metrics(self) -> dict[str, int | float]:
        """The figures under the metric names sweeps report and record (COST_METRICS)."""
        return {k: asdict(self)[k] for k in COST_METRICS}


def count_params(model: nn.Module) -> int:
    """Trainable parameters: those with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _run(model: nn.Module, x: Tensor, lengths: Tensor | None, functionals: Tensor | None) -> Any:
    if functionals is not None:  # a fused model (ser_core.models.FusedClassifier)
        return model(x, lengths, functionals)
    return model(x) if lengths is None else model(x, lengths)


def count_macs(model: nn.Module, x: Tensor, lengths: Tensor | None = None, functionals: Tensor | None = None) -> int:
    """Multiply-accumulates of `model(x, lengths)` (or `model(x)` when lengths is None; a fused
    model's functionals beside; openSMILE's own work computing them is not a model's and not counted) as
    FlopCounterMode counts them (FLOPs / 2), with every product visible to it: eval mode (no
    dropout), autograd on (nn.TransformerEncoderLayer's fused inference path has no formula),
    attention through its math kernel (the CPU flash kernel has none either) and oneDNN off
    (its LSTM has none; the native one is matrix products). Run it on CPU tensors."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # mkldnn.flags also sets oneDNN's TF32 switch, which warns on builds without Intel GPUs
            warnings.filterwarnings("ignore", message="TF32 acceleration", category=UserWarning)
            with FlopCounterMode(display=False) as counter, torch.enable_grad(), \
                    torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH):
                _run(model, x, lengths, functionals)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def measure_latency(model: nn.Module, x: Tensor, device: torch.device | str, *, warmup: int = WARMUP_RUNS,
                    runs: int = TIMED_RUNS, amp: bool = False, functionals: Tensor | None = None) -> float:
    """Median milliseconds of `model(x)` on `device` over `runs` timed passes after `warmup`
    untimed ones (eval mode, inference mode; bf16 autocast on CUDA when `amp`). The model and
    input are moved to the device; on CUDA every pass is synchronised before its clock stops."""
    if runs < 1:
        raise ValueError(f"measure_latency: runs must be >= 1, got {runs}")
    device = torch.device(device)
    model = model.to(device, memory_format=torch.channels_last).eval()
    x = x.to(device)
    functionals = None if functionals is None else functionals.to(device)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)  # noqa: E731
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and cuda):
        for _ in range(warmup):
            _run(model, x, None, functionals)
        sync()
        for _ in range(runs):
            t0 = time.perf_counter()
            _run(model, x, None, functionals)
            sync()
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def measure_cost(model_cfg: ModelConfig, n_features: int, num_classes: int, n_frames: int,
                 device: torch.device | str = "cpu", *, warmup: int = WARMUP_RUNS, runs: int = TIMED_RUNS,
                 amp: bool = False, layers: int = 1) -> ModelCost:
    """The configured model's cost for one (n_features x n_frames) clip; `device` is where its
    latency is measured. The global RNG is left as it was (the model's random init is forked)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_cfg, n_features, num_classes, layers)
        x = torch.randn(1, n_features, n_frames)
        functionals = torch.randn(1, model.n_functionals, 1) if model_cfg.fuse_functionals != "off" else None
    params = count_params(model)
    macs = count_macs(model, x, functionals=functionals)  # on the CPU, before the model moves to `device`
    latency = measure_latency(model, x, device, warmup=warmup, runs=runs, amp=amp, functionals=functionals)
    if not (latency > 0 and math.isfinite(latency)):
        raise RuntimeError(f"measured a latency of {latency} ms on {device}")
    return ModelCost(params=params, macs=macs, latency_ms=latency, device=str(device),
                     threads=torch.get_num_threads(), seconds=time.perf_counter() - t0)


def trial_shapes(cfg: TrainConfig, corpus: CorpusLike) -> tuple[int, int, int]:
    """(n_features, num_classes, n_frames) of the model a trial of `cfg` on `corpus` builds, as
    ser_core.train.prepare_trial derives them: the frontend at the corpus's sample rate unless the
    config sets one, every label of the corpus, the frames of one prepared segment."""
    frontend_cfg = cfg.frontend
    if "sample_rate" not in frontend_cfg.model_fields_set:
        frontend_cfg = type(frontend_cfg).model_validate(
            {**frontend_cfg.model_dump(), "sample_rate": corpus.sample_rate})
    return frontend_cfg.n_features, len(corpus.labels), num_frames(frontend_cfg, int(corpus.waveforms.shape[1]))


_MEASURED: dict[tuple[Any, ...], ModelCost] = {}  # this process's measurements (trial_cost)


def trial_cost(cfg: TrainConfig, corpus: CorpusLike, **kwargs: Any) -> ModelCost:
    """The cost of the model a trial of `cfg` trains on `corpus`, its latency on the trial's
    device (cfg.device; "auto" resolves as fit resolves it) with the trial's autocast.

    Measured once per process for each (model configuration, clip shape, device, torch threads,
    measuring options): the figures depend on nothing else (not on the seed or the loss), and a
    reused Ray actor's later trials of the same model then skip the 0.05-0.2 s of timing."""
    device = resolve_device(cfg.device)
    kwargs.setdefault("amp", cfg.amp and device.type == "cuda")
    shapes = trial_shapes(cfg, corpus)
    key = (cfg.model.model_dump_json(), shapes, cfg.frontend.layers, str(device), torch.get_num_threads(),
           tuple(sorted(kwargs.items())))
    if key not in _MEASURED:
        _MEASURED[key] = measure_cost(cfg.model, *shapes, device, layers=cfg.frontend.layers, **kwargs)
    return _MEASURED[key]
