"""The README's first command, `ser-search demo`, end to end (shortened to 1 epoch of 128 training clips per trial):
generate, prepare, sweep, confirm every claim arm with 2 seeds, then `ser-search claims` on the
demo's confirmed results; the demo's own log, and a demo stopped by SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from scipy import stats

from search.analysis.claims import CLAIMS, LOWER_IS_BETTER
from search.cli import main
from search.cli.demo import run_demo
from search.cli.demolog import FINISHED_PREFIX, LOG_NAME, RAY_LOGS, SESSION_PREFIX
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


def test_the_demo_shows_a_ranked_table_while_its_sweep_still_runs(demo_out):
    out, _ = demo_out
    log = (out / LOG_NAME).read_text()
    early = log.index("[demo] ranked so far (")
    assert early < log.index("4/5 leaderboard")  # before the sweep's end, not after it
    # the first table is a real ranking of finished trials (header and at least one ranked row)
    table = log[early:log.index("\n\n", log.index("\n", early) + 2)]
    assert "rank" in table and "loss_family" in table and "\n   1 " in table, table


def test_claims_command_on_the_demo_results(demo_out, capsys):
    out, _ = demo_out
    assert main(["claims", str(out / "results"), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {r["claim"] for r in table} == {c.claim for c in CLAIMS}
    assert {r["protocol"] for r in table} == {"within synthetic"}
    # Every number recomputed here from demo-confirm's trials.parquet with scipy, and the verdict
    # from the interval by the rule the README states, independently of search.analysis.claims.
    confirmed = read_trials(out / "results" / "demo-confirm")
    claims = {c.claim: c for c in CLAIMS}
    for row in table:
        claim, metric = claims[row["claim"]], row["metric"]
        assert row["sweep"] == "demo"  # the lineage: demo + demo-confirm

        def runs(arm, metric=metric):
            mine = confirmed[(confirmed["loss_family"] == arm.loss_family) & (confirmed["frontend"] == arm.frontend)]
            assert mine["config_key"].nunique() == 1  # one configuration per arm, run with 2 seeds
            return mine.set_index("seed")[metric]

        a, b = runs(claim.arm_a), runs(claim.arm_b)
        diffs = ((b - a) if metric in LOWER_IS_BETTER else (a - b)).dropna()
        assert row["n_pairs"] == len(diffs) == 2, row  # paired by seed
        assert row["mean_diff"] == pytest.approx(diffs.mean(), abs=1e-12)
        if diffs.std(ddof=1) <= 1e-12:  # 2 seeds on a tiny test set: equal differences, no interval
            assert row["ci_low"] is None and row["verdict"] == "inconclusive", row
            assert "differences are equal" in row["note"]
            continue
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["verdict"] == _verdict(low, high, claim.stated_effect), row


def _verdict(low: float, high: float, effect: float) -> str:
    """The README's verdict rule, written out again: the interval against 0 and the effect E."""
    if low > effect:
        return "exceeds E"
    if high < 0:
        return "opposite"
    if low > 0:
        return "consistent with E" if high >= effect else "real but smaller than E"
    return "not detected" if high < effect else "inconclusive"


def test_the_demo_keeps_its_own_log(demo_out):
    out, code = demo_out
    assert code == 0
    text = (out / LOG_NAME).read_text()
    assert text.startswith(f"[demo] log: {out / LOG_NAME} (this run started ")
    stages = [text.index(f"[demo] {i}/5 ") for i in range(1, 6)]
    assert stages == sorted(stages)
    session = next(line for line in text.splitlines() if line.startswith(SESSION_PREFIX))
    assert Path(session[len(SESSION_PREFIX):].split(" (driver pid ")[0]).is_dir()   # where Ray's own logs are
    after_confirm = text[stages[-1]:]
    for claim in CLAIMS:                                     # the claims table, after the 5/5 header
        assert claim.claim in after_confirm, claim.claim
    assert "  completed  " in text                           # the recorder's line per finished trial
    assert text.rstrip().endswith(f"{FINISHED_PREFIX}0") and "FAILED" not in text
    assert not (out / RAY_LOGS).exists()                     # nothing failed: no Ray logs copied


def test_sigterm_stops_the_demo_with_its_log_not_with_a_native_stack_trace(demo_out, tmp_path):
    """SIGTERM (a timeout, a scheduler) once the demo's Ray is up. Ray's driver installs a
    failure signal handler that turns SIGTERM into `logging.cc:474: *** SIGTERM received` and
    a native stack trace, and kills the process before anything says why; the demo takes
    SIGTERM back, shuts Ray down, says it was stopped from outside, exits 128 + 15, and copies
    the Ray logs."""
    src, _ = demo_out
    out = tmp_path / "demo-out"
    out.mkdir()
    for d in ("corpus", "prepared"):                         # reused as they are: the run reaches Ray fast
        (out / d).symlink_to(src / d)
    code = ("import sys; from pathlib import Path; from search.cli.demo import run_demo; "
            "sys.exit(run_demo(Path(sys.argv[1]), max_epochs=1, max_train_clips=128))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
                            start_new_session=True)
    log = out / LOG_NAME
    deadline = time.monotonic() + 300
    try:
        while not (log.exists() and "[demo] 3/5 " in log.read_text()):   # Ray is up, the sweep starts
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the demo did not reach its sweep"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=240)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "[demo] stopped by SIGTERM from outside (e.g. a timeout), not by a Ray failure" in text
    assert "*** SIGTERM received" not in text and "*** SIGTERM received" not in output
    assert f"{FINISHED_PREFIX}{128 + signal.SIGTERM}" in text
    assert f"FAILED: the whole output of this run is in {log}" in text and "FAILED" in output
    copies = list((out / RAY_LOGS).glob("session_*/raylet.out"))
    assert len(copies) == 1 and copies[0].stat().st_size > 0
