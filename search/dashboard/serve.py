"""`ser-search dashboard --serve`: the page on a local HTTP server that rebuilds it when the
results change, while the open page polls `/version` and reloads itself, so a sweep can be
watched while it runs.

Only the standard library is imported at module level: the command line takes DEFAULT_PORT
from here for its help text, and `ser-search --help` must not pay for torch and plotly. The
page builder (search.dashboard.report) is imported when the first page is built.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8050


def results_version(results_dir: str | Path) -> str:
    """A fingerprint of the results files (size and mtime of every Parquet file, part file and
    sweep file in the directory and its sweep folders): it changes whenever the recorder writes."""
    import pyarrow.fs as pafs  # noqa: PLC0415

    text = str(results_dir)
    if "://" in text:
        fs, root = pafs.FileSystem.from_uri(text)
    else:
        fs, root = pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()
    def listing(path: str, recursive: bool = False) -> list:
        # A directory a writer creates while it is listed can escape Arrow's allow_not_found as
        # FileNotFoundError (see search.results.parts.list_parts): then it was not there yet.
        try:
            return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
        except FileNotFoundError:
            return []

    try:
        top = listing(root)
    except (OSError, NotADirectoryError):
        top = []
    infos = list(top)
    for d in [root, *(i.path for i in top if i.type == pafs.FileType.Directory)]:
        if d != root:
            infos += listing(d)
        # the part files a running driver appends (search.results.parts)
        infos += listing(f"{d.rstrip('/')}/parts", recursive=True)
    keys = sorted(f"{i.path}|{i.size}|{i.mtime_ns}" for i in infos
                  if i.type == pafs.FileType.File and (i.path.endswith(".parquet") or i.path.endswith("sweep.toml")))
    return hashlib.sha1("\n".join(keys).encode()).hexdigest()[:16]


class DashboardServer(ThreadingHTTPServer):
    """Serves `/` (the page, rebuilt when results_version changes) and `/version`."""

    daemon_threads = True

    def __init__(self, results_dir: str | Path, address: tuple[str, int], *, title: str | None = None) -> None:
        self.results_dir, self.title = results_dir, title
        self._lock = threading.Lock()
        self._page: tuple[str, bytes] | None = None
        self.page_bytes()  # fail now, with the ResultsError, if the directory is not usable
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def page_bytes(self) -> bytes:
        with self._lock:
            version = results_version(self.results_dir)
            if self._page is None or self._page[0] != version:
                from .report import build_dashboard  # noqa: PLC0415 - heavy, see the module docstring

                html = build_dashboard(self.results_dir, title=self.title, refresh_version=version)
                self._page = (version, html.encode("utf-8"))
            return self._page[1]


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", self.server.page_bytes())
            elif path == "/version":
                self._send(200, "text/plain; charset=utf-8", results_version(self.server.results_dir).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
        except Exception as e:  # noqa: BLE001 - e.g. the results vanished: say so, keep serving
            from .html import esc  # noqa: PLC0415 - plotly, see the module docstring

            logger.warning("dashboard request %s failed", path, exc_info=True)
            body = (f"<!DOCTYPE html><meta charset=utf-8><title>ser-search dashboard</title>"
                    f"<p>The dashboard could not be built: {esc(type(e).__name__)}: {esc(e)}</p>")
            self._send(500, "text/html; charset=utf-8", body.encode())

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("%s " + format, self.address_string(), *args)


def make_server(results_dir: str | Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *,
                title: str | None = None) -> DashboardServer:
    """A bound server (port 0: any free port; see .url); call serve_forever() on it."""
    return DashboardServer(results_dir, (host, port), title=title)


def serve_dashboard(results_dir: str | Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *,
                    title: str | None = None) -> None:
    """Serve the dashboard on host:port until interrupted; the page reloads itself when the
    sweep writes new results."""
    server = make_server(results_dir, port, host, title=title)
    print(f"dashboard of {results_dir} on {server.url} (reloads while the sweep writes; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
