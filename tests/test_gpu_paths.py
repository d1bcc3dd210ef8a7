"""What fit does only on CUDA, checked on a CPU where it can be: bf16 autocast through both models
and every loss family (fit enables it on CUDA with amp = true), and the center loss's centers
staying the one Parameter its optimizer steps after the loss moves to the trial's device."""
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
