"""Model cost per trial (ser_core.cost): parameters, MACs against hand counts, latency on the
requested device, and a real sweep recording all three in trials.parquet and every Tune result."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from torch import nn

from ser_core.config import ModelConfig, TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.cost import (COST_METRICS, count_macs, measure_cost, measure_latency, trial_cost,
                           trial_shapes)
from ser_core.features import num_frames
from ser_core.train import build_model
from search.results import TRIALS_SCHEMA, ResultsStore, read_trials

DEMO = ModelConfig(name="cnn_transformer", channels=[8, 16, 16, 16], d_model=32, n_heads=2, n_layers=1, ff_dim=64)
F, C, T = 40, 7, 151  # 40 Mel bins, 7 classes, 1.5 s at a 10 ms hop


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def cnn_transformer_macs(cfg: ModelConfig, f: int, c: int, t: int) -> int:
    """The CNN-Transformer's multiply-accumulates for one (f x t) clip, by hand (models.py)."""
    macs, c_in, h, w = 0, 1, f, t
    for c_out, pool in zip(cfg.channels or (16, 32, 64, 64), (2, 2, 2, 4)):
        macs += c_in * c_out * 9 * h * w          # 3x3 conv, padding 1, stride 1, no bias
        h, w, c_in = _ceil(h, pool), _ceil(w, pool), c_out
    d, tokens = cfg.d_model, _ceil(t, 4)            # [2, 4] pre-pool: tokens x ceil(f/2)
    macs += tokens * _ceil(f, 2) * d                # projection to d_model
    per_layer = (tokens * d * 3 * d                 # Q, K, V projections
                 + 2 * tokens * tokens * d          # Q·Kᵀ and A·V over all heads
                 + tokens * d * d                   # output projection
                 + 2 * tokens * d * cfg.ff_dim)     # feed-forward
    macs += cfg.n_layers * per_layer
    return macs + (c_in + d) * c                    # classifier on z = [cnn, transformer]


def cnn_birnn_macs(cfg: ModelConfig, f: int, c: int, t: int) -> int:
    """The CNN-BiLSTM's multiply-accumulates for one (f x t) clip, by hand (models.py)."""
    macs, c_in, h, w = 0, 1, f, t
    for c_out in cfg.channels or (16, 32, 64):
        macs += c_in * c_out * 9 * h * w
        h, w, c_in = (_ceil(h, 4) if h >= 4 else h), _ceil(w, 2), c_out
    hidden, gates = cfg.rnn_hidden, {"lstm": 4, "gru": 3}[cfg.rnn]
    macs += 2 * w * gates * hidden * (c_in * h + hidden)   # two directions, input + recurrent products
    return macs + 2 * hidden * cfg.embed_dim + cfg.embed_dim * c


def test_params_are_the_built_models_trainable_parameters():
    for cfg, f in ((DEMO, F), (ModelConfig(), 321), (ModelConfig(name="cnn_birnn", rnn="gru"), 64)):
        model = build_model(cfg, f, C)
        cost = measure_cost(cfg, f, C, T, "cpu", warmup=0, runs=1)
        assert cost.params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert measure_cost(DEMO, F, C, T, warmup=0, runs=1).params < measure_cost(ModelConfig(), F, C, T, warmup=0,
                                                                                runs=1).params


def test_macs_of_single_layers_equal_their_arithmetic():
    assert count_macs(nn.Linear(40, 7), torch.randn(1, 40)) == 40 * 7  # FLOPs halved, bias adds not counted
    assert count_macs(nn.Linear(40, 7), torch.randn(3, 40)) == 3 * 40 * 7
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_macs(conv, torch.randn(1, 3, 10, 12)) == 8 * 3 * 9 * 10 * 12


@pytest.mark.parametrize("cfg, f", [(DEMO, F), (ModelConfig(), 64), (ModelConfig(), 321)],
                         ids=["demo-mel", "paper-mel", "paper-stft"])
def test_cnn_transformer_macs_are_one_clip_of_its_arithmetic(cfg, f):
    # attention's products included: the CPU's fused attention kernel would hide them from the counter
    assert measure_cost(cfg, f, C, T, warmup=0, runs=1).macs == cnn_transformer_macs(cfg, f, C, T)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_cnn_birnn_macs_count_the_recurrent_layer(rnn):
    # oneDNN's LSTM kernel would hide the recurrent layer's products from the counter
    cfg = ModelConfig(name="cnn_birnn", rnn=rnn)
    assert measure_cost(cfg, 64, C, T, warmup=0, runs=1).macs == cnn_birnn_macs(cfg, 64, C, T)


class _Probe(nn.Module):
    """Records where and how it is run."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[str, bool, bool, int]] = []

    def forward(self, x):
        self.seen.append((x.device.type, self.training, torch.is_inference_mode_enabled(), x.shape[0]))
        return x * self.w


def test_latency_is_a_median_of_timed_single_clip_passes_on_the_device():
    probe = _Probe()
    ms = measure_latency(probe, torch.randn(1, F, T), "cpu", warmup=2, runs=5)
    assert ms > 0 and math.isfinite(ms)
    assert probe.seen == [("cpu", False, True, 1)] * 7  # 2 warm-up + 5 timed, eval, inference mode, batch 1
    cost = measure_cost(DEMO, F, C, T, "cpu")
    assert cost.latency_ms > 0 and math.isfinite(cost.latency_ms) and cost.device == "cpu"
    assert cost.threads == torch.get_num_threads() and set(cost.metrics()) == set(COST_METRICS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_on_cuda_runs_there():
    probe = _Probe()
    measure_latency(probe, torch.randn(1, F, T), "cuda", warmup=1, runs=3)
    assert {s[0] for s in probe.seen} == {"cuda"}
    cost = measure_cost(DEMO, F, C, T, "cuda", amp=True)
    assert cost.device.startswith("cuda") and 0 < cost.latency_ms < 1000
    assert cost.macs == cnn_transformer_macs(DEMO, F, C, T)  # counted on the CPU whatever the device


def test_cost_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    measure_cost(DEMO, F, C, T, warmup=0, runs=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_trial_cost_uses_the_corpus_shapes_and_the_trial_device(synthetic_prepared):
    corpus = PreparedCorpus.load(synthetic_prepared)
    cfg = TrainConfig.model_validate({"data": {"prepared": str(synthetic_prepared)}, "model": DEMO.model_dump(),
                                      "frontend": {"kind": "stft"}, "device": "cpu"})
    n_features, num_classes, n_frames = trial_shapes(cfg, corpus)
    fe = cfg.frontend.model_copy(update={"sample_rate": corpus.sample_rate})
    assert (n_features, num_classes) == (fe.n_fft_resolved // 2 + 1, len(corpus.labels))
    assert n_frames == num_frames(fe, corpus.waveforms.shape[1])
    cost = trial_cost(cfg, corpus, warmup=0, runs=1)
    assert cost.device == "cpu"
    assert cost.macs == cnn_transformer_macs(DEMO, n_features, num_classes, n_frames)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            trial_cost(cfg.model_copy(update={"device": "cuda"}), corpus)


def test_trial_cost_is_measured_once_per_model_and_shape_in_a_process(synthetic_prepared, monkeypatch):
    """A reused actor's later trials of the same model reuse the measurement; a different model
    or clip shape is measured anew."""
    import ser_core.cost as cost_module

    calls = []
    real = cost_module.measure_cost
    monkeypatch.setattr(cost_module, "measure_cost", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(cost_module, "_MEASURED", {})
    corpus = PreparedCorpus.load(synthetic_prepared)
    base = {"data": {"prepared": str(synthetic_prepared)}, "model": DEMO.model_dump(), "device": "cpu"}
    mel = TrainConfig.model_validate({**base, "frontend": {"n_mels": 40}})
    first = trial_cost(mel, corpus, warmup=0, runs=1)
    # another seed and loss family: the same model on the same clips
    again = trial_cost(mel.model_copy(update={"seed": 9, "loss": mel.loss.model_copy(update={"family": "focal"})}),
                       corpus, warmup=0, runs=1)
    assert again is first and len(calls) == 1
    stft = trial_cost(TrainConfig.model_validate({**base, "frontend": {"kind": "stft"}}), corpus, warmup=0, runs=1)
    wider = trial_cost(mel.model_copy(update={"model": DEMO.model_copy(update={"d_model": 48})}), corpus,
                       warmup=0, runs=1)
    assert len(calls) == 3 and stft.macs != first.macs and wider.params != first.params


def test_trials_written_before_the_cost_columns_read_them_as_null(tmp_path):
    old_schema = pa.schema([f for f in TRIALS_SCHEMA if f.name not in COST_METRICS],
                           metadata=TRIALS_SCHEMA.metadata)
    (tmp_path / "old").mkdir()
    pq.write_table(pa.Table.from_pylist([{"sweep": "old", "trial_id": "a", "status": "completed"}],
                                        schema=old_schema), tmp_path / "old" / "trials.parquet")
    store = ResultsStore(tmp_path, "new")
    store.upsert_trial({"trial_id": "b", "status": "completed", "params": 15503, "macs": 8873488,
                        "latency_ms": 4.5})
    trials = read_trials(tmp_path).set_index("trial_id")
    assert trials.loc["a", list(COST_METRICS)].isna().all()
    assert (trials.loc["b", "params"], trials.loc["b", "macs"], trials.loc["b", "latency_ms"]) == (15503, 8873488, 4.5)
    assert str(trials["params"].dtype) == "Int64" and str(trials["macs"].dtype) == "Int64"


def test_a_sweep_records_each_trials_cost(synthetic_prepared, tmp_path):
    from search.definition import load_sweep
    from search.driver import run_sweep
    from sweep_helpers import write_sweep

    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="cost", num_samples=4, max_epochs=2,
                       families=("cross_entropy",), max_train_clips=48)
    text = path.read_text()
    text = text.replace("seed = 0\n", 'seed = 0\n"model.d_model" = { choices = [16, 32] }\n', 1)
    path.write_text(text.replace("d_model = 32, ", ""))  # searched, so not in [base]
    try:
        outcome = run_sweep(load_sweep(path), str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    trials = read_trials(outcome.sweep_dir)
    assert len(trials) == 4 and trials[list(COST_METRICS)].notna().all().all()
    assert (trials["latency_ms"] > 0).all() and (trials["macs"] > 0).all()
    d_model = trials["config_json"].map(lambda s: json.loads(s)["model"]["d_model"])
    assert set(d_model) == {16, 32}  # cover_choices: both sizes on both frontends
    for _, same_frontend in trials.groupby("frontend"):
        by_size = same_frontend.set_index(d_model[same_frontend.index])
        assert by_size.loc[32, "params"] > by_size.loc[16, "params"]
        assert by_size.loc[32, "macs"] > by_size.loc[16, "macs"]
    for _, row in trials.iterrows():  # the recorded count is the trial's model's
        cfg = TrainConfig.model_validate_json(row["config_json"])
        model = build_model(cfg.model, *trial_shapes(cfg, PreparedCorpus.load(synthetic_prepared))[:2])
        assert row["params"] == sum(p.numel() for p in model.parameters())
    # every epoch's Tune result carries the three metrics (a scheduler may read them at any rung),
    # and the overhead breakdown has the measurement as its own phase
    results = [json.loads(line) for f in Path(outcome.sweep_dir, "tune").glob("*/result.json")
               for line in f.read_text().splitlines() if line.strip()]
    assert len(results) >= 4
    for r in results:
        assert all(isinstance(r[k], (int, float)) and r[k] > 0 for k in COST_METRICS)
        assert json.loads(r["overhead_json"])["phases"]["cost"] > 0
