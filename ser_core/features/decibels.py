"""Power to decibels, per example: the last step every log-spectrogram frontend shares.

A module of its own because it is the one place the dB floor (AMIN) and the per-example top_db
clipping are defined; a change here changes every frontend's output (bump FEATURES_VERSION in
ser_core/features/__init__.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

AMIN = 1e-10  # librosa.power_to_db's floor on power before the log


def power_to_db(power: Tensor, top_db: float | None = 80.0, amin: float = AMIN,
                out: Tensor | None = None) -> Tensor:
    """librosa.power_to_db(S, ref=1.0) for a batch, clipping each example at its own max.

    librosa clips one spectrogram at max - top_db; clipping at the batch max instead would
    make an example's features depend on which other clips share its batch. `out` (no
    autograd) receives the result, e.g. a slice of a split's feature cache.
    """
    if top_db is None:
        clipped = torch.clamp(power, min=amin)
    else:
        if top_db <= 0:
            raise ValueError(f"power_to_db: top_db must be > 0 or None, got {top_db}")
        # max(dB, peak dB - top_db) = dB of max(power, peak power * 10^(-top_db/10)): the floor
        # is applied to the power (the log is monotone), which saves a pass over the batch
        floor = (power.amax(dim=(-2, -1), keepdim=True) * 10.0 ** (-top_db / 10.0)).clamp_min(amin)
        clipped = torch.maximum(power, floor)
    if clipped.requires_grad:
        return torch.mul(torch.log10(clipped), 10.0, out=out)
    logs = clipped.log10_()  # no autograd: in place, no fresh buffers (page faults)
    return logs.mul_(10.0) if out is None else torch.mul(logs, 10.0, out=out)
