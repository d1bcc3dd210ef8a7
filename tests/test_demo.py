"""The README's first command, `ser-search demo`, end to end (shortened to 1 epoch of 128 training clips per trial):
generate, prepare, sweep, confirm every claim arm with 2 seeds, then `ser-search claims` on the
demo's confirmed results."""
from __future__ import annotations

import json

import pytest
import ray

from search.claims import CLAIMS
from search.cli import main
from search.demo import run_demo
from search.results import read_trials


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    try:
        code = run_demo(out, max_epochs=1, max_train_clips=128, confirm_seeds=2)
    finally:
        ray.shutdown()
    return out, code


def test_demo_sweeps_every_family_on_both_frontends_and_confirms_the_claim_arms(demo_out, capsys):
    out, code = demo_out
    assert code == 0
    search = read_trials(out / "results" / "demo")
    assert len(search) == 16 and set(search["status"]) == {"completed"}  # 1 epoch: nothing to stop early
    # cover_choices with 16 samples = every loss family on both frontends
    assert len(set(zip(search["loss_family"], search["frontend"]))) == 16
    confirmed = read_trials(out / "results" / "demo-confirm")
    arms = {(a.loss_family, a.frontend) for c in CLAIMS for a in (c.arm_a, c.arm_b)}
    assert set(zip(confirmed["loss_family"], confirmed["frontend"])) == arms
    assert len(confirmed) == 2 * len(arms) and set(confirmed["status"]) == {"completed"}
    assert set(confirmed["stage"]) == {"confirm"} and confirmed["epochs_run"].eq(1).all()


def test_claims_command_on_the_demo_results(demo_out, capsys):
    out, _ = demo_out
    assert main(["claims", str(out / "results"), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {r["claim"] for r in table} == {c.claim for c in CLAIMS}
    assert {r["protocol"] for r in table} == {"within synthetic"}
    for row in table:
        assert row["n_pairs"] == 2, row                      # both arms confirmed with 2 seeds
        assert row["verdict"] in {"supported", "contradicted", "inconclusive"}
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
