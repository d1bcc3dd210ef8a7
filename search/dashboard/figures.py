"""The dashboard's plotly figures, one function per view.

Every string that comes from a results file (trial ids, family names, sweep names, labels) is
HTML-escaped before it reaches plotly: plotly.js renders a subset of HTML in names, ticks and
hover text (links included), so a hostile sweep name must arrive as inert text. plotly.js turns
the entities back into the characters for display.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ser_core.losses import loss_names

from search.results import LOSS_PARAM_LABELS

from .data import Importance
from .embed import EmbeddingView
from .html import esc
from .intervals import group_label

STATUS_COLORS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "error": "#d62728", "running": "#1f77b4"}
_FAMILY_PALETTE = qualitative.D3
_EMOTION_PALETTE = qualitative.Plotly
_TEMPLATE = "plotly_white"


def family_color(family: Any) -> str:
    order = loss_names()
    i = order.index(family) if family in order else len(order) + sum(map(ord, str(family)))
    return _FAMILY_PALETTE[i % len(_FAMILY_PALETTE)]


def _num(v: Any) -> float:
    return math.nan if v is None or v is pd.NA or pd.isna(v) else float(v)


def _fmt(v: Any, digits: int = 3) -> str:
    x = _num(v)
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _style(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(template=_TEMPLATE, height=height, margin=dict(l=60, r=20, t=50, b=50),
                      hoverlabel=dict(align="left"))
    return fig


# ---------------------------------------------------------------------------- sweep facts


def status_figure(status: pd.DataFrame) -> go.Figure:
    """Trials by status per sweep, stacked."""
    counts = status.groupby(["sweep", "status"]).size().unstack(fill_value=0)
    fig = go.Figure()
    for st, color in STATUS_COLORS.items():
        if st in counts.columns:
            fig.add_trace(go.Bar(y=[esc(s) for s in counts.index], x=counts[st], name=st, orientation="h",
                                 marker_color=color, hovertemplate=f"%{{y}}: %{{x}} {st}<extra></extra>"))
    fig.update_layout(barmode="stack", title=dict(text="trials by status"), legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="trials")
    return _style(fig, max(220, 120 + 40 * len(counts)))


# ---------------------------------------------------------------------------- distributions

CONFIRMED_TRACE = "confirmed: mean ± 95 % CI"


def _design_text(r: pd.Series, metric: str) -> str:
    """What a group's interval is over, in words: '5 folds (3 seeds each); 5 test folds (corrected t)'."""
    n, unit = int(r[f"{metric}_n"]), r.get(f"{metric}_unit")
    if unit == "fold":
        what = f"{n} test folds × {int(r[f'{metric}_seeds'])} seed(s), seeds averaged per fold"
    else:
        what = f"{n} seed(s) on one test set"
    scope = r.get("scope") if metric == "test_ua" else None
    exposed = metric == "test_ua" and bool(r.get("selection_exposed"))
    return (what + (f"; {esc(scope)}" if isinstance(scope, str) and scope else "")
            + ("; NOT NESTED: a test fold was a validation fold of the selection" if exposed else ""))


def _categories(labels: list[str], groups: Sequence[tuple[str, Any, Any]]) -> list[str]:
    """The x categories: each loss family x frontend box, then the confirmed groups of that
    family and frontend whose label names their cell (several cells: one tick each)."""
    order = list(labels)
    for label, family, frontend in groups:
        if label in order:
            continue
        base = esc(group_label(family, frontend))
        at = order.index(base) + 1 if base in order else len(order)
        while at < len(order) and order[at].startswith(base + " ["):
            at += 1
        order.insert(at, label)
    return order


def distribution_figure(trials: pd.DataFrame, intervals: pd.DataFrame) -> go.Figure:
    """Val and test UA of completed trials per loss family x frontend (box + every trial as a
    point), with each confirmed group's mean ± 95 % CI (search.dashboard.intervals.confirmed_intervals:
    the claims' configuration, cell and design) drawn over them."""
    done = trials[trials["status"] == "completed"]
    groups = sorted(done.groupby(["loss_family", "frontend"], dropna=False),
                    key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    labels = [esc(group_label(*k)) for k, _ in groups]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("validation UA (selection)", "test UA (report)"))
    for col, metric in enumerate(("val_ua", "test_ua"), start=1):
        for ((family, _), g), label in zip(groups, labels):
            g = g[g[metric].notna()]
            if g.empty:
                continue
            text = [f"{esc(s)} · {esc(t)}<br>stage {esc(st)}"
                    for s, t, st in zip(g["sweep"], g["trial_id"], g["stage"])]
            color = family_color(family)
            fig.add_trace(go.Box(x=[label] * len(g), y=g[metric].astype(float), name=label, boxpoints="all",
                                 jitter=0.45, pointpos=0, marker=dict(color=color, size=6, opacity=0.8),
                                 line=dict(color=color), fillcolor="rgba(0,0,0,0.03)", text=text,
                                 hovertemplate=f"%{{text}}<br>{metric} %{{y:.3f}}<extra></extra>",
                                 showlegend=False), row=1, col=col)
        if len(intervals):
            shown = intervals[intervals[f"{metric}_n"] > 0]
            ci = [0.0 if math.isnan(_num(c)) else float(c) for c in shown[f"{metric}_ci95"]]
            hover = [f"{esc(r['group'])}: {_fmt(r[f'{metric}_mean'])} ± {_fmt(r[f'{metric}_ci95'])} over "
                     f"{_design_text(r, metric)}" for _, r in shown.iterrows()]
            fig.add_trace(go.Scatter(x=[esc(g) for g in shown["group"]], y=shown[f"{metric}_mean"].astype(float),
                                     error_y=dict(type="data", array=ci, thickness=2, width=10, color="#222"),
                                     mode="markers", marker=dict(symbol="diamond", size=12, color="#222"),
                                     name=CONFIRMED_TRACE, legendgroup="ci",
                                     showlegend=col == 1, text=hover, hovertemplate="%{text}<extra></extra>"),
                          row=1, col=col)
    confirmed = ([(esc(r["group"]), r["loss_family"], r["frontend"]) for _, r in intervals.iterrows()]
                 if len(intervals) else [])
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=_categories(labels, confirmed))
    fig.update_yaxes(title_text="UA", row=1, col=1)
    fig.update_layout(legend=dict(orientation="h", y=-0.18))
    return _style(fig, 460)


# ---------------------------------------------------------------------------- pairwise matrix


def _pair_verdict(r: pd.Series) -> str:
    lo, hi = _num(r["ci_low"]), _num(r["ci_high"])
    if math.isnan(_num(r["diff"])):
        return "nothing to pair: the two share no (seed, test set) with this metric"
    if math.isnan(lo) or math.isnan(hi):
        return "undecided: no interval (fewer than two units, or no spread)"
    if lo > 0:
        return "the row is ahead: the paired 95 % interval lies above 0"
    if hi < 0:
        return "the row is behind: the paired 95 % interval lies below 0"
    return "undecided: the paired 95 % interval contains 0"


def _pair_hover(r: pd.Series, name: str) -> str:
    lines = [f"{esc(r['row'])} − {esc(r['col'])}: {_num(r['diff']):+.3f} {name} (paired)"]
    n = int(r["n_pairs"]) if not pd.isna(r["n_pairs"]) else 0
    if n:
        interval = (f"95 % interval [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
                    if not (math.isnan(_num(r["ci_low"])) or math.isnan(_num(r["ci_high"]))) else "no 95 % interval")
        lines.append(f"{interval} over {n} paired run(s) = {int(r['n_folds'])} test fold(s) × "
                     f"{int(r['n_seeds'])} seed(s); the units are {esc(r['unit'])}s")
    lines.append(_pair_verdict(r))
    if isinstance(r["scope"], str) and r["scope"]:
        lines.append(f"scope: {esc(r['scope'])}")
    note = r["note"] if isinstance(r["note"], str) else ""
    if bool(r["selection_exposed"]) and "NOT NESTED" not in note:
        lines.append("NOT NESTED: a paired test fold was a validation fold of the selection")
    if note:
        lines.append(esc(note))
    lines.append(f"cell: {esc(r['cell'])}")
    return "<br>".join(lines)


SEPARATE_MARK, NO_INTERVAL_MARK = " *", " †"
NOT_COMPARED = ("not compared: different cells (sweep lineage, protocol, model or prepared corpus); a pair never "
                "crosses them, their runs share nothing but seed numbers")


def pairwise_cell_text(diff: float, ci_low: float, ci_high: float) -> str:
    """A cell's text: the paired difference, '*' where its 95 % interval excludes 0, '†' where
    there is no interval; '–' where the two share no unit to pair."""
    d, lo, hi = _num(diff), _num(ci_low), _num(ci_high)
    if math.isnan(d):
        return "–"
    if math.isnan(lo) or math.isnan(hi):
        return f"{d:+.3f}{NO_INTERVAL_MARK}"
    return f"{d:+.3f}" + (SEPARATE_MARK if lo > 0 or hi < 0 else "")


def pairwise_figure(groups: Sequence[str], pairs: dict[str, pd.DataFrame],
                    cells: dict[str, str] | None = None) -> go.Figure:
    """One heatmap per metric (metric -> pairwise_differences table) over the groups: cell
    (row, column) is the paired difference row − column (the claims row 'row vs column'), on
    one diverging colour scale centred at 0 (blue: the row is ahead), marked where its interval
    excludes 0. Groups of different cells (`cells`: group -> cell, else read from the pairs)
    are left blank, with a hover that says they are not compared."""
    names = {"val_ua": "validation UA", "test_ua": "test UA"}
    labels = [esc(g) for g in groups]
    index = {g: i for i, g in enumerate(groups)}
    cell_of = dict(cells or {})
    for p in pairs.values():
        for g, c in zip(p["row"], p["cell"]):
            cell_of.setdefault(g, c)
    fig = make_subplots(rows=1, cols=len(pairs), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[f"{names.get(m, m)}: row − column (paired)" for m in pairs])
    diffs = [float(np.nanmax(np.abs(p["diff"].astype(float)))) for p in pairs.values() if p["diff"].notna().any()]
    top = max(diffs + [1e-3])
    for col, (metric, p) in enumerate(pairs.items(), start=1):
        n = len(groups)
        z = np.full((n, n), np.nan)
        text = [[""] * n for _ in range(n)]
        hover = [[""] * n for _ in range(n)]
        for i, a in enumerate(groups):
            for j, b in enumerate(groups):
                if i != j:
                    known = a in cell_of and b in cell_of
                    why = (NOT_COMPARED if known and cell_of[a] != cell_of[b] else
                           f"no paired comparison: one has no confirmed {names.get(metric, metric)}" if known else
                           f"not compared: different cells, or one has no confirmed {names.get(metric, metric)}")
                    hover[i][j] = f"{esc(a)} × {esc(b)}: {why}"
        for _, r in p.iterrows():
            i, j = index[r["row"]], index[r["col"]]
            z[i, j] = r["diff"]
            text[i][j] = pairwise_cell_text(r["diff"], r["ci_low"], r["ci_high"])
            hover[i][j] = _pair_hover(r, names.get(metric, metric))
        fig.add_trace(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}", customdata=hover,
                                 hovertemplate="%{customdata}<extra></extra>", coloraxis="coloraxis",
                                 xgap=2, ygap=2, name=names.get(metric, metric), meta=metric),
                      row=1, col=col)
        fig.update_xaxes(tickangle=-35, row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(coloraxis=dict(colorscale="RdBu", cmin=-top, cmax=top, cmid=0,
                                     colorbar=dict(title=dict(text="row − column"))))
    return _style(fig, max(340, 170 + 44 * len(groups)))


# ---------------------------------------------------------------------------- learning curves


def learning_curves_figure(epochs: pd.DataFrame, status: pd.DataFrame, rungs: Sequence[int],
                           max_epochs: int | None) -> go.Figure:
    """Val UA per epoch of every trial, coloured by how it ended; a cross where ASHA stopped a
    trial and dotted lines at ASHA's rungs (where it may stop one)."""
    info = status.set_index("trial_id")
    fig = go.Figure()
    legend_done: set[str] = set()
    stops: dict[str, list[tuple[int, float, str]]] = {"pruned": [], "error": []}
    for tid, g in epochs.sort_values(["trial_id", "epoch"]).groupby("trial_id", sort=False):
        row = info.loc[tid] if tid in info.index else None
        st = str(row["status"]) if row is not None else "running"
        what = ("" if row is None or pd.isna(row["loss_family"])
                else f"{esc(row['loss_family'])} · {esc(row['frontend'])}")
        text = f"trial {esc(tid)} ({esc(st)})<br>{what}"
        fig.add_trace(go.Scatter(x=g["epoch"].astype(int), y=g["val_ua"].astype(float), mode="lines+markers",
                                 line=dict(color=STATUS_COLORS.get(st, "#7f7f7f"), width=1.5), marker=dict(size=5),
                                 opacity=0.85, name=esc(st), legendgroup=st, showlegend=st not in legend_done,
                                 text=[text] * len(g),
                                 hovertemplate="%{text}<br>epoch %{x}: val UA %{y:.3f}<extra></extra>"))
        legend_done.add(st)
        if st in stops and len(g):
            last = g.iloc[-1]
            stops[st].append((int(last["epoch"]), float(last["val_ua"]), text))
    for st, label, symbol in (("pruned", "stopped by ASHA", "x"), ("error", "failed", "circle-x-open")):
        if stops[st]:
            x, y, t = zip(*stops[st])
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=label, text=t,
                                     marker=dict(symbol=symbol, size=12, color="#111", line=dict(width=1)),
                                     hovertemplate="%{text}<br>" + label + " after epoch %{x}<extra></extra>"))
    for r in rungs:
        fig.add_vline(x=r, line=dict(dash="dot", color="#999"), annotation_text=f"ASHA rung {r}",
                      annotation_position="top")
    top = max_epochs or (int(epochs["epoch"].max()) if len(epochs) else 1)
    fig.update_xaxes(title_text="epoch", range=[0.7, top + 0.3], dtick=1 if top <= 30 else None)
    fig.update_yaxes(title_text="validation UA")
    return _style(fig, 420)


# ---------------------------------------------------------------------------- parallel coordinates


def _categorical(values: pd.Series, label: str) -> dict[str, Any]:
    cats = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(cats)}
    return dict(label=label, values=[index[str(v)] for v in values], tickvals=list(range(len(cats))),
                ticktext=[esc(c) for c in cats], range=[-0.3, max(len(cats) - 1, 0) + 0.3])


def _log_axis(values: pd.Series, label: str) -> dict[str, Any]:
    """log10 of a positive parameter; trials without it (other loss families) get their own
    'n/a' tick below the range instead of being dropped or given a made-up value."""
    x = np.log10(values.astype(float).where(values.astype(float) > 0))
    have = x.dropna()
    lo, hi = (float(have.min()), float(have.max())) if len(have) else (0.0, 0.0)
    span = max(hi - lo, 0.5)
    na = lo - 0.35 * span
    ticks = sorted({math.floor(lo), *range(math.ceil(lo), math.floor(hi) + 1)} | {math.ceil(hi)}) if len(have) else []
    tickvals = ([na] if x.isna().any() else []) + [t for t in ticks if na < t]
    ticktext = (["n/a"] if x.isna().any() else []) + [f"1e{t}" for t in ticks if na < t]
    return dict(label=label, values=x.fillna(na).tolist(), tickvals=tickvals, ticktext=ticktext,
                range=[na - 0.05 * span if x.isna().any() else lo - 0.05 * span, hi + 0.05 * span])


def parallel_figure(trials: pd.DataFrame) -> go.Figure:
    """λ, α, lr, frontend, loss family → val UA, one line per trial with a validation score."""
    t = trials[trials["val_ua"].notna()].reset_index(drop=True)
    dims = []
    if t["center_lambda"].notna().any():
        dims.append(_log_axis(t["center_lambda"], LOSS_PARAM_LABELS["center_lambda"]))
    if t["center_lr"].notna().any():
        dims.append(_log_axis(t["center_lr"], LOSS_PARAM_LABELS["center_lr"]))
    dims += [_log_axis(t["lr"], "learning rate"), _categorical(t["frontend"], "frontend"),
             _categorical(t["loss_family"], "loss family"), _categorical(t["status"], "status"),
             dict(label="val UA", values=t["val_ua"].astype(float).tolist())]
    fig = go.Figure(go.Parcoords(
        line=dict(color=t["val_ua"].astype(float), colorscale="Viridis", showscale=True,
                  colorbar=dict(title=dict(text="val UA"))),
        dimensions=dims, labelangle=0, unselected=dict(line=dict(opacity=0.1))))
    fig = _style(fig, 440)
    fig.update_layout(margin=dict(l=80, r=80, t=60, b=30))
    return fig


# ---------------------------------------------------------------------------- importance


def importance_figure(results: Sequence[Importance]) -> go.Figure:
    fig = go.Figure()
    for imp in results:
        names = list(imp.values)[::-1]
        fig.add_trace(go.Bar(x=[imp.values[n] for n in names], y=[esc(n) for n in names], orientation="h",
                             name=esc(f"{imp.scope} ({imp.n_trials} trials)"),
                             hovertemplate="%{y}: %{x:.3f}<extra>" + esc(imp.scope) + "</extra>"))
    fig.update_layout(barmode="group", showlegend=True, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="fANOVA importance (normalised)", range=[0, 1])
    n = sum(len(i.values) for i in results)
    return _style(fig, max(260, 60 + 28 * n))


# ---------------------------------------------------------------------------- confusion


def _ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def confusion_figure(cells: pd.DataFrame) -> go.Figure:
    """Row-normalised confusion matrices (rows: true emotion, each summing to 1 = recall) of the
    validation and test splits, counts in the hover; a class absent from a split stays blank."""
    splits = [s for s in ("val", "test") if (cells["split"] == s).any()]
    fig = make_subplots(rows=1, cols=len(splits), horizontal_spacing=0.12,
                        subplot_titles=[{"val": "validation", "test": "test"}[s] for s in splits])
    for col, split in enumerate(splits, start=1):
        c = cells[cells["split"] == split]
        labels = _ordered([*c["true_label"], *c["pred_label"]])
        m = (c.pivot_table(index="true_label", columns="pred_label", values="count", aggfunc="sum")
             .reindex(index=labels, columns=labels).fillna(0).to_numpy(dtype=float))
        totals = m.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(totals > 0, m / totals, np.nan)
        text = [["" if np.isnan(v) else f"{v:.0%}" for v in row] for row in norm]
        hover = [[f"true {esc(t)} → predicted {esc(p)}<br>{int(m[i, j])} of {int(totals[i, 0])} clips"
                  for j, p in enumerate(labels)] for i, t in enumerate(labels)]
        names = [esc(x) for x in labels]
        fig.add_trace(go.Heatmap(z=norm, x=names, y=names, text=text, texttemplate="%{text}", customdata=hover,
                                 hovertemplate="%{customdata}<extra></extra>", colorscale="Blues", zmin=0, zmax=1,
                                 showscale=col == len(splits), colorbar=dict(title=dict(text="share of row"))),
                      row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col, tickangle=-40)
        fig.update_yaxes(title_text="true", autorange="reversed", row=1, col=col)
    return _style(fig, 470)


# ---------------------------------------------------------------------------- embeddings


def embedding_figure(panels: Sequence[tuple[str, EmbeddingView]]) -> go.Figure:
    """PCA of the test-split embeddings, one panel per trial, colours by emotion (same colour
    for the same emotion in every panel)."""
    present = {e for _, v in panels for e in v.labels}
    emotions = [e for e in _ordered([c for _, v in panels for c in v.classes]) if e in present]
    colors = {e: _EMOTION_PALETTE[i % len(_EMOTION_PALETTE)] for i, e in enumerate(emotions)}
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.06, subplot_titles=[t for t, _ in panels])
    for col, (_, view) in enumerate(panels, start=1):
        labels = np.asarray(view.labels)
        for e in emotions:
            pts = view.points[labels == e]
            if not len(pts):
                continue
            fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", name=esc(e), legendgroup=e,
                                       showlegend=col == 1, marker=dict(color=colors[e], size=6, opacity=0.8),
                                       hovertemplate=esc(e) + "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"PC1 ({view.explained[0]:.0%} of variance)", zeroline=False, row=1, col=col)
        fig.update_yaxes(title_text=f"PC2 ({view.explained[1]:.0%})", zeroline=False, row=1, col=col)
    fig.update_layout(legend=dict(title=dict(text="emotion")))
    return _style(fig, 480)
