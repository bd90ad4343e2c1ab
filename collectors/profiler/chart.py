"""A flame chart as data (bars with their place, fill, label and details) and its self-contained SVG rendering.

A flamegraph (:mod:`collectors.profiler.flamegraph`) and a differential flamegraph
(:mod:`collectors.profiler.diff`) both reduce to a :class:`Chart`; the renderings here and in
:mod:`collectors.profiler.chart_html` draw any chart the same way: click to zoom, search with the matched
share, reset, details per frame. Labels come from the profiled processes, so every one is passed through
:func:`safe_text` (characters XML cannot hold replaced) and escaped where it is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

__all__ = [
    "HATCH", "Band", "Bar", "Chart", "Table", "fit_label", "is_dark", "render_chart_svg", "safe_text", "xml_attr",
    "xml_text",
]

#: characters XML 1.0 cannot hold (C0 controls but tab/newline/CR, surrogates, U+FFFE/U+FFFF)
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: the fill that draws a bar hatched (grey stripes): a diff's vanished frames
HATCH = "hatch"
FRAME_H = 16
FONT_PX = 12
XPAD = 10
TOP = 66  # title, subtitle and the controls above the chart


def safe_text(text: str) -> str:
    """``text`` with every character XML cannot hold (NUL and other controls, lone surrogates) as U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def xml_text(text: str) -> str:
    """``text`` safe as XML/HTML character data (``&``, ``<``, ``>`` escaped)."""
    return escape(safe_text(text))


def xml_attr(text: str) -> str:
    """``text`` safe inside a double- or single-quoted XML/HTML attribute value."""
    return escape(safe_text(text), {'"': "&quot;", "'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def is_dark(fill: str) -> bool:
    """Whether a ``#rrggbb`` fill is dark enough that its label is drawn white (relative luminance < 0.4)."""
    if len(fill) != 7 or not fill.startswith("#"):
        return False
    try:
        r, g, b = (int(fill[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
    except ValueError:
        return False
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4


def fit_label(label: str, width_px: float, font_px: float = FONT_PX) -> str:
    """The part of ``label`` that fits a frame ``width_px`` wide (``..`` marks a cut; empty below 3 chars).
    The SVG's script applies the same rule when it zooms."""
    n = int((width_px - 6) // (font_px * 0.59))
    if n < 3:
        return ""
    return label if len(label) <= n else label[: n - 2] + ".."


@dataclass(frozen=True, slots=True)
class Bar:
    """One frame to draw: ``x``/``width`` in the chart's units (samples), ``depth`` from the root, ``parent``
    the index of the parent bar (-1 for a root); ``label`` is what is searched and drawn, ``info`` the rest
    of the details (samples, shares)."""

    x: float
    width: float
    depth: int
    parent: int
    fill: str
    label: str
    info: str

    @property
    def tooltip(self) -> str:
        return f"{self.label}\n{self.info}"


@dataclass(slots=True)
class Band:
    """Bars drawn below the chart, not zoomable (a diff's vanished frames); x/width in the chart's units."""

    title: str
    bars: list[Bar]
    depth: int


@dataclass(slots=True)
class Table:
    """A table of figures shown with the chart (the HTML page only)."""

    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass(slots=True)
class Chart:
    """What a flame chart shows: bars (parents before children; bar 0 is the single root), the total width
    in samples, notes (what was left out), a legend of fills and an optional band and table."""

    title: str
    subtitle: str
    total: float
    bars: list[Bar]
    notes: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    band: Band | None = None
    table: Table | None = None

    @property
    def depth(self) -> int:
        return max((b.depth for b in self.bars), default=-1) + 1


_SVG_CSS = """
text { font-family: Verdana, "DejaVu Sans", sans-serif; font-size: 12px; fill: #000; }
#title { font-size: 17px; } #subtitle, .note { fill: #555; }
.ctl { cursor: pointer; fill: #1a4f9c; text-decoration: underline; }
#frames > g, #band > g { cursor: pointer; }
#frames > g:hover > rect, #band > g:hover > rect { stroke: #000; stroke-width: 0.6; }
.dark > text { fill: #fff; } .hide { display: none; } .parent > rect { opacity: 0.5; }
.match > rect { fill: rgb(230, 0, 230); }
"""

_SVG_JS = r"""
(function () {
  "use strict";
  var C = JSON.parse(document.getElementById("flame-config").textContent);
  var svg = document.documentElement;
  var frames = Array.prototype.slice.call(document.querySelectorAll("#frames > g"));
  var band = Array.prototype.slice.call(document.querySelectorAll("#band > g"));
  var matchedEl = document.getElementById("matched"), details = document.getElementById("details");
  function num(g, k) { return parseFloat(g.getAttribute("data-" + k)); }
  function tip(g) { return g.querySelector("title").textContent; }
  function label(g) { return tip(g).split("\n")[0]; }
  function fit(s, w) {
    var n = Math.floor((w - 6) / (C.font * 0.59));
    if (n < 3) return "";
    return s.length <= n ? s : s.slice(0, n - 2) + "..";
  }
  function place(g, x, w) {
    var r = g.querySelector("rect"), t = g.querySelector("text");
    r.setAttribute("x", x.toFixed(2));
    r.setAttribute("width", Math.max(w - 0.5, 0).toFixed(2));
    t.setAttribute("x", (x + 3).toFixed(2));
    t.textContent = fit(label(g), w);
  }
  function zoom(g) {
    var x0 = num(g, "x"), w0 = num(g, "w"), d0 = num(g, "d"), eps = w0 * 1e-9;
    frames.forEach(function (e) {
      var x = num(e, "x"), w = num(e, "w"), d = num(e, "d");
      e.classList.remove("hide", "parent");
      if (d >= d0 && x >= x0 - eps && x + w <= x0 + w0 + eps) {
        place(e, C.xpad + (x - x0) / w0 * C.cw, w / w0 * C.cw);
      } else if (d < d0 && x <= x0 + eps && x + w >= x0 + w0 - eps) {
        place(e, C.xpad, C.cw);
        e.classList.add("parent");
      } else {
        e.classList.add("hide");
      }
    });
    svg.setAttribute("data-zoomed", String(frames.indexOf(g)));
  }
  function share(iv) {
    iv.sort(function (a, b) { return a[0] - b[0]; });
    var sum = 0, cs = null, ce = null;
    iv.forEach(function (p) {
      if (ce === null || p[0] >= ce) { if (ce !== null) sum += ce - cs; cs = p[0]; ce = p[1]; }
      else if (p[1] > ce) ce = p[1];
    });
    if (ce !== null) sum += ce - cs;
    return 100 * sum / C.total;
  }
  function search(term) {
    var iv = [], t = (term || "").toLowerCase();
    frames.concat(band).forEach(function (e) {
      var hit = t !== "" && label(e).toLowerCase().indexOf(t) >= 0;
      e.classList.toggle("match", hit);
      if (hit && e.parentNode.id === "frames") iv.push([num(e, "x"), num(e, "x") + num(e, "w")]);
    });
    matchedEl.textContent = t ? "Matched: " + share(iv).toFixed(2) + "%" : "";
    svg.setAttribute("data-search", t);
  }
  function ask() {
    var t = window.prompt("Search frames (substring, any case):", svg.getAttribute("data-search") || "");
    if (t !== null) search(t);
  }
  function reset() { zoom(frames[0]); search(""); }
  frames.forEach(function (g) { g.addEventListener("click", function () { zoom(g); }); });
  frames.concat(band).forEach(function (g) {
    g.addEventListener("mouseover", function () { details.textContent = tip(g).split("\n").join("  |  "); });
    g.addEventListener("mouseout", function () { details.textContent = " "; });
  });
  document.getElementById("reset").addEventListener("click", reset);
  document.getElementById("search").addEventListener("click", ask);
  window.addEventListener("keydown", function (ev) {
    if ((ev.ctrlKey && ev.key === "f") || ev.key === "F3") { ev.preventDefault(); ask(); }
    else if (ev.key === "Escape") reset();
  });
  window.flamegraph = { zoom: function (i) { zoom(frames[i]); }, search: search, reset: reset };
})();
"""


def _fill(fill: str) -> str:
    return "url(#hatch)" if fill == HATCH else fill


def _svg_bar(bar: Bar, *, scale: float, y: float, cls: str) -> str:
    x = XPAD + bar.x * scale
    w = bar.width * scale
    cls += " dark" if is_dark(bar.fill) else ""
    return (f'<g class="{cls}" data-x="{bar.x:.12g}" data-w="{bar.width:.12g}" data-d="{bar.depth}">'
            f"<title>{xml_text(bar.tooltip)}</title>"
            f'<rect x="{x:.2f}" y="{y:.1f}" width="{max(w - 0.5, 0):.2f}" height="{FRAME_H - 1}" '
            f'fill="{xml_attr(_fill(bar.fill))}" rx="2" ry="2"/>'
            f'<text x="{x + 3:.2f}" y="{y + FRAME_H - 4:.1f}">{xml_text(fit_label(bar.label, w))}</text></g>')


def _svg_band(band: Band, *, y0: float, scale: float) -> tuple[list[str], float]:
    out = [f'<text class="note" id="band-title" x="{XPAD}" y="{y0 + 12:.1f}">{xml_text(band.title)}</text>',
           '<g id="band">']
    top = y0 + 18
    for bar in band.bars:
        y = top + (band.depth - 1 - bar.depth) * FRAME_H
        out.append(_svg_bar(bar, scale=scale, y=y, cls="v"))
    out.append("</g>")
    return out, top + band.depth * FRAME_H + 6


def render_chart_svg(chart: Chart, *, width: int = 1200) -> str:
    """``chart`` as a self-contained SVG document (inline style and script, no external reference).

    The frames are ``<g>`` elements under ``#frames`` (bar order), each with a ``<title>`` tooltip, a
    ``<rect>`` and a ``<text>``; ``data-x``/``data-w``/``data-d`` hold the bar's place in samples, which the
    script uses to zoom. ``window.flamegraph`` exposes ``zoom(i)``, ``search(term)`` and ``reset()``.
    """
    cw = width - 2 * XPAD
    scale = cw / chart.total if chart.total else 0.0
    rows = chart.depth
    body: list[str] = ['<g id="frames">']
    for bar in chart.bars:
        body.append(_svg_bar(bar, scale=scale, y=TOP + (rows - 1 - bar.depth) * FRAME_H, cls="f"))
    body.append("</g>")
    y = float(TOP + rows * FRAME_H + 18)
    body.append(f'<text id="details" x="{XPAD}" y="{y:.1f}"> </text>')
    body.append(f'<text id="matched" x="{width - XPAD}" y="{y:.1f}" text-anchor="end"></text>')
    for note in chart.notes:
        y += 16
        body.append(f'<text class="note" x="{XPAD}" y="{y:.1f}">{xml_text(note)}</text>')
    y += 10
    if chart.band is not None and chart.band.bars:
        band, y = _svg_band(chart.band, y0=y, scale=scale)
        body.extend(band)
    lx = float(XPAD)
    y += 14
    for fill, name in chart.legend:
        body.append(f'<rect x="{lx:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{xml_attr(_fill(fill))}"/>'
                    f'<text class="note" x="{lx + 16:.1f}" y="{y:.1f}">{xml_text(name)}</text>')
        lx += 26 + 7.5 * len(name)
    height = int(y + 12)
    config = json.dumps({"cw": cw, "xpad": XPAD, "font": FONT_PX, "total": chart.total})
    head = [
        '<?xml version="1.0" standalone="no"?>',
        f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-zoomed="0" data-search="">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#e4e4e4"/><rect width="2.5" height="6" fill="#a8a8a8"/></pattern></defs>',
        f"<style>{_SVG_CSS}</style>",
        f'<script type="application/json" id="flame-config">{config}</script>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa"/>',
        f'<text id="title" x="{width / 2:.0f}" y="24" text-anchor="middle">{xml_text(chart.title)}</text>',
        f'<text id="subtitle" x="{width / 2:.0f}" y="42" text-anchor="middle">{xml_text(chart.subtitle)}</text>',
        f'<text id="reset" class="ctl" x="{XPAD}" y="24">Reset Zoom</text>',
        f'<text id="search" class="ctl" x="{width - XPAD}" y="24" text-anchor="end">Search</text>',
    ]
    script = f'<script type="text/ecmascript"><![CDATA[{_SVG_JS}]]></script>'  # last: the frames exist by then
    return "\n".join([*head, *body, script, "</svg>"]) + "\n"
