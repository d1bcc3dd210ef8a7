"""The dashboard's Pareto view: for a sweep with several objectives (`[sweep] objectives =
["val_ua:max", "latency_ms:min"]`), accuracy against each cost it trades off.

A sweep on several objectives has no single best trial, so a leaderboard sorted on accuracy
hides the answer; this view draws it. One figure per cost objective (the first objective,
accuracy, on y; the cost on x, log-scaled for parameter and MAC counts): the completed search
trials no other completed trial beats on both axes are the front, joined by a step line (the
edge of what the sweep showed to be attainable); the rest are greyed. Trials that ASHA stopped
are drawn faint and never ranked: they stopped before their budget, so their accuracy is not
comparable with a finished trial's. Where a front configuration was re-run by `ser-search
confirm` (same config_key, in the sweep's lineage), its confirmed mean is drawn with error bars:
on accuracy the claims' design-aware 95 % interval (search.analysis.claims.unit_interval: seeds averaged
per test set, the interval over seeds with one test set and over test folds with several, with
Nadeau & Bengio's correction), on the cost the Student-t interval over the runs (the
leaderboard's mean_ci95). The front's own points are single seeds, chosen because they came out
well.

Dominance is search.definition.objectives's (NSGA-II's non-dominated sort); the hover also gives each trial's
rank over all the sweep's objectives, which a 2-D figure of a 3-objective sweep cannot show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from search.analysis.claims import ClaimsError, confirmed_runs, lineage, unit_interval
from search.analysis.claims.arms import CELL_KEYS, scope_text
from search.analysis.leaderboard import mean_ci95
from search.definition.objectives import Objective, non_dominated_ranks, objectives_from_record, pareto_mask
from search.results import LOSS_PARAM_COLUMNS, LOSS_PARAM_LABELS
from .data import CONFIRM_STAGE, DashboardData, SweepInfo, search_trials
from .figures import _style
from .html import Figures, esc, note
from search.analysis.claims.runs import per_fold_validation

LOG_SCALE = frozenset({"params", "macs"})  # counts spanning orders of magnitude
FRONT, DOMINATED, PRUNED, CONFIRMED = ("Pareto front", "dominated", "stopped by ASHA (not ranked)",
                                       "confirmed: mean ± 95 % CI")
FRONT_COLOR, DOMINATED_COLOR, PRUNED_COLOR, CONFIRMED_COLOR = "#1f77b4", "#b8bcc4", "#ff7f0e", "#222"


# ---------------------------------------------------------------------------- objectives


def sweep_objectives(info: SweepInfo) -> list[Objective]:
    """The sweep's objectives as it ran (sweep.json), else as its sweep file says (sweep.toml);
    [] for a sweep on one objective. ValueError for an objective that cannot be read."""
    for record in (info.record, {"sweep": info.spec}):
        if "objectives" in ((record.get("sweep") or {}).get("sweep") or {}):
            return objectives_from_record(record) or []
    return []


def _declared(info: SweepInfo) -> int:
    """How many objectives the sweep lists, read or not: a sweep that lists two gets the
    section even when one of them is malformed, so the page can say which."""
    for record in (info.record, {"sweep": info.spec}):
        v = ((record.get("sweep") or {}).get("sweep") or {}).get("objectives")
        if v is not None:
            return len(v) if isinstance(v, list) else 1
    return 0


def has_objectives(data: DashboardData) -> bool:
    """Whether the page gets a Pareto section: some sweep has two objectives or more."""
    return any(_declared(info) >= 2 for info in data.sweeps.values())


# ---------------------------------------------------------------------------- front


@dataclass(frozen=True)
class ParetoPanel:
    """What one figure draws: accuracy `y` against the cost `x` over one sweep's search trials.

    `points`: the completed trials with both values, `front` True for the non-dominated ones
    (on y and x) and `rank` their non-dominated rank over all the sweep's objectives (-1 where
    one is not measured); `pruned`: the ASHA-stopped trials with both values; `confirmed`: per
    front configuration with confirmation runs (and per cell, should its runs span several),
    mean, 95 % half-width and n of y (n units: seeds on one test set, or test folds; `y_unit`,
    `y_folds`, `y_seeds`, `scope`) and of x (n runs);
    `unmeasured`: completed trials lacking y or x."""

    sweep: str
    y: Objective
    x: Objective
    points: pd.DataFrame
    pruned: pd.DataFrame
    confirmed: pd.DataFrame
    unmeasured: int


CONFIRMED_COLUMNS = ("config_key", "trial_id", "y_mean", "y_ci95", "y_n", "x_mean", "x_ci95", "x_n", "y_unit",
                     "y_folds", "y_seeds", "scope", "selection_exposed")


def _values(df: pd.DataFrame, objectives: list[Objective]) -> np.ndarray:
    cols = [df[o.name].astype("float64").to_numpy() if o.name in df.columns else np.full(len(df), np.nan)
            for o in objectives]
    return np.column_stack(cols) if cols else np.zeros((len(df), 0))


def _confirmations(trials: pd.DataFrame, sweep: str, keys: list[str]) -> pd.DataFrame:
    """The completed confirmation runs of the given configurations in `sweep`'s lineage (the
    claims' own rule: a recorded source_sweep, else `<sweep>-confirm`)."""
    if trials.empty or "config_key" not in trials.columns:
        return trials.iloc[0:0]
    done = trials[(trials["stage"] == CONFIRM_STAGE) & (trials["status"] == "completed")
                  & trials["config_key"].isin(keys)]
    source = done["source_sweep"] if "source_sweep" in done.columns else pd.Series(None, index=done.index)
    mine = [lineage(s, st, src) == sweep for s, st, src in zip(done["sweep"], done["stage"], source)]
    return done[np.asarray(mine, dtype=bool)] if len(done) else done


def _by_configuration(runs: pd.DataFrame) -> dict[tuple[str, tuple[Any, ...]], tuple[pd.DataFrame, pd.DataFrame]]:
    """(recorded config_key, claims cell) -> (its confirmation rows, their rows of the claims'
    confirmed_runs: one per run and test set). A configuration's runs of two cells (rows from
    before prepared_id was recorded beside rows after) are two entries, never pooled."""
    if runs.empty:
        return {}
    try:
        units = confirmed_runs(runs.assign(_recorded_key=runs["config_key"], _row=np.arange(len(runs))))
    except ClaimsError:
        return {}
    out = {}
    for key, u in units.groupby(["_recorded_key", *CELL_KEYS], sort=False, dropna=False):
        mine = runs.iloc[sorted(set(u["_row"].astype(int)))]
        # one configuration: the recorded key (the claims' key leaves the fold design out)
        out[(key[0], tuple(key[1:]))] = (mine, per_fold_validation(u.assign(config_key=key[0])))
    return out


def _design_y(units: pd.DataFrame, metric: str) -> dict[str, Any]:
    """Mean, half-width and design of `metric` over one configuration's units (unit_interval)."""
    none = {"y_mean": math.nan, "y_ci95": math.nan, "y_n": 0, "y_unit": None, "y_folds": 0, "y_seeds": 0,
            "scope": "", "selection_exposed": False}
    if metric not in units.columns:
        return none
    res = unit_interval(units, metric)
    if res.n_pairs == 0:
        return none
    measured = units.dropna(subset=[metric])
    half = (res.ci_high - res.ci_low) / 2 if math.isfinite(res.ci_low) and math.isfinite(res.ci_high) else math.nan
    return {"y_mean": res.mean_diff, "y_ci95": half, "y_n": res.n_units, "y_unit": res.unit, "y_folds": res.n_folds,
            "y_seeds": res.n_seeds, "scope": scope_text(res, sorted(measured["test_unit"].astype(str).unique())),
            "selection_exposed": bool(measured["selection_exposed"].fillna(False).astype(bool).any())}


def pareto_panel(trials: pd.DataFrame, sweep: str, y: Objective, x: Objective,
                 objectives: list[Objective] | None = None) -> ParetoPanel:
    """The front of `sweep`'s completed search trials on (y, x) and the confirmations of its
    configurations among `trials` (every sweep's rows: confirmations live in their own sweep).
    `objectives`: all the sweep's objectives, for the rank in the hover (default: y and x)."""
    objectives = objectives or [y, x]
    mine = search_trials(trials[trials["sweep"] == sweep])
    measured = ~np.isnan(_values(mine, [y, x])).any(axis=1)
    completed = (mine["status"] == "completed").to_numpy()
    points = mine[completed & measured].copy()
    points["front"] = pareto_mask(_values(points, [y, x]), [y.sense, x.sense])
    everything = _values(points, objectives)
    ranks = non_dominated_ranks(everything, [o.sense for o in objectives])
    points["rank"] = np.where(np.isnan(everything).any(axis=1), -1, ranks)
    pruned = mine[(mine["status"] == "pruned").to_numpy() & measured]
    front = points[points["front"]]
    keys = list(dict.fromkeys(front["config_key"].dropna())) if "config_key" in front.columns else []
    runs = _confirmations(trials, sweep, keys)
    rows = []
    for (key, _), (g, units) in _by_configuration(runs).items():
        first = front[front["config_key"] == key].iloc[0]
        y_row = _design_y(units, y.name)
        x_mean, x_half, x_n = mean_ci95(g[x.name]) if x.name in g.columns else (math.nan, math.nan, 0)
        if x_n == 0:  # the cost was not measured again: the searched trial's own
            x_mean, x_half = float(first[x.name]), math.nan
        rows.append({"config_key": key, "trial_id": first["trial_id"], **y_row, "x_mean": x_mean, "x_ci95": x_half,
                     "x_n": x_n})
    confirmed = pd.DataFrame(rows, columns=list(CONFIRMED_COLUMNS))
    confirmed = confirmed[confirmed["y_n"] > 0].reset_index(drop=True)
    return ParetoPanel(sweep, y, x, points.reset_index(drop=True), pruned.reset_index(drop=True), confirmed,
                       int((completed & ~measured).sum()))


# ---------------------------------------------------------------------------- figure


def _number(v: Any) -> str:
    """UA and milliseconds to three decimals, parameter and MAC counts in full."""
    x = float(v)
    if abs(x) >= 1000 and x.is_integer():
        return f"{int(x):,}"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.4g}"


def _config(r: pd.Series) -> str:
    """A trial's configuration in one hover line: what defines it beyond family and frontend."""
    parts = [f"{LOSS_PARAM_LABELS.get(c, c)} {float(r[c]):.3g}" for c in ("lr", *LOSS_PARAM_COLUMNS)
             if c in r.index and pd.notna(r[c])]
    if "batch_size" in r.index and pd.notna(r["batch_size"]):
        parts.append(f"batch {int(r['batch_size'])}")
    return ", ".join(parts)


def _hover(r: pd.Series, panel: ParetoPanel, n_objectives: int) -> str:
    what = " · ".join(esc(r[c]) for c in ("loss_family", "frontend", "model") if c in r.index and pd.notna(r[c]))
    lines = [f"trial {esc(r['trial_id'])} ({esc(r['status'])}) · sweep {esc(panel.sweep)}", what, esc(_config(r)),
             f"{esc(panel.y.name)} {_number(r[panel.y.name])} · {esc(panel.x.name)} {_number(r[panel.x.name])}"]
    if "rank" in r.index and n_objectives > 2:
        lines.append(f"non-dominated rank over all {n_objectives} objectives: "
                     + ("not measured on all" if r["rank"] < 0 else str(int(r["rank"]))))
    if "config_key" in r.index and pd.notna(r["config_key"]):
        lines.append(f"config {esc(r['config_key'])}")
    return "<br>".join(line for line in lines if line)


def _axis_title(o: Objective) -> str:
    return f"{esc(o.name)} ({'higher' if o.sense == 'max' else 'lower'} is better)"


def pareto_figure(panel: ParetoPanel, n_objectives: int = 2) -> go.Figure:
    """Accuracy (y) against one cost (x): the front as a step line, dominated trials grey,
    ASHA-stopped ones faint, confirmed front configurations as mean ± 95 % CI. Every trace
    carries its trials' ids in `customdata`."""
    p, x, y = panel.points, panel.x.name, panel.y.name
    fig = go.Figure()
    if len(panel.pruned):
        g = panel.pruned
        fig.add_trace(go.Scatter(
            x=g[x].astype(float), y=g[y].astype(float), mode="markers", name=PRUNED,
            marker=dict(symbol="x-thin", size=8, color=PRUNED_COLOR, opacity=0.35, line=dict(width=1.5,
                                                                                           color=PRUNED_COLOR)),
            customdata=[esc(t) for t in g["trial_id"]], text=[_hover(r, panel, n_objectives) for _, r in g.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    dominated = p[~p["front"]]
    if len(dominated):
        fig.add_trace(go.Scatter(
            x=dominated[x].astype(float), y=dominated[y].astype(float), mode="markers", name=DOMINATED,
            marker=dict(size=8, color=DOMINATED_COLOR), customdata=[esc(t) for t in dominated["trial_id"]],
            text=[_hover(r, panel, n_objectives) for _, r in dominated.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    front = p[p["front"]].sort_values([x, y], kind="stable")
    if len(front):
        # the attainment edge: from each front point along x to the next, then along y
        shape = "hv" if panel.x.sense == "min" else "vh"
        fig.add_trace(go.Scatter(
            x=front[x].astype(float), y=front[y].astype(float), mode="lines+markers", name=FRONT,
            line=dict(shape=shape, color=FRONT_COLOR, width=2), marker=dict(size=10, color=FRONT_COLOR),
            customdata=[esc(t) for t in front["trial_id"]],
            text=[_hover(r, panel, n_objectives) for _, r in front.iterrows()],
            hovertemplate="%{text}<extra></extra>"))
    c = panel.confirmed
    if len(c):
        y_half = [0.0 if math.isnan(v) else float(v) for v in c["y_ci95"]]
        x_half = [0.0 if math.isnan(v) else float(v) for v in c["x_ci95"]]
        hover = [f"config {esc(r['config_key'])} (front trial {esc(r['trial_id'])}), confirmed over "
                 f"{int(r['y_seeds'])} seed(s) × {int(r['y_folds'])} test fold(s)<br>{esc(y)} {_number(r['y_mean'])}"
                 + (f" ± {_number(r['y_ci95'])} over {int(r['y_n'])} {esc(r['y_unit'])}s" if not math.isnan(r["y_ci95"])
                    else " (no interval: fewer than two units, or no spread)")
                 + f" · {esc(x)} {_number(r['x_mean'])}"
                 + (f" ± {_number(r['x_ci95'])}" if not math.isnan(r["x_ci95"]) else "")
                 + (f"<br>scope: {esc(r['scope'])}" if r["scope"] else "")
                 + ("<br>NOT NESTED: a test fold was a validation fold of the selection" if r["selection_exposed"]
                    else "")
                 for _, r in c.iterrows()]
        fig.add_trace(go.Scatter(
            x=c["x_mean"].astype(float), y=c["y_mean"].astype(float), mode="markers", name=CONFIRMED,
            marker=dict(symbol="diamond", size=12, color=CONFIRMED_COLOR),
            error_y=dict(type="data", array=y_half, thickness=2, width=8, color=CONFIRMED_COLOR),
            error_x=dict(type="data", array=x_half, thickness=1.5, width=6, color=CONFIRMED_COLOR,
                         visible=any(h > 0 for h in x_half)),
            customdata=[esc(t) for t in c["trial_id"]], text=hover, hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(title_text=_axis_title(panel.x), type="log" if x in LOG_SCALE else "linear")
    fig.update_yaxes(title_text=_axis_title(panel.y))
    fig.update_layout(title=dict(text=f"{esc(y)} against {esc(x)}"), legend=dict(orientation="h", y=-0.2))
    return _style(fig, 440)


# ---------------------------------------------------------------------------- section


def _sweep_part(data: DashboardData, name: str, info: SweepInfo, f: Figures) -> str:
    head = f"<h3>{esc(name)}</h3>"
    try:
        objectives = sweep_objectives(info)
    except ValueError as e:
        return head + note(f"The sweep's objectives cannot be read: {e}", "warn")
    if len(objectives) < 2:
        return head + note("Fewer than two objectives could be read, so there is nothing to trade off.", "warn")
    accuracy, costs = objectives[0], objectives[1:]
    out = [head, note(f"Objectives: {', '.join(map(str, objectives))}. One figure per cost against "
                      f"{accuracy.name}, the first objective.")]
    for cost in costs:
        missing = [o.name for o in (accuracy, cost) if o.name not in data.trials.columns]
        if missing:
            out.append(note(f"{cost.name}: no trial records {', '.join(missing)}, so no front against it.", "warn"))
            continue
        panel = pareto_panel(data.trials, name, accuracy, cost, objectives)
        if panel.points.empty:
            out.append(note(f"{cost.name}: no completed search trial has both {accuracy.name} and {cost.name} "
                            "yet, so no front.", "empty"))
            continue
        n_front = int(panel.points["front"].sum())
        unmeasured = (f" {panel.unmeasured} completed trial(s) without {accuracy.name} or {cost.name} are not "
                      "drawn." if panel.unmeasured else "")
        confirmed = (f" {len(panel.confirmed)} front configuration(s) confirmed: black diamonds with the 95 % "
                     "interval of the design on accuracy (over seeds with one test set, over test folds with "
                     "several) and over the runs on the cost." if len(panel.confirmed) else
                     " No front configuration has confirmation runs yet (`ser-search confirm`), so no intervals: "
                     "each point is one seed.")
        out.append(f.div(pareto_figure(panel, len(objectives)), (
            f"{n_front} of {len(panel.points)} completed search trial(s) on the front: no other completed trial is "
            f"at least as good on both {accuracy.name} and {cost.name} and better on one. Grey: dominated. Faint "
            f"crosses: trials ASHA stopped early, not ranked (their accuracy is from fewer epochs)."
            + unmeasured + confirmed + " Hover a point for its configuration.")))
    return "".join(out)


def pareto_section(data: DashboardData, f: Figures) -> str:
    """One part per sweep with several objectives; report.py leaves the section out of a page
    where no sweep has them (has_objectives)."""
    parts = [_sweep_part(data, name, info, f) for name, info in data.sweeps.items() if _declared(info) >= 2]
    return "".join(parts)
