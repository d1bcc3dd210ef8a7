"""`ser-search submit` and `ser-search jobs`: run a sweep file on a remote Ray cluster as a Ray Job.

Why a Ray Job and not a remote `ray.init`: the job's driver runs on the cluster's head node, so
the sweep survives the laptop closing its lid, its logs stay with the cluster, and only the job
server (HTTP, token-checked) has to be reachable from the client.

What travels with a job (its runtime_env):
  working_dir  a fresh folder holding only the sweep file, so the driver reads exactly what was
               validated here, wherever the file lives on the client;
  py_modules   `ser_core/` and `search/` of this checkout when run from one, so the cluster runs
               the code being edited (they come first on PYTHONPATH, ahead of an installed copy).
               With --installed, or when this package is itself installed (not a checkout),
               nothing is uploaded and the cluster's own `ser-search` runs.
Only source packages are uploaded, never the repository root: results, prepared corpora, .git or
a stray .env cannot leak into the cluster's package store.

The token comes from the environment, in Ray's order: RAY_AUTH_TOKEN, the file named by
RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token. It goes into one HTTP header and nowhere else: not into
the runtime_env, the entrypoint, the job metadata, results or output.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:  # ray is imported lazily: `ser-search --help` must stay fast
    from ray.job_submission import JobSubmissionClient

PACKAGES = ("ser_core", "search")
# Never uploaded, even if they end up inside a package folder.
EXCLUDES = [".git", "__pycache__/", "*.pyc", ".pytest_cache/", "results/", "runs/", "demo-out/",
            "*.npy", "*.pt", "*.ckpt", "*.parquet", ".env", "auth_token"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # the variable `ray job` itself reads


class JobError(RuntimeError):
    """A submission or job request cannot be made; the message says what and how to fix it."""


# ------------------------------------------------------------------------------ token, client


def resolve_token() -> str | None:
    """The cluster token from the environment (Ray's own order of sources), or None."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path_env = os.environ.get(TOKEN_PATH_ENV)
    path = Path(path_env).expanduser() if path_env else Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if path_env:  # named explicitly, so its absence is a mistake worth reporting
            raise JobError(f"{TOKEN_PATH_ENV} names {path}, which does not exist") from None
        return None
    except OSError as e:
        raise JobError(f"cannot read the Ray token file {path}: {e.strerror}") from None
    return token or None


def _check_address(address: str | None) -> str:
    if not address:
        raise JobError(f"no cluster address: pass --address http://HEAD:8265 or set {ADDRESS_ENV}")
    url = urlparse(address)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise JobError(f"--address must be the job server's URL, like http://HEAD:8265; got {address!r}")
    try:
        public = ipaddress.ip_address(url.hostname).is_global
    except ValueError:  # a host name: cannot tell, do not guess
        public = False
    if public and url.scheme == "http":
        print(f"warning: {url.hostname} is a public address and http is unencrypted: the token can be "
              f"read on the way. Reach the job server through an SSH tunnel or port-forward instead "
              f"(cluster/README.md).", file=sys.stderr)
    return address.rstrip("/")


def job_client(address: str | None) -> JobSubmissionClient:
    """A JobSubmissionClient for `address` that sends the environment's token, if any."""
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 - keep CLI start-up fast

    address = _check_address(address)
    token = resolve_token()
    # An explicit header: Ray adds its own only when RAY_AUTH_MODE=token is set on the client.
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except ConnectionError as e:
        raise JobError(f"cannot reach the Ray job server at {address}: {e}") from None


# ------------------------------------------------------------------------------ submission


def project_root() -> Path | None:
    """The checkout this module runs from, or None when it is an installed package."""
    root = Path(__file__).resolve().parents[2]  # search/cli/jobs.py → the checkout
    ok = (root / "pyproject.toml").is_file() and all((root / p / "__init__.py").is_file() for p in PACKAGES)
    return root if ok else None


def _cluster_path(value: str, flag: str, readers: str) -> str:
    """Paths given to a job are read on the cluster: a relative one would point into the job's
    temporary working directory, which Ray deletes."""
    from search.results.location import is_uri  # noqa: PLC0415 - pyarrow and torch only when a job is submitted

    if not (is_uri(value) or Path(value).is_absolute()):
        raise JobError(f"{flag} {value!r} is relative; on a cluster it must be an absolute path "
                       f"(or a URI) that {readers} can reach, since relative paths would land "
                       f"in the job's temporary working directory")
    return value


def _relative_prepared(sweep_file: Path) -> str | None:
    """The sweep file's own data.prepared when it is relative (meaningless on the cluster)."""
    with sweep_file.open("rb") as fh:
        raw = tomllib.load(fh)
    prepared = raw.get("data", {}).get("prepared")
    return prepared if isinstance(prepared, str) and not Path(prepared).is_absolute() else None


@dataclass(frozen=True)
class JobSpec:
    """What submit_job receives; built separately so it can be checked without a cluster."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    metadata: dict[str, str]


def _cluster_storage(url: str, sweep: Any) -> str:
    """An Optuna storage URL the job's driver can open: validated like the sweep key, an SQLite
    file by absolute path, and no password: the entrypoint is shown by `ser-search jobs list`
    and Ray's dashboard to anyone holding the cluster's token."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - Optuna's dependency

    sweep.with_optuna_storage(url)  # SweepConfigError for a URL that is no usable database
    parsed = make_url(url)
    if parsed.password:
        raise JobError("--optuna-storage holds a password, which would be shown with the job's entrypoint; "
                       "give the URL without it and let the head node supply it (PGPASSWORD or ~/.pgpass for "
                       "PostgreSQL, an option file for MySQL)")
    if parsed.drivername.split("+")[0] == "sqlite" and not Path(str(parsed.database)).is_absolute():
        raise JobError(f"--optuna-storage {url!r} is a relative SQLite path, which means nothing on the cluster; "
                       "use sqlite:////abs/path/optuna.db on storage the head node reads")
    return url


def build_job(sweep_file: Path | str, results: str, *, prepared: str | None = None, resume: bool = False,
              installed: bool = False, optuna_storage: str | None = None, staging: Path) -> JobSpec:
    """Validate the sweep here (a typo must not cost a cluster round trip), stage it into
    `staging` and describe the job that runs it on the cluster."""
    from search.definition import load_sweep  # noqa: PLC0415

    sweep_file = Path(sweep_file)
    sweep = load_sweep(sweep_file)  # raises SweepConfigError naming every bad key
    if optuna_storage is not None:
        optuna_storage = _cluster_storage(optuna_storage, sweep)
    results = _cluster_path(results, "--results", "every node")  # trials write checkpoints there
    if prepared is not None:
        prepared = _cluster_path(str(prepared), "--prepared", "the head node")  # read by the driver
    else:
        rel = _relative_prepared(sweep_file)
        if rel is not None:
            raise JobError(f"{sweep_file}: data.prepared = {rel!r} is relative to the sweep file, which "
                           f"means nothing on the cluster; pass --prepared with an absolute path the "
                           f"head node can read")
    staged = staging / sweep_file.name
    shutil.copyfile(sweep_file, staged)

    args = ["ser-search", "sweep", staged.name, "--results", results,
            # The driver runs inside the job: join the cluster Ray started it in (RAY_ADDRESS),
            # never a private local Ray.
            "--address", "auto"]
    if prepared is not None:
        args += ["--prepared", prepared]
    if optuna_storage is not None:
        args += ["--optuna-storage", optuna_storage]
    if resume:
        args.append("--resume")
    runtime_env: dict[str, Any] = {"working_dir": str(staging)}
    root = None if installed else project_root()
    if root is not None:
        runtime_env["py_modules"] = [str(root / p) for p in PACKAGES]
        runtime_env["excludes"] = list(EXCLUDES)
    name = sweep.sweep.name
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    return JobSpec(
        entrypoint=shlex.join(args),
        runtime_env=runtime_env,
        submission_id=f"ser-search-{safe}-{uuid.uuid4().hex[:8]}",
        metadata={"sweep": name, "results": results, "resume": str(resume).lower(),
                  "code": "checkout" if root is not None else "installed"},
    )


def submit_sweep(sweep_file: Path | str, address: str | None, results: str, *, prepared: str | None = None,
                 resume: bool = False, installed: bool = False, optuna_storage: str | None = None,
                 client: JobSubmissionClient | None = None) -> str:
    """Submit `sweep_file` as a Ray Job on the cluster at `address`; returns the job id.

    Raises JobError for bad input or an unreachable server and ray.exceptions.AuthenticationError
    when the cluster refuses the token (or its absence)."""
    with tempfile.TemporaryDirectory(prefix="ser-search-job-") as d:  # uploaded by submit_job
        # Everything checkable here is checked before the cluster is contacted.
        spec = build_job(sweep_file, results, prepared=prepared, resume=resume, installed=installed,
                         optuna_storage=optuna_storage, staging=Path(d))
        client = client or job_client(address)
        return client.submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env,
                                 submission_id=spec.submission_id, metadata=spec.metadata)


def wait_for_job(client: JobSubmissionClient, job_id: str, *, follow: bool = True, poll_s: float = 2.0,
                 timeout_s: float | None = None) -> str:
    """Block until the job ends and return its final status; with follow, print new log text
    as it arrives. Polling (not a websocket) so it works through any HTTP proxy."""
    printed = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if follow:
            logs = client.get_job_logs(job_id)
            if len(logs) > printed:
                sys.stdout.write(logs[printed:])
                sys.stdout.flush()
                printed = len(logs)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


# ------------------------------------------------------------------------------ CLI


def _report(command: str, e: BaseException) -> int:
    print(f"ser-search {command}: error: {e}", file=sys.stderr)
    return 2


def _guard(command: str, fn, args: argparse.Namespace) -> int:
    """Known failures print one clean line (never the token: Ray's messages do not carry it)."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415

    from search.definition import SweepConfigError  # noqa: PLC0415

    try:
        return fn(args)
    except AuthenticationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "authentication failed"
        return _report(command, f"the cluster refused the request ({first}); give its token via "
                                f"{TOKEN_ENV}, {TOKEN_PATH_ENV} or ~/.ray/auth_token")
    # JobError, a bad sweep file, an unreachable server (OSError) or the job server's own
    # answer (RuntimeError, e.g. an unknown job id)
    except (SweepConfigError, OSError, RuntimeError) as e:
        return _report(command, e)


def cmd_submit(args: argparse.Namespace) -> int:
    job_id = submit_sweep(args.sweep, args.address, args.results, prepared=args.prepared,
                          resume=args.resume, installed=args.installed, optuna_storage=args.optuna_storage)
    print(job_id, flush=True)
    if args.no_wait:
        print(f"follow it with: ser-search jobs logs {job_id} --address {args.address or '$' + ADDRESS_ENV}",
              file=sys.stderr)
        return 0
    client = job_client(args.address)
    try:
        status = wait_for_job(client, job_id, follow=True)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} keeps running on the cluster "
              f"(ser-search jobs stop {job_id} --address ... ends it)", file=sys.stderr)
        return 130
    print(f"job {job_id}: {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.job_id:
        raise JobError(f"`jobs {args.action}` needs a JOB_ID (see `ser-search jobs list`)")
    client = job_client(args.address)
    if args.action == "list":
        for job in client.list_jobs():
            if job.submission_id:
                print(f"{job.submission_id}\t{job.status.value}\t{job.entrypoint}")
        return 0
    if args.action == "status":
        info = client.get_job_info(args.job_id)
        print(f"{args.job_id}\t{info.status.value}\t{info.message or ''}".rstrip())
        return 0
    if args.action == "logs":
        if args.follow:
            status = wait_for_job(client, args.job_id, follow=True)
            return 0 if status == "SUCCEEDED" else 1
        sys.stdout.write(client.get_job_logs(args.job_id))
        return 0
    stopped = client.stop_job(args.job_id)
    print(f"{args.job_id}\t{'stopping' if stopped else 'already finished'}")
    return 0


def add_job_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `submit` and `jobs` on the ser-search command line."""
    address_help = f"job server URL, e.g. http://HEAD:8265 (default: ${ADDRESS_ENV})"

    s = subparsers.add_parser("submit", help="run a sweep file on a Ray cluster as a Ray Job")
    s.add_argument("sweep", type=Path)
    s.add_argument("--address", default=os.environ.get(ADDRESS_ENV), help=address_help)
    s.add_argument("--results", required=True,
                   help="results: an absolute path on storage every node reaches, or a pyarrow URI")
    s.add_argument("--prepared", help="prepared corpus on the cluster (absolute path); "
                                      "overrides the sweep file's data.prepared")
    s.add_argument("--resume", action="store_true", help="continue the sweep's interrupted run")
    s.add_argument("--optuna-storage", metavar="URL",
                   help="Optuna storage URL the head node reaches (no password in it: the head supplies it); "
                        "overrides [sweep] optuna_storage")
    s.add_argument("--installed", action="store_true",
                   help="upload no code: run the ser-search installed on the cluster")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return")
    s.set_defaults(func=lambda a: _guard("submit", cmd_submit, a))

    j = subparsers.add_parser("jobs", help="follow or stop sweeps submitted with `submit`")
    j.add_argument("action", choices=["status", "logs", "stop", "list"])
    j.add_argument("job_id", nargs="?")
    j.add_argument("--address", default=os.environ.get(ADDRESS_ENV), help=address_help)
    j.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")
    j.set_defaults(func=lambda a: _guard("jobs", cmd_jobs, a))
