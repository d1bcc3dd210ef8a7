"""A real multi-node Ray cluster on this machine: a head on 127.0.0.2 and worker nodes on
127.0.0.3/.4, started with `ray start --block` in their own process groups, token auth on.

Sweeps go in through the Jobs API (`search.cli.jobs`) exactly as a user's would, and the faults are
real: a worker node's processes are SIGKILLed mid-sweep, the job's driver is SIGKILLed mid-sweep.
Every node is started and stopped here, by its own process ids; `ray stop` is never used (it
would kill other people's Ray processes on a shared machine).

Run alone:  python -m pytest -m cluster tests/test_cluster_multinode.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

from search.cli.jobs import add_job_commands, job_client, submit_sweep, wait_for_job
from search.recording.recorder import LOST_PREFIX
from search.results import read_confusion, read_epochs, read_trials
from sweep_helpers import failed_trials_by_tune_id

pytestmark = [
    pytest.mark.fault_tolerance,
    pytest.mark.cluster,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="needs several loopback addresses (127.0.0.2, .3, .4): Linux only"),
]

HEAD_IP, WORKER_IP, SPARE_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
# The head marks a silent node dead after ~3 missed 1 s checks instead of ~30 s.
HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000",
                # SIGTERM stops a node at once instead of draining it for 30 s
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
OBJECT_STORE_BYTES = 150 * 1024 * 1024  # a shared 2-core machine: stay small


# --------------------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, names one process even if the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `root`, including those Ray moved into their
    own session (worker processes), which a process-group kill would miss."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            start = _start_time(child)
            if start is not None:
                found.append((child, start))
                todo.append(child)
    return found


def _signal_if_same(pid: int, start: str, sig: int) -> None:
    if _start_time(pid) == start:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Node:
    ip: str
    proc: subprocess.Popen
    log: Path

    def _own_processes(self) -> list[tuple[int, str]]:
        return [(self.proc.pid, _start_time(self.proc.pid) or "")] + _descendants(self.proc.pid)

    def kill(self) -> None:
        """A machine loss: SIGKILL the node's process group and every process it started."""
        procs = self._own_processes()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid, start in procs:
            _signal_if_same(pid, start, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Clean stop (SIGTERM to the group), then SIGKILL whatever of ours is left."""
        procs = self._own_processes() if self.proc.poll() is None else []
        if procs:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # the group outlives its leader: stragglers of a node that died by itself
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid, start in procs:
            _signal_if_same(pid, start, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HEAD_IP, 0))
        return s.getsockname()[1]


@dataclass
class LocalRayCluster:
    """Head + workers on loopback addresses, with a token of their own in a private HOME."""

    base: Path
    env: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    port: int = 0
    dashboard_port: int = 0

    def __post_init__(self) -> None:
        self.home = self.base / "home"
        self.home.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS")}
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        env.update(HOME=str(self.home), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0", **HEALTH_CHECK)
        # Ray's own generator writes $HOME/.ray/auth_token; every node and client then names it.
        subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True, timeout=120)
        env["RAY_AUTH_TOKEN_PATH"] = str(self.home / ".ray" / "auth_token")
        self.env = env
        # Ray's socket paths must stay short, so its temp dirs live directly under /tmp; one per
        # node, as on separate machines: nodes sharing one would share runtime_resources/, and a
        # worker unpacking the job's working_dir would delete it under the running driver.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="ser-ray-"))
        self.port, self.dashboard_port = _free_port(), _free_port()

    @property
    def token(self) -> str:
        return (self.home / ".ray" / "auth_token").read_text().strip()

    @property
    def gcs_address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def _start(self, ip: str, args: list[str]) -> Node:
        log = self.base / f"node-{ip}.log"
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
                 "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port"]
        cmd = ["ray", "start", "--block", f"--node-ip-address={ip}", "--num-cpus=1",
               f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={self.ray_tmp / ip.rsplit('.', 1)[1]}",
               "--disable-usage-stats", *[f"{p}={_free_port()}" for p in ports], *args]
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = Node(ip, proc, log)
        self.nodes[ip] = node
        return node

    def start_head(self) -> None:
        self._start(HEAD_IP, ["--head", f"--port={self.port}", f"--dashboard-host={HEAD_IP}",
                              f"--dashboard-port={self.dashboard_port}", "--include-dashboard=true",
                              f"--ray-client-server-port={_free_port()}"])
        self._wait(lambda: self._api_up(), "the head's job server", self.nodes[HEAD_IP])
        self._wait(lambda: HEAD_IP in self.alive_ips(), "the head node", self.nodes[HEAD_IP])

    def start_worker(self, ip: str) -> Node:
        node = self._start(ip, [f"--address={self.gcs_address}"])
        self._wait(lambda: ip in self.alive_ips(), f"worker node {ip}", node)
        return node

    def live_worker(self) -> Node:
        """The worker node, or a fresh one on a fresh address if a fault test killed it (Ray
        tells nodes apart by address)."""
        alive = self.alive_ips()
        for ip in (WORKER_IP, SPARE_IP):
            if ip in alive:
                return self.nodes[ip]
        ip = next(ip for ip in (WORKER_IP, SPARE_IP) if ip not in self.nodes)
        return self.start_worker(ip)

    def _wait(self, ready, what: str, node: Node, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if node.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {node.proc.returncode}:\n{node.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not up after {timeout:.0f} s:\n{node.log.read_text()[-3000:]}")
            time.sleep(1.0)

    def _get(self, path: str) -> dict:
        req = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def _api_up(self) -> bool:
        try:
            self._get("/api/version")
            return True
        except OSError:
            return False

    def alive_ips(self) -> set[str]:
        """Node addresses the head currently counts as alive (the state API, token-checked)."""
        try:
            nodes = self._get("/api/v0/nodes?limit=100")["data"]["result"]["result"]
        except (OSError, KeyError):
            return set()
        return {n["node_ip"] for n in nodes if n["state"] == "ALIVE"}

    def stop(self) -> None:
        for ip in sorted(self.nodes, reverse=True):  # workers first, head last
            self.nodes[ip].stop()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> LocalRayCluster:
    if shutil.which("ser-search") is None:  # what every job's entrypoint runs
        pytest.fail("the ser-search command is not installed: run `pip install -e .` first")
    c = LocalRayCluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        c.start_head()
        c.start_worker(WORKER_IP)
        yield c
    finally:
        c.stop()


@pytest.fixture
def client_env(cluster, monkeypatch, tmp_path) -> Iterator[None]:
    """This process talks to the cluster like a user's laptop: the cluster's token via
    RAY_AUTH_TOKEN_PATH, an empty HOME (never the real ~/.ray/auth_token)."""
    # RAY_AUTH_MODE: ray.init of an earlier in-process local cluster sets it in os.environ
    mode = os.environ.get("RAY_AUTH_MODE")
    for k in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", cluster.env["RAY_AUTH_TOKEN_PATH"])
    _forget_cached_token()
    yield
    # before monkeypatch's own undo: a later test's in-process cluster needs Ray's config to read
    # the auth mode this process had, or its driver cannot reach its own GCS
    if mode is not None:
        os.environ["RAY_AUTH_MODE"] = mode
    _forget_cached_token()


def _forget_cached_token() -> None:
    """Ray caches the auth mode and the first token this process read (an in-process local
    cluster of an earlier test reads ~/.ray/auth_token): forget both, as Ray's own tests do
    (ray._private.authentication_test_utils), so this process is the user's laptop the test
    means, whatever ran in it before."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    reset_auth_token_state()


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from ser_core.prepare import PrepareOptions, prepare_corpora
    from ser_core.synthetic import generate_corpus

    base = tmp_path_factory.mktemp("cluster-corpus")
    root = generate_corpus(base / "wav", n_speakers=6, clips_per_emotion=4, seed=0)
    out = base / "prepared"
    prepare_corpora({"synthetic": root}, out, PrepareOptions(segment_seconds=2.0, n_folds=3, augment_copies=0),
                    progress=False)
    return out


def write_sweep(path: Path, name: str, prepared: Path, *, num_samples: int, max_epochs: int,
                grace_period: int) -> Path:
    """The demo sweep's shape (loss families x frontends, tiny CNN-Transformer), cut to seconds.
    grace_period == max_epochs turns ASHA's early stopping off, so every trial runs to the end."""
    path.write_text(f"""
[sweep]
name = "{name}"
num_samples = {num_samples}
max_concurrent_trials = 2
seed = 0

[data]
prepared = "{prepared}"
fold = 0

[scheduler]
max_epochs = {max_epochs}
grace_period = {grace_period}
reduction_factor = 2

[resources]
cpus_per_trial = 1
gpus_per_trial = 0

[space]
loss_family = {{ choices = ["cross_entropy", "focal", "center"] }}
frontend = {{ choices = ["mel", "stft"] }}
lr = {{ low = 3e-4, high = 3e-3, log = true }}
batch_size = 16
seed = 0
gamma = {{ low = 0.5, high = 4.0 }}
center_lambda = {{ low = 1e-3, high = 0.5, log = true }}
center_lr = {{ low = 0.05, high = 1.0, log = true }}

[base]
device = "cpu"
model = {{ name = "cnn_transformer", channels = [4, 8, 8, 8], d_model = 16, n_heads = 2, n_layers = 1, ff_dim = 32 }}
frontend = {{ n_mels = 32 }}
optim = {{ name = "adamw", weight_decay = 1e-4 }}
""")
    return path


def tune_results(sweep_dir: Path) -> dict[str, list[dict]]:
    """Every report Ray Tune logged per trial (result.json of each trial directory), keyed by
    trial id: the per-epoch `node` shows where each epoch of a trial ran. Safe to call while
    the sweep runs (a line being written is skipped)."""
    out: dict[str, list[dict]] = {}
    for f in (sweep_dir / "tune").glob("*/result.json"):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        if rows:
            out.setdefault(rows[0]["trial_id"], []).extend(rows)
    return out


def trial_dir(sweep_dir: Path, trial_id: str) -> Path:
    (found,) = (sweep_dir / "tune").glob(f"*_{trial_id}_*")
    return found




def assert_complete(sweep_dir: Path, num_samples: int, max_epochs: int | None = None,
                    lost_allowed: bool = False) -> set[str]:
    """trials.parquet holds each trial exactly once, finished, with its epochs and confusions.
    With lost_allowed (a driver was killed), trials lost with it may have an error row besides;
    returns their ids."""
    trials = read_trials(sweep_dir)
    assert trials["trial_id"].is_unique
    is_lost = trials["error"].fillna("").str.startswith(LOST_PREFIX)
    lost = set(trials.loc[is_lost, "trial_id"])
    assert not lost or lost_allowed, trials.loc[is_lost, ["trial_id", "error"]]
    assert set(trials.loc[is_lost, "status"]) <= {"error"}
    assert set(read_epochs(sweep_dir)["trial_id"]) <= set(trials["trial_id"])  # every epoch has its trial's row
    trials = trials[~is_lost]
    assert len(trials) == num_samples, trials[["trial_id", "status"]]
    assert set(trials["status"]) <= {"completed", "pruned"}, trials[["trial_id", "status", "error"]]
    epochs = read_epochs(sweep_dir)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = epochs.groupby("trial_id")["epoch"].agg(["max", "count"])
    for row in trials.itertuples():
        assert per_trial.loc[row.trial_id, "max"] == per_trial.loc[row.trial_id, "count"] == row.epochs_run
        if max_epochs is not None:
            assert row.epochs_run == max_epochs and row.status == "completed"
    completed = trials[trials["status"] == "completed"]
    assert completed["test_ua"].notna().all()
    confusion = read_confusion(sweep_dir)
    assert set(confusion["trial_id"]) == set(completed["trial_id"])
    return lost


# --------------------------------------------------------------------------- tests


def test_sweep_submitted_as_a_job_runs_on_both_nodes(cluster, client_env, prepared, tmp_path):
    worker = cluster.live_worker()
    sweep = write_sweep(tmp_path / "submit.toml", "cluster-submit", prepared, num_samples=4, max_epochs=2,
                        grace_period=1)
    results = tmp_path / "results"
    job_id = submit_sweep(sweep, cluster.dashboard, str(results))  # data.prepared from the file
    client = job_client(cluster.dashboard)
    status = wait_for_job(client, job_id, follow=False, timeout_s=420)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-4000:]

    sweep_dir = results / "cluster-submit"
    assert_complete(sweep_dir, 4)
    assert set(read_trials(sweep_dir)["node"]) == {HEAD_IP, worker.ip}
    # the checkout's two packages went up with the job (uploaded to the cluster's package store)
    info = client.get_job_info(job_id)
    assert len(info.runtime_env["py_modules"]) == 2
    assert all(uri.startswith("gcs://") for uri in info.runtime_env["py_modules"])
    assert info.entrypoint.startswith("ser-search sweep")
    # the token is nowhere: not in the job's description, its logs, or any result file
    token = cluster.token
    assert token not in json.dumps(info.model_dump(mode="json"))
    assert token not in logs
    for f in sweep_dir.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f


def test_submission_without_the_cluster_token_is_refused(cluster, client_env, prepared, tmp_path,
                                                         monkeypatch, capsys):
    from ray.exceptions import AuthenticationError

    sweep = write_sweep(tmp_path / "refused.toml", "cluster-refused", prepared, num_samples=1, max_epochs=1,
                        grace_period=1)
    results = str(tmp_path / "results")
    # no token anywhere: no RAY_AUTH_TOKEN, no RAY_AUTH_TOKEN_PATH, an empty HOME
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    _forget_cached_token()
    with pytest.raises(AuthenticationError, match="Missing authentication token"):
        submit_sweep(sweep, cluster.dashboard, results)
    # a token, but not this cluster's
    wrong = "0" * 64
    monkeypatch.setenv("RAY_AUTH_TOKEN", wrong)
    _forget_cached_token()
    with pytest.raises(AuthenticationError, match="Invalid authentication token"):
        submit_sweep(sweep, cluster.dashboard, results)
    # the command line says so in one line, exit status 2, and never echoes the token
    parser = argparse.ArgumentParser(prog="ser-search")
    add_job_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["submit", str(sweep), "--address", cluster.dashboard, "--results", results])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "RAY_AUTH_TOKEN" in err and wrong not in err

    # nothing was queued, and with the right token the same client gets in
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", cluster.env["RAY_AUTH_TOKEN_PATH"])
    _forget_cached_token()
    jobs = job_client(cluster.dashboard).list_jobs()
    assert not [j for j in jobs if (j.metadata or {}).get("sweep") == "cluster-refused"]
    assert not (tmp_path / "results").exists()


def _driver_pid(client, job_id: str, timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get_job_info(job_id)
        if info.driver_info is not None and info.driver_info.pid:
            return int(info.driver_info.pid)
        assert str(info.status.value) not in ("SUCCEEDED", "FAILED", "STOPPED"), client.get_job_logs(job_id)
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} never reported its driver")


def _wait_for(predicate, what: str, client, job_id: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        status = str(client.get_job_status(job_id).value)
        assert status in ("PENDING", "RUNNING"), f"job {status} before {what}:\n{client.get_job_logs(job_id)[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _finished_trials(sweep_dir: Path) -> int:
    return len(read_trials(sweep_dir)) if (sweep_dir / "trials.parquet").exists() else 0


def test_killed_driver_is_resumed_without_losing_or_repeating_trials(cluster, client_env, prepared, tmp_path):
    n = 4
    sweep = write_sweep(tmp_path / "driver.toml", "cluster-driver", prepared, num_samples=n, max_epochs=12,
                        grace_period=12)
    results = tmp_path / "results"
    sweep_dir = results / "cluster-driver"
    client = job_client(cluster.dashboard)
    job_id = submit_sweep(sweep, cluster.dashboard, str(results))
    pid = _driver_pid(client, job_id)
    _wait_for(lambda: _finished_trials(sweep_dir) >= 1, "a finished trial", client, job_id)
    assert b"ser-search" in Path(f"/proc/{pid}/cmdline").read_bytes()  # the job's own driver
    os.kill(pid, signal.SIGKILL)
    assert wait_for_job(client, job_id, follow=False, timeout_s=120) == "FAILED"
    before = read_trials(sweep_dir).set_index("trial_id")
    assert 1 <= len(before) < n

    # the same command line, pointed at the cluster, continues the sweep
    done = subprocess.run([sys.executable, "-m", "search.cli", "sweep", str(sweep), "--resume",
                           "--address", cluster.gcs_address, "--results", str(results)],
                          env=cluster.env, capture_output=True, text=True, timeout=420, start_new_session=True)
    assert done.returncode == 0, done.stderr[-4000:]
    lost = assert_complete(sweep_dir, n, max_epochs=12, lost_allowed=True)
    after = read_trials(sweep_dir).set_index("trial_id")
    for trial_id, row in before.iterrows():  # finished before the kill: kept, not run again
        assert after.loc[trial_id, "finished_at"] == row["finished_at"]
    # A trial the driver had started after Tune's last snapshot (taken every 2 s) is lost with it:
    # Optuna is told FAIL and the row says so. Whether the kill lands there is a matter of timing.
    study = optuna.load_study(study_name="cluster-driver", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    failed, never_ran = failed_trials_by_tune_id(study)  # never_ran: killed between Optuna's ask and Tune
    assert lost == failed
    # no orphan: every trial directory with a report has a row, and every row a trial directory
    assert set(after.index) == set(tune_results(sweep_dir)) | lost
    print(f"driver fault: killed with {len(before)} of {n} trials finished; --resume finished the "
          f"other {n - len(before)}, {len(after)} rows, each trial once, {len(lost)} lost with the driver, "
          f"{len(never_ran)} asked of Optuna but never handed to Tune")


def test_killed_worker_node_trials_are_retried_elsewhere(cluster, client_env, prepared, tmp_path):
    """Last in this file: it leaves the cluster without a worker node."""
    worker = cluster.live_worker()
    n, epochs = 4, 30
    sweep = write_sweep(tmp_path / "fault.toml", "cluster-fault", prepared, num_samples=n, max_epochs=epochs,
                        grace_period=epochs)
    results = tmp_path / "results"
    sweep_dir = results / "cluster-fault"
    client = job_client(cluster.dashboard)
    job_id = submit_sweep(sweep, cluster.dashboard, str(results))

    # Kill the node while one of its trials is mid-way: checkpointed epochs behind it, more ahead.
    def victim_on_worker() -> tuple[str, int] | None:
        for trial_id, rows in tune_results(sweep_dir).items():
            last = rows[-1]
            if last["node"] == worker.ip and 2 <= last["epoch"] <= epochs - 5:
                return trial_id, last["epoch"]
        return None

    _wait_for(lambda: victim_on_worker() is not None, "a trial half-way through on the worker node",
              client, job_id)
    victim, reached = victim_on_worker()
    worker.kill()
    deadline = time.monotonic() + 60
    while worker.ip in cluster.alive_ips():
        assert time.monotonic() < deadline, "the head never marked the killed node dead"
        time.sleep(1.0)

    status = wait_for_job(client, job_id, follow=False, timeout_s=420)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-4000:]
    assert_complete(sweep_dir, n, max_epochs=epochs)
    # the victim failed once (Tune recorded it), then finished on the head from its checkpoint
    assert "Failure # 1" in (trial_dir(sweep_dir, victim) / "error.txt").read_text()
    trials = read_trials(sweep_dir).set_index("trial_id")
    assert trials.loc[victim, "node"] == HEAD_IP and trials.loc[victim, "status"] == "completed"
    rows = tune_results(sweep_dir)[victim]
    resumed = [r for r in rows if r["iterations_since_restore"] < r["training_iteration"]]
    assert resumed and resumed[0]["epoch"] > 1 and all(r["node"] == HEAD_IP for r in resumed), \
        [(r["epoch"], r["node"], r["iterations_since_restore"]) for r in rows]
    print(f"worker fault: trial {victim} lost its node at epoch {reached}, resumed on the head at "
          f"epoch {resumed[0]['epoch']}")
