"""Ray Tune's actor reuse ([resources] reuse_actors, on by default): a later trial runs in a
finished trial's process (no process start, imports or first-optimizer cost), and must give
exactly what it gives in a fresh process — nothing of an earlier trial leaks into it (seeds,
the shared feature cache, ser_core.fastpath's process-wide settings)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from search.definition import parse_sweep
from search.worker.overhead import OVERHEAD_JSON
from search.results import read_epochs, read_trials
from search.driver import run_sweep


def _sweep_text(name: str, prepared: Path, reuse: bool) -> str:
    return f"""
[sweep]
name = "{name}"
num_samples = 3
max_concurrent_trials = 1
seed = 0

[data]
prepared = "{prepared}"

[scheduler]
max_epochs = 2
grace_period = 2

[resources]
cpus_per_trial = 1
reuse_actors = {str(reuse).lower()}

[space]
loss_family = {{ choices = ["cross_entropy", "center"] }}
lr = {{ low = 1e-3, high = 3e-3, log = true }}
batch_size = 32
seed = {{ choices = [0, 1, 2] }}
frontend = "mel"

[base]
device = "cpu"
model = {{ name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, n_layers = 1, ff_dim = 64 }}
frontend = {{ n_mels = 40 }}
"""


def _processes(sweep_dir: Path) -> dict[str, tuple[int, int]]:
    """trial_id -> (pid, how many trials that process had run, this one included)."""
    out = {}
    for path in (sweep_dir / "tune").glob("*/result.json"):
        last = json.loads(path.read_text().splitlines()[-1])
        info = json.loads(last[OVERHEAD_JSON])
        out[last["trial_id"]] = (info["pid"], info["trial_in_process"])
    return out


def _runs(results: Path, name: str):
    trials = read_trials(str(results / name)).set_index("trial_id")
    epochs = read_epochs(str(results / name))
    by_config = {}
    for tid, row in trials.iterrows():
        mine = epochs[epochs["trial_id"] == tid].sort_values("epoch")
        by_config[row["config_json"]] = (list(mine["train_loss"]), list(mine["val_ua"]), row["test_ua"], tid)
    return by_config, _processes(results / name)


@pytest.mark.slow
def test_reused_actors_give_exactly_the_results_of_fresh_ones(synthetic_prepared, tmp_path):
    results = tmp_path / "results"
    try:
        for name, reuse in (("reused", True), ("fresh", False)):
            sweep = parse_sweep(_sweep_text(name, synthetic_prepared, reuse), source=f"{name}.toml")
            run_sweep(sweep, str(results), num_cpus=1, echo=False)
    finally:
        ray.shutdown()
    reused, reused_procs = _runs(results, "reused")
    fresh, fresh_procs = _runs(results, "fresh")
    # the reused sweep really ran later trials in one earlier trial's process; the fresh one did not
    assert len({pid for pid, _ in reused_procs.values()}) < len(reused_procs)
    assert max(n for _, n in reused_procs.values()) >= 2
    assert all(n == 1 for _, n in fresh_procs.values())
    # the same seeded TPE proposed the same configurations, and each trained to the same numbers
    assert set(reused) == set(fresh) and len(reused) == 3
    for config, (losses, uas, test_ua, _) in reused.items():
        f_losses, f_uas, f_test, _ = fresh[config]
        assert losses == f_losses and uas == f_uas and test_ua == f_test, config
