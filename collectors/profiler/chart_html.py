"""A :class:`~collectors.profiler.chart.Chart` as one interactive, offline HTML page.

Everything is inline (style, script, data): the page loads nothing, and its Content-Security-Policy
(``default-src 'none'``, the one script and the one style allowed by their SHA-256) keeps it that way even if
a label were to slip through as markup. The bars are JSON in a ``<script type="application/json">`` whose
``<``, ``>`` and ``&`` are written as ``\\u003c``/``\\u003e``/``\\u0026``, so no label can close the tag;
the script draws them with ``textContent`` only, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from collectors.profiler.chart import Bar, Chart, is_dark, safe_text, xml_attr, xml_text

__all__ = ["json_for_script", "render_chart_html"]

_CSS = """
body { font: 13px/1.4 Verdana, "DejaVu Sans", sans-serif; margin: 12px 16px; background: #fafafa; color: #111; }
h1 { font-size: 18px; margin: 0 0 2px; } .sub, .note { color: #555; }
.controls { margin: 8px 0; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
#search { width: 22em; padding: 3px 6px; } #matched { font-weight: bold; color: #8a008a; }
.chart { position: relative; width: 100%; overflow: hidden; background: #fff; border: 1px solid #ddd; }
.frame { position: absolute; height: 17px; box-sizing: border-box; box-shadow: inset -1px -1px 0 #fafafa;
  border-radius: 2px; text-indent: 3px; font-size: 12px; line-height: 16px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; cursor: pointer; }
.frame:hover { outline: 1px solid #000; outline-offset: -1px; }
.frame.dark { color: #fff; } .frame.parent { opacity: 0.55; }
.frame.match { background: rgb(230, 0, 230) !important; color: #fff; }
.frame.vanished { background: repeating-linear-gradient(45deg, #a8a8a8 0 2.5px, #e4e4e4 2.5px 6px) !important;
  cursor: default; }
.frame.vanished.match { background: repeating-linear-gradient(45deg, rgb(230, 0, 230) 0 2.5px, #e4e4e4 2.5px 6px)
  !important; color: #000; }
#details { min-height: 1.4em; margin: 6px 0; font-family: monospace; white-space: pre-wrap; }
.legend { margin: 8px 0; } .legend span { display: inline-block; margin-right: 14px; }
.legend i.vanished { background: repeating-linear-gradient(45deg, #a8a8a8 0 2.5px, #e4e4e4 2.5px 6px); }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
table { border-collapse: collapse; margin-top: 8px; } td, th { padding: 2px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; font-family: monospace; } tr:nth-child(even) { background: #f0f0f0; }
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("flame-data").textContent);
  var ROW = 18, MINPX = 0.5;
  var chart = document.getElementById("chart"), details = document.getElementById("details");
  var matchedEl = document.getElementById("matched"), hiddenEl = document.getElementById("hidden");
  var input = document.getElementById("search"), zoomedEl = document.getElementById("zoomed");
  var bars = D.bars, zoomed = 0, term = "";
  function hit(b) { return term !== "" && b[5].toLowerCase().indexOf(term) >= 0; }
  function frame(b, i, left, width, rows, cls) {
    var el = document.createElement("div");
    el.className = "frame" + cls + (hit(b) ? " match" : "") + (b[7] ? " dark" : "");
    el.setAttribute("data-i", String(i));
    el.style.left = (100 * left) + "%";
    el.style.width = (100 * width) + "%";
    el.style.top = ((rows - 1 - b[2]) * ROW) + "px";
    if (b[4] === "hatch") el.className += " vanished"; else el.style.backgroundColor = b[4];
    el.textContent = b[5];
    el.title = b[5] + "\n" + b[6];
    return el;
  }
  function draw() {
    var z = bars[zoomed], x0 = z[0], w0 = z[1], d0 = z[2], eps = w0 * 1e-9;
    var cw = chart.clientWidth || 1, frag = document.createDocumentFragment(), skipped = 0;
    for (var i = 0; i < bars.length; i++) {
      var b = bars[i], left, width, cls = "";
      if (b[2] >= d0 && b[0] >= x0 - eps && b[0] + b[1] <= x0 + w0 + eps) {
        left = (b[0] - x0) / w0; width = b[1] / w0;
      } else if (b[2] < d0 && b[0] <= x0 + eps && b[0] + b[1] >= x0 + w0 - eps) {
        left = 0; width = 1; cls = " parent";
      } else continue;
      if (width * cw < MINPX) { skipped++; continue; }
      frag.appendChild(frame(b, i, left, width, D.depth, cls));
    }
    chart.textContent = "";
    chart.appendChild(frag);
    hiddenEl.textContent = skipped ? skipped + " frames too narrow to draw at this zoom (click one to zoom in)" : "";
    zoomedEl.textContent = zoomed ? "Zoomed: " + z[5] : "";
    document.body.setAttribute("data-zoomed", String(zoomed));
  }
  function share() {
    var iv = [];
    bars.forEach(function (b) { if (hit(b)) iv.push([b[0], b[0] + b[1]]); });
    iv.sort(function (a, b) { return a[0] - b[0]; });
    var sum = 0, cs = null, ce = null;
    iv.forEach(function (p) {
      if (ce === null || p[0] >= ce) { if (ce !== null) sum += ce - cs; cs = p[0]; ce = p[1]; }
      else if (p[1] > ce) ce = p[1];
    });
    if (ce !== null) sum += ce - cs;
    return 100 * sum / D.total;
  }
  function drawBand() {
    var box = document.getElementById("band-chart");
    if (!box || !D.band) return;
    box.textContent = "";
    box.style.height = (D.band.depth * ROW) + "px";
    D.band.bars.forEach(function (b, i) {
      box.appendChild(frame(b, i, b[0] / D.total, b[1] / D.total, D.band.depth, ""));
    });
  }
  function search(t) {
    term = (t || "").toLowerCase();
    matchedEl.textContent = term ? "Matched: " + share().toFixed(2) + "%" : "";
    document.body.setAttribute("data-search", term);
    draw();
    drawBand();
  }
  function reset() { zoomed = 0; input.value = ""; search(""); }
  function show(ev) {
    var el = ev.target.closest ? ev.target.closest(".frame") : null;
    if (!el) return;
    var src = el.parentNode.id === "chart" ? bars : D.band.bars, b = src[+el.getAttribute("data-i")];
    details.textContent = b[5] + "  |  " + b[6];
  }
  chart.style.height = (D.depth * ROW) + "px";
  chart.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".frame") : null;
    if (el) { zoomed = +el.getAttribute("data-i"); draw(); }
  });
  document.addEventListener("mouseover", show);
  input.addEventListener("input", function () { search(input.value); });
  document.getElementById("reset").addEventListener("click", reset);
  window.addEventListener("resize", draw);
  window.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") reset();
    else if (((ev.ctrlKey && ev.key === "f") || ev.key === "/") && document.activeElement !== input) {
      ev.preventDefault();
      input.focus();
    }
  });
  var legend = document.getElementById("legend");
  D.legend.forEach(function (l) {
    var s = document.createElement("span"), sw = document.createElement("i");
    if (l[0] === "hatch") sw.className = "vanished"; else sw.style.background = l[0];
    s.appendChild(sw);
    s.appendChild(document.createTextNode(l[1]));
    legend.appendChild(s);
  });
  window.flamegraph = {
    zoom: function (i) { zoomed = i; draw(); },
    search: function (t) { input.value = t; search(t); },
    reset: reset,
  };
  draw();
  drawBand();
})();
"""


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` become
    ``\\u003c``, ``\\u003e``, ``\\u0026`` (valid JSON string escapes; outside strings JSON has none of them),
    so ``</script>`` or ``<!--`` cannot appear in it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _bars(bars: list[Bar]) -> list[list[Any]]:
    return [[round(b.x, 6), round(b.width, 6), b.depth, b.parent, b.fill, safe_text(b.label), safe_text(b.info),
             1 if is_dark(b.fill) else 0]
            for b in bars]


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _table(chart: Chart) -> str:
    if chart.table is None:
        return ""
    t = chart.table
    head = "".join(f"<th>{xml_text(h)}</th>" for h in t.header)
    rows = "".join("<tr>" + "".join(f"<td>{xml_text(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f'<h2 class="sub">{xml_text(t.title)}</h2><table id="table"><tr>{head}</tr>{rows}</table>'


def render_chart_html(chart: Chart) -> str:
    """``chart`` as one HTML page that loads nothing: ``#chart`` holds the drawn frames (``.frame`` divs with
    ``data-i`` = bar index), ``#search``, ``#reset``, ``#matched``, ``#details`` the controls; a band, when
    the chart has one, is drawn under ``#band-chart``. ``window.flamegraph`` exposes ``zoom(i)``,
    ``search(term)`` and ``reset()``."""
    data: dict[str, Any] = {
        "title": safe_text(chart.title), "total": chart.total, "depth": chart.depth, "bars": _bars(chart.bars),
        "legend": [[safe_text(f), safe_text(n)] for f, n in chart.legend], "band": None,
    }
    band_html = ""
    if chart.band is not None and chart.band.bars:
        data["band"] = {"depth": chart.band.depth, "bars": _bars(chart.band.bars)}
        band_html = (f'<section id="band"><p class="note" id="band-title">{xml_text(chart.band.title)}</p>'
                     '<div class="chart" id="band-chart"></div></section>')
    csp = f"default-src 'none'; script-src {_sha256(_JS)}; style-src {_sha256(_CSS)}"
    notes = "".join(f'<p class="note">{xml_text(n)}</p>' for n in chart.notes)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{xml_attr(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{xml_text(chart.title)}</title>",
        f"<style>{_CSS}</style></head>",
        '<body data-zoomed="0" data-search="">',
        f"<h1>{xml_text(chart.title)}</h1><div class=\"sub\">{xml_text(chart.subtitle)}</div>",
        '<div class="controls"><input id="search" type="search" placeholder="Search frames (substring, any case)" '
        'aria-label="search frames"><button id="reset" type="button">Reset</button><span id="matched"></span>'
        '<span id="zoomed" class="note"></span></div>',
        '<div class="chart" id="chart" role="img" aria-label="flame graph"></div>',
        '<div id="details"> </div><div id="hidden" class="note"></div>',
        notes,
        band_html,
        '<div class="legend" id="legend"></div>',
        _table(chart),
        f'<script type="application/json" id="flame-data">{json_for_script(data)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ]) + "\n"
