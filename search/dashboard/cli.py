"""The `ser-search dashboard` sub-command, the top of the dashboard's imports (cli -> serve,
report -> views -> figures, data). Building the page needs torch (for the embedding view) and
plotly, and `ser-search --help` must not pay for importing them: they are imported only when
the command runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .serve import DEFAULT_PORT, serve_dashboard  # the standard library only


def add_dashboard_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `ser-search dashboard RESULTS_DIR (--out FILE | --serve [--port N])` on the
    sub-parsers of the `ser-search` parser; returns the new sub-parser."""
    d = subparsers.add_parser("dashboard", help="an HTML dashboard of a results directory (file or local server)")
    d.add_argument("results_dir", help="results directory (all sweeps) or one sweep's directory")
    mode = d.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="write one self-contained HTML file (opens offline)")
    mode.add_argument("--serve", action="store_true",
                      help="serve on localhost; the page refreshes while a sweep runs")
    d.add_argument("--port", type=int, help=f"port for --serve (default {DEFAULT_PORT})")
    d.add_argument("--host", default="127.0.0.1", help="address for --serve (default 127.0.0.1, this machine only)")
    d.add_argument("--title", help="page title (default: the results directory's name)")

    def run(args: argparse.Namespace) -> int:
        if not args.serve and (args.port is not None or args.host != "127.0.0.1"):
            d.error("--port and --host apply to --serve only")
        if args.port is not None and not 0 <= args.port <= 65535:
            d.error(f"--port {args.port} is not a TCP port (0-65535)")
        from .report import write_dashboard  # noqa: PLC0415 - heavy, see the docstring

        if args.serve:
            port = DEFAULT_PORT if args.port is None else args.port
            try:
                serve_dashboard(args.results_dir, port, args.host, title=args.title)
            except KeyboardInterrupt:
                pass
            except OSError as e:  # port taken, address not on this machine, ...
                print(f"ser-search dashboard: error: cannot serve on {args.host}:{port}: {e}", file=sys.stderr)
                return 2
            return 0
        out = write_dashboard(args.results_dir, args.out, title=args.title)
        print(f"dashboard written to {out}")
        return 0

    d.set_defaults(func=run)
    return d
