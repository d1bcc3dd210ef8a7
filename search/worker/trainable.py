"""The Ray trainable: a thin adapter from a Tune trial to `ser_core.train.fit`.

It rebuilds the trial's TrainConfig from the sampled parameters, resumes from the trial's
checkpoint when Ray restarts it (a retried failure or a restored sweep), and turns every
epoch into one `tune.report` carrying the metrics and a resumable checkpoint. The last
epoch's report also carries the best epoch's evaluation (validation and test metrics,
confusion matrices), each key prefixed with `FINAL_PREFIX`: the unprefixed val_ua/val_wa stay
the last epoch's own, as every epoch's are (epochs.parquet and the learning curves read them).
"""
from __future__ import annotations

import gc
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from ser_core.cost import trial_cost
from ser_core.train import EpochReport, fit

from ser_core.config import TrainConfig

from .overhead import TrialClock

STATE_FILE = "trial_state.pt"
BEST_FILE = "best.pt"
FINAL_PREFIX = "final_"  # the best epoch's evaluation in the last report: final_val_ua, final_test_ua, ...
FINAL_JSON = FINAL_PREFIX + "json"  # labels, classes and confusion matrices, as one JSON string


_PROCESS_OBJECTS_FROZEN = False


def freeze_process_objects() -> bool:
    """Once per process: move the objects the process keeps for its whole life (torch, Ray Tune,
    scikit-learn, ser_core; torch._dynamo, which a process's first optimizer step or MAC count
    imports anyway) out of the garbage collector's sight (gc.freeze). True the first time.

    Why: every trial starts by collecting an earlier trial's garbage in a reused actor
    (ser_core.train's prepare_trial), and a full collection walks every tracked object: ~440 k
    here, 0.25-0.3 s per trial on the 2-core machine, more than the rest of a reused trial's
    setup. Frozen objects are still freed by reference counting; only cycles among them are never
    collected, and they are module-level state that lives as long as the process. Later
    collections walk only what trials create (0.01 s)."""
    global _PROCESS_OBJECTS_FROZEN
    if _PROCESS_OBJECTS_FROZEN:
        return False
    import torch._dynamo  # noqa: F401  (before the freeze, so its ~115 k objects are frozen too)
    gc.collect()
    gc.freeze()
    _PROCESS_OBJECTS_FROZEN = True
    return True


def final_metrics(result: dict[str, Any]) -> dict[str, Any] | None:
    """The best epoch's evaluation carried by a trial's last report, under its plain names
    (val_ua, test_ua, best_epoch, ...), or None when the report has none (the trial stopped
    before its last epoch)."""
    if FINAL_JSON not in result:
        return None
    return {k[len(FINAL_PREFIX):]: v for k, v in result.items() if k.startswith(FINAL_PREFIX) and k != FINAL_JSON}


def make_trainable(to_config: Callable[[dict[str, Any]], TrainConfig]):
    """A function trainable; `to_config` turns a trial's parameters into its TrainConfig (a
    sweep's `trial_config`, or a fixed config for confirmation runs). The corpus arrives via
    tune.with_parameters."""

    def ser_trial(params: dict[str, Any], corpus: Any) -> None:
        clock = TrialClock()
        freeze_process_objects()
        clock.lap("process_objects")
        cfg = to_config(params)
        if cfg.device == "auto":
            # Ray hides GPUs a trial did not ask for, so "auto" means: what Ray gave us.
            cfg = cfg.model_copy(update={"device": "cuda" if ray.get_gpu_ids() else "cpu"})
        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        if resume is not None and resume["epoch"] >= cfg.optim.epochs:
            # Restarted from its final checkpoint (its process died after the last report): every
            # epoch is trained and the final result reported, and Tune holds it as the trial's
            # last result. Ending here completes the trial with that result.
            return
        node = ray.util.get_node_ip_address()

        def on_epoch(report: EpochReport, make_state) -> None:
            reporting = clock.epoch_reported(report.seconds, report.final is not None)
            metrics: dict[str, Any] = {
                "epoch": report.epoch, "train_loss": report.train_loss, "val_loss": report.val_loss,
                "val_ua": report.val_ua, "val_wa": report.val_wa, "best_val_ua": report.best_val_ua,
                "epoch_seconds": report.seconds, "node": node,
                **cost,  # params, macs, latency_ms in every report: a scheduler may compare them at any epoch
                # a cross-validated trial (data.folds): val_ua is the folds' mean; each fold's beside it
                **{f"val_ua_fold{f}": ua for f, ua in zip(cfg.data.folds or (), report.val_ua_folds)},
            }
            if report.final is not None:
                final = report.final
                metrics.update({FINAL_PREFIX + k: v for k, v in final.metrics().items()})
                # One JSON string, not lists: Tune's loggers only take scalars and strings.
                metrics[FINAL_JSON] = json.dumps({
                    "labels": list(final.labels),
                    "classes": list(final.classes),
                    "classes_dropped": final.classes_dropped,
                    "confusion_val": final.val.confusion.tolist(),
                    "confusion_test": final.test.confusion.tolist(),
                    **final.fold_metrics(),  # folds, val_ua_folds, test_ua_folds (cross-validated trials)
                })
            with tempfile.TemporaryDirectory() as d:
                torch.save(make_state(), os.path.join(d, STATE_FILE))
                if report.final is not None:  # the best epoch's weights, ready for `ser-search predict`
                    protocol = getattr(corpus, "protocol", {})
                    torch.save(report.final.checkpoint | {"preprocessing": protocol}, os.path.join(d, BEST_FILE))
                metrics.update(clock.metrics(since=reporting))  # the running overhead breakdown (search/worker/overhead.py)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            clock.report_done(reporting)

        clock.fit_started()
        cost = trial_cost(cfg, corpus).metrics()  # the model's cost on this trial's device (ser_core.cost)
        clock.lap("cost")
        fit(cfg, corpus, on_epoch=on_epoch, resume=resume, timings=clock.setup)

    return ser_trial
