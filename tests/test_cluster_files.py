"""The deployment files in cluster/ and the job submission code, checked without a cluster.

Every YAML must parse and carry what its tool needs (Ray's own JSON schema for the cluster
launcher; the KubeRay fields by hand), every `ser-search` command in them must parse with the
real command line, auth must be on everywhere, the job server never public, and no file may
hold a secret. The submission half builds real job specs from real sweep files.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

from search.cli import build_parser
from search.definition import SweepConfigError
from search.cli.jobs import EXCLUDES, JobError, add_job_commands, build_job, resolve_token

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHERS = {"aws": CLUSTER / "launcher" / "aws-gpu.yaml", "onprem": CLUSTER / "launcher" / "onprem.yaml"}
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob-sweep.yaml"
SLURM = CLUSTER / "slurm" / "ser-search-sweep.sbatch"
DOCKERFILE = CLUSTER / "docker" / "Dockerfile"
TEXT_FILES = sorted(p for p in CLUSTER.rglob("*") if p.is_file())
YAML_FILES = sorted(p for p in TEXT_FILES if p.suffix in (".yaml", ".yml"))


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and doc, f"{path} is empty or not a mapping"
    return doc


# ---------------------------------------------------------------------------- commands


def _sweep_parser() -> argparse.ArgumentParser:
    return build_parser()


def _job_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser-search")
    add_job_commands(p.add_subparsers(dest="command", required=True))
    return p


def parse_command(command: str) -> argparse.Namespace:
    """Parse a `ser-search ...` command written in a file with the real command line. Shell
    variables become placeholders; the SLURM script's optional "${resume[@]}" becomes --resume."""
    tokens = shlex.split(command.replace("\\\n", " "), comments=True)
    assert tokens[0] == "ser-search", command
    args = []
    for tok in tokens[1:]:
        if tok == "${resume[@]}":
            args.append("--resume")
        elif "$" in tok:
            args.append("/placeholder")
        else:
            args.append(tok)
    parser = _job_parser() if args[0] in ("submit", "jobs") else _sweep_parser()
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"not a valid ser-search command: {command!r}")


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def ser_search_commands(path: Path) -> list[str]:
    """Every `ser-search <sub-command> ...` command in a file (in a Markdown file: in its code
    blocks), backslash continuations joined and comment markers stripped. Prose mentions
    (`ser-search sweep ...`, a bare sub-command name) are not commands."""
    text = path.read_text()
    if path.suffix == ".md":
        text = "\n".join(re.findall(r"```\w*\n(.*?)```", text, re.S))
    elif path.suffix == ".yaml":  # the values as YAML reads them (folded lines joined), and comments
        text = "\n".join([*_strings(yaml.safe_load(text)), *re.findall(r"^\s*#.*$", text, re.M)])
    joined = re.sub(r"\\\n\s*(#\s*)?", " ", text)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"^\s*#\s?", "", line)
        for m in re.finditer(r"ser-search (?:sweep|submit|jobs|prepare|leaderboard)\b[^`'\n]*", line):
            command = m.group(0).split(" && ")[0].split(" | ")[0].split("  #")[0].strip()
            if command.count('"') % 2:  # the closing quote of an enclosing string, e.g. ray exec "..."
                command = command.rstrip('"').strip()
            if "..." not in command.split() and len(command.split()) > 2:
                found.append(command)
    return found


def test_pyproject_entry_point_is_the_one_the_files_call():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ser-search"] == "search.cli:main"


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_ser_search_command_in_the_cluster_files_parses(path):
    for command in ser_search_commands(path):
        args = parse_command(command)
        if args.command == "sweep" and path.name != "README.md":
            # a driver inside a cluster must join it, never start a private local Ray
            assert args.address, f"{path}: {command!r} has no --address"


def test_every_deployment_runs_a_sweep_with_the_entry_point():
    assert "ser-search sweep" in load(RAYJOB)["spec"]["entrypoint"]
    assert any(c.startswith("ser-search sweep") for c in ser_search_commands(SLURM))
    readme = ser_search_commands(CLUSTER / "README.md")
    assert any(c.startswith("ser-search submit") for c in readme)
    assert {c.split()[2] for c in readme if c.startswith("ser-search jobs")} >= {"status", "logs", "stop"}


# ---------------------------------------------------------------------------- YAML files


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1 and isinstance(docs[0], dict)


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_configs_match_rays_own_schema(name, ray_schema):
    config = load(LAUNCHERS[name])
    jsonschema.validate(config, ray_schema)
    assert config["cluster_name"] and config["provider"]["type"]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    # the token travels from the launching machine's own file, never as a literal
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


def test_aws_launcher_has_a_gpu_worker_type():
    config = load(LAUNCHERS["aws"])
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if name != config["head_node_type"] and t["resources"].get("GPU", 0) >= 1]
    assert gpu and gpu[0]["max_workers"] >= 1 and gpu[0]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert config["docker"]["image"] == image_name()


def test_onprem_launcher_lists_machines_and_no_node_types():
    config = load(LAUNCHERS["onprem"])
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    # Ray aborts `ray up` on these for provider type local (one node type per machine list)
    assert "available_node_types" not in config and "head_node_type" not in config
    setup = " ".join(config["setup_commands"])
    assert "torch==" in setup and "-e ~/ser-search" in setup


def image_name() -> str:
    """The image the Dockerfile's build line tags."""
    m = re.search(r"docker build -f cluster/docker/Dockerfile -t (\S+) \.", DOCKERFILE.read_text())
    assert m, "the Dockerfile documents how it is built and tagged"
    return m.group(1)


def test_dockerfile_installs_this_package_and_the_exact_torch():
    text = DOCKERFILE.read_text()
    assert re.search(r'torch==\$\{TORCH_VERSION\}', text) and "ARG TORCH_VERSION=" in text
    assert "pip install --no-cache-dir /opt/ser-search" in text
    for part in ("pyproject.toml", "ser_core", "search"):
        assert re.search(rf"^COPY .*\b{part}\b", text, re.M), part
    assert re.search(r"rayproject/ray:(\S+)", text).group(1).startswith("2.60.0")


def _ray_containers(cluster_spec: dict) -> list[tuple[str, dict]]:
    head = cluster_spec["headGroupSpec"]["template"]["spec"]["containers"]
    out = [("head", c) for c in head]
    for group in cluster_spec["workerGroupSpecs"]:
        out += [(group["groupName"], c) for c in group["template"]["spec"]["containers"]]
    return out


def _token_env_ok(container: dict) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    mode = env.get("RAY_AUTH_MODE", {}).get("value") == "token"
    token = env.get("RAY_AUTH_TOKEN", {})
    ref = token.get("valueFrom", {}).get("secretKeyRef", {})
    return mode and "value" not in token and bool(ref.get("name")) and bool(ref.get("key"))


def check_ray_cluster_spec(spec: dict, where: str) -> None:
    assert spec["rayVersion"] == "2.60.0", where
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{where}: the head Service must not be public"
    head_limits = head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head_limits, f"{where}: the head is CPU only"
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1]
    assert gpu_groups, f"{where}: no GPU worker group"
    for group, container in _ray_containers(spec):
        assert _token_env_ok(container), f"{where}: {group} container lacks RAY_AUTH_MODE=token + token secret"
        assert container["image"] == image_name(), f"{where}: {group} runs {container['image']}"


def test_kuberay_raycluster():
    doc = load(RAYCLUSTER)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    check_ray_cluster_spec(doc["spec"], "RayCluster")


def test_kuberay_rayjob_runs_a_sweep_and_shuts_the_cluster_down():
    doc = load(RAYJOB)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    args = parse_command(spec["entrypoint"])
    assert args.command == "sweep" and args.address == "auto"
    assert Path(args.results).is_absolute() and Path(args.prepared).is_absolute()
    # the sweep file it names is the one the image carries (Dockerfile: COPY search -> /opt/ser-search/search)
    assert str(args.sweep).startswith("/opt/ser-search/")
    assert (REPO / Path(args.sweep).relative_to("/opt/ser-search")).is_file()
    check_ray_cluster_spec(spec["rayClusterSpec"], "RayJob")
    (submitter,) = spec["submitterPodTemplate"]["spec"]["containers"]
    assert _token_env_ok(submitter), "the submitter needs the token to reach the job server"


def test_kuberay_volumes_refer_to_the_shared_claim():
    claim = load(CLUSTER / "kuberay" / "shared-storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    for path in (RAYCLUSTER, RAYJOB):
        names = re.findall(r"claimName: (\S+)", path.read_text())
        assert names and set(names) == {claim["metadata"]["name"]}, path


# ---------------------------------------------------------------------------- SLURM


def test_slurm_script_is_valid_bash_and_starts_ray_across_the_allocation():
    subprocess.run(["bash", "-n", str(SLURM)], check=True, capture_output=True, timeout=30)
    text = SLURM.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH --nodes=" in text
    assert "set -euo pipefail" in text
    assert re.search(r"srun .*-w \"\$head_node\"[^\n]*\\\n\s*ray start --head --block", text)
    assert re.search(r"for node in \"\$\{nodes\[@\]:1\}\"", text) and "ray start --block --address" in text
    assert "export RAY_AUTH_MODE=token" in text and "export RAY_AUTH_TOKEN" in text
    assert "--dashboard-host=127.0.0.1" in text
    assert "trap stop_ray EXIT" in text  # Ray ends with the script
    assert "set -x" not in text  # would print the token


# ---------------------------------------------------------------------------- security


# A literal secret: a long hex or base64 run, a private key, an AWS key id, or a token variable
# given a value instead of a reference.
SECRET_PATTERNS = [
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),
    re.compile(r"[A-Za-z0-9+/]{40,}={0,2}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"RAY_AUTH_TOKEN=(?![\"']?\$|\.\.\.)[^\s\"']+"),
    re.compile(r"auth_token=(?![\"']?\$|\.\.\.)[^\s\"']+"),
]


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_no_file_holds_a_secret(path):
    text = path.read_text()
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{path}: {pattern.pattern} matches {pattern.search(text).group(0)[:12]}..."
    if path.suffix == ".yaml":
        assert load(path).get("kind") != "Secret", f"{path}: Secrets are created with kubectl, not committed"


def test_the_secret_scan_would_catch_a_token():
    token = "3f" * 32  # what `ray get-auth-token --generate` writes
    assert any(p.search(f"RAY_AUTH_TOKEN: {token}") for p in SECRET_PATTERNS)
    assert any(p.search("export RAY_AUTH_TOKEN=hunter2") for p in SECRET_PATTERNS)
    assert not any(p.search('export RAY_AUTH_TOKEN="$(kubectl get secret x)"') for p in SECRET_PATTERNS)


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_job_server_never_public_without_token_auth(path):
    """0.0.0.0 only in a Kubernetes pod (a private pod address), behind a ClusterIP Service,
    with token auth on and a comment saying so; everywhere else the dashboard is on loopback."""
    text = path.read_text()
    lines = text.splitlines()
    assert not re.search(r"serviceType:\s*(LoadBalancer|NodePort)", text)
    assert "kind: Ingress" not in text
    for i, line in enumerate(lines):
        if "dashboard-host" in line:
            value = re.search(r"dashboard-host[=:]\s*\"?([^\"\s]+)", line).group(1)
            if value == "0.0.0.0":
                assert path.parent.name == "kuberay", f"{path}:{i + 1} binds the dashboard to 0.0.0.0"
                context = " ".join(lines[max(0, i - 3):i]).lower()
                assert "token" in context and "private" in context, f"{path}:{i + 1}: say why 0.0.0.0 is safe"
            else:
                assert value.startswith("127."), f"{path}:{i + 1}: dashboard on {value}"


def test_readme_covers_every_deployment_file_and_the_exposure():
    readme = (CLUSTER / "README.md").read_text()
    for path in TEXT_FILES:
        if path.name != "README.md":
            assert str(path.relative_to(CLUSTER)) in readme, f"README does not mention {path.name}"
    for section in ("## AWS", "## On-premise", "## Kubernetes, long-lived", "## Kubernetes, one sweep",
                    "## SLURM", "## Security", "## Faults"):
        assert section in readme
    body = readme.lower()
    assert "tear down" in body and "exposed" in body and "ray job submit" in body


# ---------------------------------------------------------------------------- submission


SWEEP = """
[sweep]
name = "jobs-test"
num_samples = 2

[data]
prepared = "{prepared}"

[scheduler]
max_epochs = 1

[space]
loss_family = {{ choices = ["cross_entropy", "focal"] }}
"""


@pytest.fixture
def no_token_env(monkeypatch, tmp_path):
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_token_comes_from_the_environment_in_rays_order(no_token_env, monkeypatch):
    home = no_token_env / "home"
    assert resolve_token() is None
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("from-home\n")
    assert resolve_token() == "from-home"
    named = no_token_env / "named-token"
    named.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert resolve_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert resolve_token() == "from-env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(no_token_env / "missing"))
    with pytest.raises(JobError, match="RAY_AUTH_TOKEN_PATH names .*missing"):
        resolve_token()


def test_job_spec_ships_the_sweep_and_the_packages_but_not_the_token(no_token_env, monkeypatch):
    token = "ab" * 32
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    sweep = no_token_env / "elsewhere" / "my-sweep.toml"  # outside the checkout on purpose
    sweep.parent.mkdir()
    sweep.write_text(SWEEP.format(prepared="/data/prepared"))
    staging = no_token_env / "staging"
    staging.mkdir()
    spec = build_job(sweep, "/shared/results", staging=staging)

    assert sorted(p.name for p in staging.iterdir()) == ["my-sweep.toml"]  # the working_dir: the sweep alone
    assert spec.runtime_env["working_dir"] == str(staging)
    assert spec.runtime_env["py_modules"] == [str(REPO / "ser_core"), str(REPO / "search")]
    assert {"results/", "*.npy", ".git", "auth_token"} <= set(EXCLUDES) == set(spec.runtime_env["excludes"])
    args = parse_command(spec.entrypoint)
    assert (args.command, str(args.sweep), args.address, args.results) == ("sweep", "my-sweep.toml", "auto",
                                                                          "/shared/results")
    assert args.prepared is None and not args.resume  # data.prepared is absolute in the file
    assert spec.submission_id.startswith("ser-search-jobs-test-")
    assert spec.metadata["sweep"] == "jobs-test" and spec.metadata["code"] == "checkout"
    assert token not in json.dumps([spec.entrypoint, spec.runtime_env, spec.metadata, spec.submission_id])

    spec = build_job(sweep, "s3://bucket/results", prepared="/data/other", resume=True, installed=True,
                     staging=staging)
    args = parse_command(spec.entrypoint)
    assert args.resume and str(args.prepared) == "/data/other" and args.results == "s3://bucket/results"
    assert "py_modules" not in spec.runtime_env and spec.metadata["code"] == "installed"


def test_job_passes_an_optuna_storage_without_its_password(no_token_env):
    staging = no_token_env / "staging"
    staging.mkdir()
    sweep = no_token_env / "s.toml"
    sweep.write_text(SWEEP.format(prepared="/data/prepared"))
    spec = build_job(sweep, "/r", optuna_storage="postgresql://ser@db.internal/studies", staging=staging)
    assert parse_command(spec.entrypoint).optuna_storage == "postgresql://ser@db.internal/studies"
    assert parse_command(build_job(sweep, "/r", staging=staging).entrypoint).optuna_storage is None
    with pytest.raises(JobError, match="holds a password") as info:
        build_job(sweep, "/r", optuna_storage="postgresql://ser:hunter2@db/studies", staging=staging)
    assert "hunter2" not in str(info.value)
    with pytest.raises(JobError, match="relative SQLite path"):
        build_job(sweep, "/r", optuna_storage="sqlite:///optuna.db", staging=staging)
    build_job(sweep, "/r", optuna_storage="sqlite:////shared/optuna.db", staging=staging)
    with pytest.raises(SweepConfigError, match="not a database Optuna can store"):
        build_job(sweep, "/r", optuna_storage="redis://db/0", staging=staging)


def test_job_spec_refuses_paths_that_mean_nothing_on_the_cluster(no_token_env):
    staging = no_token_env / "staging"
    staging.mkdir()
    sweep = no_token_env / "s.toml"
    sweep.write_text(SWEEP.format(prepared="/data/prepared"))
    with pytest.raises(JobError, match="--results 'results' is relative"):
        build_job(sweep, "results", staging=staging)
    with pytest.raises(JobError, match="--prepared '~/prepared' is relative"):
        build_job(sweep, "/r", prepared="~/prepared", staging=staging)
    # the repository's demo sweep names its corpus relative to itself
    with pytest.raises(JobError, match=r"data.prepared = '\.\./\.\./runs/demo/prepared' is relative"):
        build_job(REPO / "search" / "sweeps" / "demo.toml", "/r", staging=staging)
    build_job(REPO / "search" / "sweeps" / "demo.toml", "/r", prepared="/p", staging=staging)
    bad = no_token_env / "bad.toml"
    bad.write_text(SWEEP.format(prepared="/p").replace("max_epochs = 1", "max_epochs = 0"))
    with pytest.raises(SweepConfigError, match="max_epochs"):
        build_job(bad, "/r", staging=staging)


def test_cli_reports_bad_input_before_contacting_any_cluster(no_token_env, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "cd" * 32)
    sweep = no_token_env / "s.toml"
    sweep.write_text(SWEEP.format(prepared="/data/prepared"))
    parser = _job_parser()
    # an address nothing listens on: these must fail on the input, not on the connection
    unreachable = "http://127.0.0.1:9"
    for argv, message in [
        (["submit", str(sweep), "--address", unreachable, "--results", "rel"], "is relative"),
        (["submit", str(no_token_env / "none.toml"), "--address", unreachable, "--results", "/r"],
         "sweep file not found"),
        (["submit", str(sweep), "--results", "/r"], "no cluster address"),
        (["submit", str(sweep), "--address", "127.0.0.1:8265", "--results", "/r"], "must be the job server's URL"),
        (["jobs", "status", "--address", unreachable], "needs a JOB_ID"),
    ]:
        args = parser.parse_args(argv)
        assert args.func(args) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "cd" * 32 not in err, (argv, err)


def test_cli_names_an_unreachable_job_server(no_token_env, capsys):
    args = _job_parser().parse_args(["jobs", "status", "some-job", "--address", "http://127.0.0.1:9"])
    assert args.func(args) == 2
    assert "cannot reach the Ray job server at http://127.0.0.1:9" in capsys.readouterr().err
