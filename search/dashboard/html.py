"""The dashboard page: one self-contained HTML file (plotly.js inlined once, no CDN, no server).

Escaping rules, in one place: text that goes into HTML passes through `esc` (html.escape);
JSON that goes into a <script> element passes through `script_json`, which writes <, > and &
as \\u escapes so no string inside can close the element or open an HTML comment. Figures are
stored as JSON in `<script type="application/json">` blocks and drawn by one small script.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON text safe inside <script>: no '</', no '<!--', nothing an HTML parser reacts to."""
    text = value if isinstance(value, str) else json.dumps(value, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class Section:
    id: str
    title: str
    body: str  # HTML, every data string already escaped


def note(text: str, kind: str = "info") -> str:
    return f'<p class="note {esc(kind)}">{esc(text)}</p>'


class Figures:
    """Numbers the figure containers of one page and keeps their JSON."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: go.Figure, caption: str | None = None) -> str:
        self.count += 1
        fid = f"fig-{self.count}"
        data = script_json(pio.to_json(fig, validate=False))
        cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
        return (f'<figure class="plot"><div id="{fid}" class="plotly-div"></div>{cap}</figure>'
                f'<script type="application/json" class="fig-data" data-target="{fid}">{data}</script>')


# ---------------------------------------------------------------------------- tables


def _sort_key(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(float(v))
    try:
        return repr(float(v)) if pd.api.types.is_number(v) else str(v)
    except (TypeError, ValueError):
        return str(v)


def data_table(table_id: str, columns: Sequence[tuple[str, str]], cells: Sequence[Sequence[tuple[str, Any]]],
               *, caption: str = "") -> str:
    """A sortable, filterable table. columns: (key, header); each cell: (shown text, sort
    value). Sorting uses the raw value (data-sort), so '0.512 ± 0.031' sorts by 0.512."""
    head = "".join(f'<th data-col="{esc(k)}" title="sort by {esc(h)}">{esc(h)}</th>' for k, h in columns)
    body = "".join("<tr>" + "".join(f'<td data-sort="{esc(_sort_key(raw))}">{esc(shown)}</td>'
                                    for shown, raw in row) + "</tr>" for row in cells)
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return (f'<div class="table-tools"><input type="search" class="filter" data-table="{esc(table_id)}" '
            f'placeholder="filter rows…" aria-label="filter {esc(table_id)}"> '
            f'<span class="count" data-count-for="{esc(table_id)}">{len(cells)} rows</span></div>'
            f'<div class="table-wrap"><table class="sortable" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>{cap}')


def key_value_table(rows: Sequence[tuple[str, str]]) -> str:
    return ('<table class="facts">' + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
            + "</table>")


# ---------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px;font-weight:600}
header .meta{color:#b9c0cf;font-size:13px;margin-top:4px;word-break:break-all}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #dde1e7;padding:8px 28px;font-size:14px}
nav a{margin-right:16px;color:#2856c5;text-decoration:none}
main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:18px 0;padding:14px 20px}
section h2{margin:2px 0 10px;font-size:18px}
h3{font-size:15px;margin:14px 0 6px}
.note{background:#eef3fb;border-left:4px solid #2856c5;padding:8px 12px;margin:8px 0;font-size:14px}
.note.warn{background:#fff6e5;border-left-color:#e08a00}
.note.empty{background:#f1f1f1;border-left-color:#888}
.caption{color:#5a6273;font-size:13px;margin:4px 0 10px}
figure.plot{margin:0}
.table-tools{margin:6px 0;font-size:13px;color:#5a6273}
.table-tools input{padding:4px 8px;width:260px;border:1px solid #c7ccd6;border-radius:4px}
.table-wrap{overflow-x:auto;max-height:560px;overflow-y:auto}
table{border-collapse:collapse;font-size:13px}
table.sortable th{cursor:pointer;user-select:none;position:sticky;top:0;background:#eef0f4;white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 9px;text-align:left;vertical-align:top}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts th{background:#f3f4f7;font-weight:600;white-space:nowrap}
table.facts td{white-space:normal}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:8px 18px}
"""

# Sorting, filtering and drawing; no library besides plotly.js.
_JS = r"""
(function(){
  function cellValue(td){
    var s = td.getAttribute('data-sort');
    if (s === null) s = td.textContent;
    return s;
  }
  function sortTable(table, col, th){
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(h){ h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === 'ascending' ? 1 : -1;
    rows.sort(function(a, b){
      var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
      if (x === '' && y === '') return 0;
      if (x === '') return 1;            // blanks last in both directions
      if (y === '') return -1;
      var nx = Number(x), ny = Number(y);
      if (!isNaN(nx) && !isNaN(ny)) return sign * (nx - ny);
      return sign * x.localeCompare(y, undefined, {numeric: true});
    });
    rows.forEach(function(r){ body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, col){
      th.addEventListener('click', function(){ sortTable(table, col, th); });
    });
  });
  document.querySelectorAll('input.filter').forEach(function(input){
    input.addEventListener('input', function(){
      var table = document.getElementById(input.getAttribute('data-table'));
      var q = input.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      Array.prototype.forEach.call(rows, function(r){
        var ok = q === '' || r.textContent.toLowerCase().indexOf(q) >= 0;
        r.style.display = ok ? '' : 'none';
        if (ok) shown++;
      });
      var count = document.querySelector('[data-count-for="' + table.id + '"]');
      if (count) count.textContent = (q === '' ? rows.length : shown + ' of ' + rows.length) + ' rows';
    });
  });
  document.querySelectorAll('script.fig-data').forEach(function(el){
    var fig = JSON.parse(el.textContent);
    var target = document.getElementById(el.getAttribute('data-target'));
    Plotly.newPlot(target, fig.data, fig.layout || {}, {responsive: true, displaylogo: false});
  });
  document.body.setAttribute('data-ready', '1');
})();
"""

# Served pages poll the server for a new results version and reload, keeping the scroll position.
_REFRESH_JS = r"""
(function(){
  var version = document.body.getAttribute('data-version');
  window.addEventListener('load', function(){
    var y = sessionStorage.getItem('ser-search-scroll');
    if (y !== null) { sessionStorage.removeItem('ser-search-scroll'); window.scrollTo(0, Number(y)); }
  });
  setInterval(function(){
    fetch('version', {cache: 'no-store'}).then(function(r){ return r.ok ? r.text() : ''; }).then(function(v){
      v = v.trim();
      if (v && v !== version) {
        sessionStorage.setItem('ser-search-scroll', String(window.scrollY));
        location.reload();
      }
    }).catch(function(){});
  }, %d);
})();
"""


def page(title: str, subtitle: str, sections: Sequence[Section], plotly_js: str, *,
         refresh_version: str | None = None, refresh_ms: int = 3000) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    version_attr = f' data-version="{esc(refresh_version)}"' if refresh_version is not None else ""
    refresh = f"<script>{_REFRESH_JS % refresh_ms}</script>" if refresh_version is not None else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{_CSS}</style>"
            f"<script>{plotly_js}</script></head>"
            f"<body{version_attr}><header><h1>{esc(title)}</h1><div class=\"meta\">{esc(subtitle)}</div></header>"
            f"<nav>{nav}</nav><main>{body}</main><script>{_JS}</script>{refresh}</body></html>\n")
