"""`ser-search dashboard`: a sweep to look at, not to read.

One self-contained HTML page per results directory (plotly.js inlined, opens offline), written
to a file or served on localhost while a sweep runs. The modules, each importing only those
below it:

    cli        the `ser-search dashboard` sub-command (standard library only until it runs)
    serve      the local server that rebuilds the page when the results change
    report     the page: every section, built and written
    claims     the claims view (rows, figure, section)
    pareto     the Pareto view of sweeps with several objectives (front, figure, section)
    figures    the other plotly figures
    data       what the results directory holds, as tables and numbers
    intervals  the confirmed groups, their intervals and pairwise differences (the claims' rules)
    embed      embeddings of a trial's test split from its checkpoint (torch)
    html       escaping, figure containers, tables, the page template

The names below are loaded when first used: `import search.dashboard.cli` (what `ser-search`
does to register the command) must not import torch, plotly or pandas.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_dashboard": "report",
    "write_dashboard": "report",
    "DashboardServer": "serve",
    "DEFAULT_PORT": "serve",
    "make_server": "serve",
    "results_version": "serve",
    "serve_dashboard": "serve",
    "add_dashboard_command": "cli",
}
__all__ = ["DEFAULT_PORT", "DashboardServer", "add_dashboard_command", "build_dashboard", "make_server",
           "results_version", "serve_dashboard", "write_dashboard"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
