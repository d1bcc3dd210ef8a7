"""The Ray trainable: a thin adapter from a Tune trial to `ser_core.train.fit`.

It rebuilds the trial's TrainConfig from the sampled parameters, resumes from the trial's
checkpoint when Ray restarts it (a retried failure or a restored sweep), and turns every
epoch into one `tune.report` carrying the metrics and a resumable checkpoint. The last
epoch's report also carries the test metrics and confusion matrices of the best epoch.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from ser_core.train import EpochReport, fit

from ser_core.config import TrainConfig

STATE_FILE = "trial_state.pt"
BEST_FILE = "best.pt"


def make_trainable(to_config: Callable[[dict[str, Any]], TrainConfig]):
    """A function trainable; `to_config` turns a trial's parameters into its TrainConfig (a
    sweep's `trial_config`, or a fixed config for confirmation runs). The corpus arrives via
    tune.with_parameters."""

    def ser_trial(params: dict[str, Any], corpus: Any) -> None:
        cfg = to_config(params)
        if cfg.device == "auto":
            # Ray hides GPUs a trial did not ask for, so "auto" means: what Ray gave us.
            cfg = cfg.model_copy(update={"device": "cuda" if ray.get_gpu_ids() else "cpu"})
        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        node = ray.util.get_node_ip_address()

        def on_epoch(report: EpochReport, make_state) -> None:
            metrics: dict[str, Any] = {
                "epoch": report.epoch, "train_loss": report.train_loss, "val_loss": report.val_loss,
                "val_ua": report.val_ua, "val_wa": report.val_wa, "best_val_ua": report.best_val_ua,
                "epoch_seconds": report.seconds, "node": node,
            }
            if report.final is not None:
                final = report.final
                metrics.update(final.metrics())
                # One JSON string, not lists: Tune's loggers only take scalars and strings.
                metrics["final_json"] = json.dumps({
                    "labels": list(final.labels),
                    "classes": list(final.classes),
                    "classes_dropped": final.classes_dropped,
                    "confusion_val": final.val.confusion.tolist(),
                    "confusion_test": final.test.confusion.tolist(),
                })
            with tempfile.TemporaryDirectory() as d:
                torch.save(make_state(), os.path.join(d, STATE_FILE))
                if report.final is not None:  # the best epoch's weights, ready for `ser-search predict`
                    protocol = getattr(corpus, "protocol", {})
                    torch.save(report.final.checkpoint | {"preprocessing": protocol}, os.path.join(d, BEST_FILE))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

        fit(cfg, corpus, on_epoch=on_epoch, resume=resume)

    return ser_trial
