"""Differential flamegraphs: how the shares of a profile's frames changed from a base profile to a target.

Both profiles are normalised by their total samples, so profiles taken at different rates or for different
durations compare: every figure is a share in percent of its own profile (``base_pct``, ``target_pct``) and
``delta_pct = target_pct - base_pct`` is in percentage points. Frames are matched by their label path from
the root (as flamegraph.pl's difffolded.pl matches folded stacks).

The picture: widths from the target profile; each frame coloured by the change of its share (its total,
inclusive share): red when it grew, blue when it shrank, grey within ``noise_pct`` points, the saturation
proportional to the change (the largest change in the picture is full red or blue). Frames of the base that
the target no longer has (``vanished``) have no width in the target, so they are drawn in a band of their
own under the chart, hatched, with their base width, and listed in the JSON form.

Thread root frames carry thread ids, which never match between two runs: by default the diff merges every
thread (``threads=False``); with ``threads=True`` it keeps one root per thread name (ids dropped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from collectors.profiler.chart import HATCH, Band, Bar, Chart, Table, render_chart_svg
from collectors.profiler.chart_html import render_chart_html
from collectors.profiler.flamegraph import (
    HTML_MAX_FRAMES,
    HTML_MIN_FRACTION,
    ROOT,
    SVG_MIN_PX,
    SVG_WIDTH,
    hidden_note,
    layout,
    paused_gc,
)
from collectors.profiler.model import Frame, Profile, ProfileError

__all__ = ["DiffNode", "ProfileDiff", "diff", "diff_color", "render_diff_html", "render_diff_svg"]

NEUTRAL = "#dddddd"
_TID = re.compile(r"^thread \((?:0x)?[0-9A-Fa-f]+\)")
_ROOTS = ("thread", "process")


def diff_color(delta_pct: float, *, scale: float, noise_pct: float) -> str:
    """The fill of a frame whose share changed by ``delta_pct`` points: grey within ``noise_pct``, else red
    (grew) or blue (shrank) with a saturation from 0.2 to 1 in proportion to ``|delta_pct| / scale``."""
    if abs(delta_pct) <= noise_pct or scale <= 0:
        return NEUTRAL
    s = 0.2 + 0.8 * min(1.0, abs(delta_pct) / scale)
    c = round(225 * (1.0 - s))
    return f"#ff{c:02x}{c:02x}" if delta_pct > 0 else f"#{c:02x}{c:02x}ff"


class DiffNode:
    """A frame path of either profile with its samples in both (``base``/``target``: total, ``*_self``: self)."""

    __slots__ = ("base", "base_self", "children", "frame", "name", "target", "target_self")

    def __init__(self, name: str, frame: Frame | None = None) -> None:
        self.name = name
        self.frame = frame
        self.base = self.target = self.base_self = self.target_self = 0
        self.children: dict[str, DiffNode] = {}

    def __repr__(self) -> str:
        return f"DiffNode({self.name!r}, base={self.base}, target={self.target})"


def _label(frame: Frame, threads: bool) -> str | None:
    if frame.kind in _ROOTS:
        return _TID.sub("thread", frame.function) if threads else None
    return frame.label


def _add(root: DiffNode, profile: Profile, *, side: str, threads: bool) -> None:
    """Adds ``profile``'s samples to the tree on ``side`` ("base" or "target")."""
    labels = [_label(f, threads) for f in profile.frames]
    for key, count in profile.samples.items():
        node = root
        setattr(node, side, getattr(node, side) + count)
        for fid in key:
            label = labels[fid]
            if label is None:
                continue
            child = node.children.get(label)
            if child is None:
                frame = profile.frames[fid]
                if frame.kind in _ROOTS:
                    frame = Frame(label, kind=frame.kind)
                child = node.children[label] = DiffNode(label, frame)
            setattr(child, side, getattr(child, side) + count)
            node = child
        self_side = side + "_self"
        setattr(node, self_side, getattr(node, self_side) + count)


class ProfileDiff:
    """The diff of two profiles (see the module docstring); build it with :func:`diff`."""

    def __init__(self, root: DiffNode, base: Profile, target: Profile, *, noise_pct: float) -> None:
        self.root = root
        self.base_total = base.total
        self.target_total = target.total
        self.base_meta = base.meta
        self.target_meta = target.meta
        self.noise_pct = noise_pct
        self.scale = max((abs(self.delta_pct(n)) for n in self._nodes()), default=0.0)
        self._vanished: list[tuple[tuple[str, ...], DiffNode]] | None = None
        self._functions: list[tuple[float, float, str, str]] | None = None

    def walk(self, *, into: Callable[[DiffNode], bool] | None = None) -> Iterator[tuple[DiffNode, int]]:
        """``(node, depth)`` for every node but the root (depth 1 under it), depth first, children by label;
        with ``into``, the children of a node are visited only when ``into(node)`` is true."""
        todo: list[tuple[DiffNode, int]] = [(c, 1) for c in _sorted(self.root, reverse=True)]
        while todo:
            node, depth = todo.pop()
            yield node, depth
            if node.children and (into is None or into(node)):
                todo.extend((c, depth + 1) for c in _sorted(node, reverse=True))

    def _nodes(self) -> Iterator[DiffNode]:
        """Every node but the root, in no particular order (cheaper than :meth:`walk`)."""
        todo = list(self.root.children.values())
        while todo:
            node = todo.pop()
            yield node
            todo.extend(node.children.values())

    def base_pct(self, node: DiffNode) -> float:
        return 100.0 * node.base / self.base_total

    def target_pct(self, node: DiffNode) -> float:
        return 100.0 * node.target / self.target_total

    def delta_pct(self, node: DiffNode) -> float:
        """The change of ``node``'s (inclusive) share, in percentage points."""
        return self.target_pct(node) - self.base_pct(node)

    def status(self, node: DiffNode) -> str:
        """``vanished`` (in base only), ``new`` (in target only), ``grew``, ``shrank`` or ``same`` (within noise)."""
        if node.target == 0:
            return "vanished"
        if node.base == 0:
            return "new"
        d = self.delta_pct(node)
        return "same" if abs(d) <= self.noise_pct else ("grew" if d > 0 else "shrank")

    def color(self, node: DiffNode) -> str:
        """The node's fill (:func:`diff_color` of its change; vanished frames are drawn hatched instead)."""
        return diff_color(self.delta_pct(node), scale=self.scale, noise_pct=self.noise_pct)

    def vanished(self) -> list[tuple[tuple[str, ...], DiffNode]]:
        """The top-most vanished frames (their parent is in the target), each with its label path."""
        if self._vanished is None:
            out = []
            path: list[str] = []
            for node, depth in self.walk(into=lambda n: n.target > 0):  # never into a vanished subtree
                del path[depth - 1:]
                path.append(node.name)
                if node.target == 0 and node.base > 0:
                    out.append((tuple(path), node))
            self._vanished = out
        return list(self._vanished)

    def functions(self) -> list[dict[str, Any]]:
        """Per function (name and file), its self share in base and target and the change, largest change
        first: ``{"function", "file", "base_pct", "target_pct", "delta_pct"}``. Thread and process root
        frames are not functions and are left out."""
        if self._functions is None:
            selfs: dict[tuple[str, str], list[int]] = {}
            for node in self._nodes():
                frame = node.frame
                if frame is None or frame.kind in _ROOTS or (node.base_self == 0 and node.target_self == 0):
                    continue
                acc = selfs.setdefault(frame.key, [0, 0])
                acc[0] += node.base_self
                acc[1] += node.target_self
            self._functions = sorted(((100.0 * b / self.base_total, 100.0 * t / self.target_total, function, file)
                                      for (function, file), (b, t) in selfs.items()),
                                     key=lambda r: (-abs(r[1] - r[0]), r[2], r[3]))
        figures = self._functions
        return [{"function": function, "file": file, "base_pct": round(bp, 4), "target_pct": round(tp, 4),
                 "delta_pct": round(tp - bp, 4)} for bp, tp, function, file in figures]

    @paused_gc()
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: totals, ``noise_pct``, ``functions`` (:meth:`functions`), ``frames`` (the merged
        frame tree, flat in depth-first order: each with its ``parent`` index, -1 under the root, shares and
        status) and ``vanished`` (the label paths of the top-most vanished frames with their base share)."""
        frames: list[dict[str, Any]] = []
        parents: list[int] = [-1]  # the index of the last node seen at each depth (-1: the root)
        for node, depth in self.walk():
            f = node.frame or Frame(node.name, kind="other")
            del parents[depth:]
            parents.append(len(frames))
            frames.append({
                "parent": parents[depth - 1], "name": node.name, "function": f.function, "file": f.file,
                "line": f.line, "kind": f.kind, "base_pct": round(self.base_pct(node), 4),
                "target_pct": round(self.target_pct(node), 4), "delta_pct": round(self.delta_pct(node), 4),
                "base_self_pct": round(100.0 * node.base_self / self.base_total, 4),
                "target_self_pct": round(100.0 * node.target_self / self.target_total, 4),
                "status": self.status(node),
            })
        return {
            "version": 1, "noise_pct": self.noise_pct,
            "base": {"total": self.base_total, "meta": self.base_meta.to_dict()},
            "target": {"total": self.target_total, "meta": self.target_meta.to_dict()},
            "functions": self.functions(), "frames": frames,
            "vanished": [{"path": list(p), "base_pct": round(self.base_pct(n), 4)} for p, n in self.vanished()],
        }


def _sorted(node: DiffNode, *, reverse: bool = False) -> list[DiffNode]:
    return sorted(node.children.values(), key=lambda c: c.name, reverse=reverse)


@paused_gc()
def diff(base: Profile, target: Profile, *, noise_pct: float = 0.5, threads: bool = False) -> ProfileDiff:
    """The differential profile of ``target`` against ``base``, by share of each profile's own total.

    Raises:
        ProfileError: either profile has no samples, or ``noise_pct`` is not a number in [0, 100].
    """
    if not isinstance(noise_pct, int | float) or not math.isfinite(noise_pct) or not 0 <= noise_pct <= 100:
        raise ProfileError(f"noise threshold {noise_pct!r} is not allowed: give a share in points from 0 to 100")
    for name, prof in (("base", base), ("target", target)):
        if prof.total <= 0:
            raise ProfileError(f"the {name} profile has no samples: a diff needs samples on both sides")
    root = DiffNode(ROOT)
    with paused_gc():
        _add(root, base, side="base", threads=threads)
        _add(root, target, side="target", threads=threads)
    return ProfileDiff(root, base, target, noise_pct=float(noise_pct))


# -- renderings --------------------------------------------------------------------------------------

def _info(d: ProfileDiff, node: DiffNode) -> str:
    status = d.status(node)
    bs, ts = 100.0 * node.base_self / d.base_total, 100.0 * node.target_self / d.target_total
    return (f"{status}: base {d.base_pct(node):.2f}% -> target {d.target_pct(node):.2f}% "
            f"({d.delta_pct(node):+.2f} pp); self {bs:.2f}% -> {ts:.2f}%; target {node.target} samples")


def _band(d: ProfileDiff, *, min_width: float) -> Band | None:
    tops = d.vanished()
    if not tops:
        return None
    scale = d.target_total / d.base_total  # base samples -> the chart's (target) units
    lay = layout([n for _, n in tops], weight=lambda n: float(getattr(n, "base", 0)), min_width=min_width / scale)
    paths = {id(n): p for p, n in tops}
    bars = []
    for box in lay.boxes:
        node = box.node
        assert isinstance(node, DiffNode)
        where = " <- ".join(reversed(paths[id(node)][:-1])) if id(node) in paths else ""
        info = f"vanished: base {d.base_pct(node):.2f}% ({node.base} samples), not in target"
        bars.append(Bar(x=box.x * scale, width=box.width * scale, depth=box.depth, parent=box.parent, fill=HATCH,
                        label=node.name, info=info + (f"; called from {where}" if where else "")))
    share = sum(d.base_pct(n) for _, n in tops)
    what = f"{len(tops)} frame of the base ({share:.2f}% of its samples) is" if len(tops) == 1 else \
        f"{len(tops)} frames of the base ({share:.2f}% of their samples) are"
    title = f"Vanished: {what} absent from the target (drawn with their base width)"
    return Band(title=title, bars=bars, depth=lay.depth)


def diff_chart(d: ProfileDiff, *, title: str, min_width: float, max_boxes: int | None, what: str) -> Chart:
    """The chart of the differential flamegraph: bars laid out by target samples, coloured by change."""
    lay = layout(d.root, weight=lambda n: float(getattr(n, "target", 0)), min_width=min_width, max_boxes=max_boxes)
    bars = []
    for box in lay.boxes:
        node = box.node
        assert isinstance(node, DiffNode)
        bars.append(Bar(x=box.x, width=box.width, depth=box.depth, parent=box.parent, fill=d.color(node),
                        label=node.name, info=_info(d, node)))
    noise = f"within +/-{d.noise_pct:g} pp"
    subtitle = (f"base {d.base_total} samples -> target {d.target_total} samples; widths: target; "
                f"colour: change of each frame's share (red grew, blue shrank, grey {noise})")
    legend = [(diff_color(d.scale or 1.0, scale=d.scale or 1.0, noise_pct=0.0), "grew"),
              (diff_color(-(d.scale or 1.0), scale=d.scale or 1.0, noise_pct=0.0), "shrank"),
              (NEUTRAL, noise), (HATCH, "vanished")]
    rows = [[f["function"] + (f" ({f['file']})" if f["file"] else ""), f"{f['base_pct']:.2f}", f"{f['target_pct']:.2f}",
             f"{f['delta_pct']:+.2f}"] for f in d.functions()[:40]]
    table = Table(title="Functions by change of self share", header=["function", "base %", "target %", "delta pp"],
                  rows=rows)
    return Chart(title=title, subtitle=subtitle, total=float(d.target_total), bars=bars,
                 notes=hidden_note(lay, what), legend=legend, band=_band(d, min_width=min_width), table=table)


@paused_gc()
def render_diff_svg(d: ProfileDiff, *, title: str = "Differential Flame Graph", width: int = SVG_WIDTH) -> str:
    """The differential flamegraph as a self-contained SVG (zoom, search, reset as :func:`render_svg`;
    vanished frames hatched in a band under the chart)."""
    min_width = SVG_MIN_PX * d.target_total / (width - 20)
    return render_chart_svg(diff_chart(d, title=title, min_width=min_width, max_boxes=None, what=f"{SVG_MIN_PX:g} px"),
                            width=width)


@paused_gc()
def render_diff_html(d: ProfileDiff, *, title: str = "Differential Flame Graph") -> str:
    """The differential flamegraph as an offline interactive HTML page (as :func:`render_html`), with the
    vanished band and a table of the functions whose self share changed most."""
    chart = diff_chart(d, title=title, min_width=HTML_MIN_FRACTION * d.target_total, max_boxes=HTML_MAX_FRAMES,
                       what=f"{100 * HTML_MIN_FRACTION:g}% of samples")
    return render_chart_html(chart)
