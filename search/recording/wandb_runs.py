"""Ray's WandbLoggerCallback in a mode the sweep file names ("offline" / "online"). Ray checks
for an API key on the driver unless the WANDB_MODE environment variable says offline, while the
mode it hands wandb.init (in its logging actor) is the keyword argument; this sets both, also on
a resumed driver. Its own module because importing it imports wandb."""
from __future__ import annotations

import os
from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback


class ModeWandb(WandbLoggerCallback):
    def __init__(self, mode: str, **kwargs: Any):
        super().__init__(mode=mode, **kwargs)
        self.wandb_mode = mode

    def setup(self, *args: Any, **kwargs: Any) -> None:
        os.environ.setdefault("WANDB_MODE", self.wandb_mode)
        super().setup(*args, **kwargs)
