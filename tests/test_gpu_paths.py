"""What fit does only on CUDA, checked on a CPU where it can be: bf16 autocast through both models
and every loss family (fit enables it on CUDA with amp = true), the center loss's centers
staying the one Parameter its optimizer steps after the loss moves to the trial's device, and a
CUDA trial's checkpoint keeping its device's random generator for an exact resume."""
from __future__ import annotations

import pytest
import torch

from ser_core.config import ModelConfig
from ser_core.losses import build_loss, loss_names
from ser_core.train import build_model

MODELS = {
    "cnn_transformer": {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
                        "n_layers": 1, "ff_dim": 64},
    "cnn_birnn": {"name": "cnn_birnn", "channels": [8, 16, 16], "rnn_hidden": 16, "embed_dim": 32},
}


@pytest.mark.parametrize("family", loss_names())
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_bf16_autocast_runs_through_both_models_and_every_loss(model_name, family):
    """fit's step under autocast: the model in bf16, the loss on float32 logits/embeddings (fit
    upcasts them; the loss families disable autocast inside), finite loss and gradients."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(MODELS[model_name]), 40, 4).to(memory_format=torch.channels_last)
    loss_fn = build_loss(family, num_classes=4, embed_dim=model.embed_dim)
    x = torch.randn(6, 40, 120)
    lengths = torch.tensor([120, 90, 120, 60, 100, 120])
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, z = model(x, lengths)
        loss = loss_fn(logits.float(), z.float(), y)
    assert logits.dtype == torch.bfloat16  # autocast really ran the model in bf16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_centers_stay_the_parameter_their_optimizer_steps_on_the_trials_device():
    """fit builds the loss, then moves it to the trial's device; the centers' own SGD was built
    with the loss. However the move is done, the optimizer must step the loss's live centers —
    one Parameter, on the new device, not also in the model's optimizer. A move that replaces
    the Parameter (the meta device standing in for a GPU; torch's overwrite-on-conversion flag)
    failed this before CenterLoss._apply rebound the optimizer."""
    loss_fn = build_loss("center", num_classes=4, embed_dim=8).to("meta")
    (owned,) = [p for g in loss_fn.center_optimizer().param_groups for p in g["params"]]
    assert owned is loss_fn.centers and owned.device.type == "meta"
    assert isinstance(owned, torch.nn.Parameter)
    assert all(p is not owned for p in loss_fn.model_parameters())

    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        loss_fn = build_loss("center", num_classes=2, embed_dim=3, center_lr=0.5)
        stale = loss_fn.centers
        loss_fn = loss_fn.to(torch.float64)  # a new Parameter under this flag
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
    assert loss_fn.centers is not stale
    z = torch.ones(2, 3, dtype=torch.float64)
    loss = loss_fn(torch.zeros(2, 2, dtype=torch.float64), z, torch.tensor([0, 1]))
    loss.backward()
    loss_fn.before_center_step()
    loss_fn.center_optimizer().step()
    assert torch.all(loss_fn.centers != 0)  # the live centers moved towards the embeddings


def _tiny_cfg(prepared, device: str, epochs: int = 3):
    from ser_core.config import TrainConfig
    return TrainConfig.model_validate({
        "data": {"prepared": str(prepared)}, "model": MODELS["cnn_transformer"], "frontend": {"n_mels": 40},
        "optim": {"epochs": epochs, "batch_size": 32}, "seed": 3, "device": device})


def test_a_cuda_trials_checkpoint_carries_its_devices_generator(synthetic_prepared, monkeypatch):
    """On a GPU, dropout draws from the device's generator, which torch.get_rng_state does not
    hold: a resumed CUDA trial must get it back, or it continues on a different stream than an
    uninterrupted one. The CPU stands in for the device here; torch.cuda's two state functions
    are replaced by a recorder (the only CUDA calls on this path)."""
    from ser_core.corpus import PreparedCorpus
    from ser_core.train import FoldRun
    from ser_core.train.state import set_rng_state

    corpus = PreparedCorpus.load(synthetic_prepared)
    run = FoldRun(_tiny_cfg(synthetic_prepared, "cpu", epochs=1), corpus)
    run.train_epoch(1)
    assert run.checkpoint()["rng"]["cuda"] is None  # a CPU trial has no device generator to keep

    device_state = torch.arange(16, dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": device_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append((state, device)))
    run.data.device = torch.device("cuda", 0)  # what prepare_trial resolves on a GPU
    state = run.checkpoint()
    assert torch.equal(state["rng"]["cuda"], device_state)
    assert torch.equal(state["rng"]["torch"], state["torch_rng"])
    set_rng_state(state["rng"], torch.device("cuda", 0))
    assert len(restored) == 1 and torch.equal(restored[0][0], device_state) and restored[0][1] == torch.device("cuda", 0)
    set_rng_state(state["rng"], torch.device("cpu"))  # the same checkpoint resumed on a CPU
    assert len(restored) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_continues_exactly(synthetic_prepared):
    """The whole path on a real device: an uninterrupted CUDA trial and one resumed after epoch 1
    train to the same losses (dropout on, so the device's generator matters)."""
    from ser_core.corpus import PreparedCorpus
    from ser_core.train import fit

    corpus = PreparedCorpus.load(synthetic_prepared)
    cfg = _tiny_cfg(synthetic_prepared, "cuda")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    states = {}
    full = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    resumed = fit(cfg, corpus, resume=states[1])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history], rel=1e-5)
    assert resumed.test.ua == full.test.ua
