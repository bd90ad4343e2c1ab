"""Flamegraphs of a :class:`~collectors.profiler.model.Profile`: the flame tree, its layout, frame colours,
and the two renderings (a self-contained SVG and an interactive offline HTML page).

The tree merges stacks by their frame labels, root first (as flamegraph.pl merges folded stacks): a node
per distinct label path, with its ``total`` (samples whose stack passes through it) and ``self`` (samples
whose stack ends at it) counts. Children are ordered by label, as flamegraph.pl orders them, so a picture
is stable whatever the order in which samples arrived.

The layout places every node at ``x`` (in samples, from the left), ``width`` (its total, in samples) and
``depth`` (0 for the root ``all``). Frames narrower than a minimum width are not drawn but counted: the
layout's ``hidden_frames``/``hidden_samples`` tally them and both renderings say how many were left out.
"""

from __future__ import annotations

import colorsys
import gc
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from collectors.profiler.chart import Bar, Chart, render_chart_svg
from collectors.profiler.chart_html import render_chart_html
from collectors.profiler.model import Frame, Profile, ProfileError

__all__ = [
    "Box", "FlameNode", "Layout", "build_tree", "frame_color", "layout", "profile_chart", "render_html", "render_svg",
]

#: the label of the root node of every flame tree
ROOT = "all"
#: the SVG's width in pixels and the narrowest frame it draws (flamegraph.pl's default --minwidth)
SVG_WIDTH = 1200
SVG_MIN_PX = 0.1
#: the HTML page embeds frames down to this share of all samples (it draws what is wide enough at the
#: current zoom), and at most this many frames (the widest ones)
HTML_MIN_FRACTION = 1e-4
HTML_MAX_FRAMES = 50_000


class TreeNode(Protocol):
    """What :func:`layout` needs of a node: a label and children keyed by label."""

    @property
    def name(self) -> str: ...

    @property
    def children(self) -> Mapping[str, TreeNode]: ...


N = TypeVar("N", bound=TreeNode)


class FlameNode:
    """One node of the flame tree: a frame at one label path. ``frame`` is None for the root ``all``.

    (A plain slotted class: a large profile has hundreds of thousands of nodes.)
    """

    __slots__ = ("children", "frame", "name", "self_count", "total")

    def __init__(self, name: str, frame: Frame | None = None, total: int = 0, self_count: int = 0) -> None:
        self.name = name
        self.frame = frame
        self.total = total
        self.self_count = self_count
        self.children: dict[str, FlameNode] = {}

    def __repr__(self) -> str:
        return f"FlameNode({self.name!r}, total={self.total}, self={self.self_count}, {len(self.children)} children)"

    def walk(self, depth: int = 0) -> Iterator[tuple[FlameNode, int]]:
        """``(node, depth)`` for this node and every descendant, depth first, children by label."""
        stack: list[tuple[FlameNode, int]] = [(self, depth)]
        while stack:
            node, d = stack.pop()
            yield node, d
            stack.extend((c, d + 1) for c in sorted(node.children.values(), key=_name, reverse=True))


def _name(node: TreeNode) -> str:
    return node.name


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while a tree is built: the nodes hold no cycles, and a collection
    pass per few hundred new nodes made building a large tree many times slower (in a process that already
    holds many objects, 40 times). Re-enabled only if it was enabled."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_tree(profile: Profile) -> FlameNode:
    """The flame tree of ``profile``: stacks merged by frame label path under a root ``all``.

    The root's total is ``profile.total``; every node's total is its self count plus its children's totals.
    """
    root = FlameNode(ROOT)
    frames = profile.frames
    labels = [f.label for f in frames]
    with paused_gc():
        for key, count in profile.samples.items():
            node = root
            node.total += count
            for fid in key:
                label = labels[fid]
                child = node.children.get(label)
                if child is None:
                    child = node.children[label] = FlameNode(label, frames[fid])
                child.total += count
                node = child
            node.self_count += count
    return root


@dataclass(frozen=True, slots=True)
class Box(Generic[N]):
    """Where one node is drawn: ``x`` and ``width`` in samples, ``depth`` from the root; ``parent`` is the
    index of the parent's box in :attr:`Layout.boxes` (-1 for a root)."""

    node: N
    x: float
    width: float
    depth: int
    parent: int


@dataclass(slots=True)
class Layout(Generic[N]):
    """The boxes to draw (parents before children) and the tally of what was too narrow to draw."""

    boxes: list[Box[N]]
    total: float
    depth: int  # rows: the deepest box's depth + 1
    hidden_frames: int = 0  # tree nodes not drawn (narrower than min_width, or past max_boxes)
    hidden_samples: float = 0.0  # the samples under the top-most hidden nodes


def layout(roots: TreeNode | Sequence[TreeNode], *, weight: Callable[[TreeNode], float] | None = None,
           min_width: float = 0.0, max_boxes: int | None = None) -> Layout[TreeNode]:
    """The boxes of a tree (or of several roots, laid side by side), children ordered by label and packed
    from their parent's left edge (the parent's self time is the gap on the right, as in flamegraph.pl).

    ``weight`` is a node's width in samples (default: its ``total``); a node of weight 0 is not a frame of
    this picture and is skipped without being counted (a diff draws the frames absent from its target in a
    band of their own). A node narrower than ``min_width`` samples is not drawn; it and its descendants
    are counted in ``hidden_frames`` and its samples in ``hidden_samples``. With ``max_boxes``, only the
    widest boxes are kept (parents always before their children), the rest counted the same way.
    """
    weigh: Callable[[TreeNode], float] = weight if weight is not None else _total
    tops = [roots] if not isinstance(roots, Sequence) else list(roots)
    out: Layout[TreeNode] = Layout([], sum(weigh(r) for r in tops), 0)
    todo: list[tuple[TreeNode, float, int, int]] = []  # node, x, depth, parent box
    x = 0.0
    for r in tops:
        todo.append((r, x, 0, -1))
        x += weigh(r)
    todo.reverse()
    while todo:
        node, x, depth, parent = todo.pop()
        w = weigh(node)
        if w <= 0:
            continue
        if w < min_width:
            out.hidden_frames += _count(node, weigh)
            out.hidden_samples += w
            continue
        out.boxes.append(Box(node, x, w, depth, parent))
        idx = len(out.boxes) - 1
        kids = []
        cx = x
        for child in sorted(node.children.values(), key=_name):
            kids.append((child, cx, depth + 1, idx))
            cx += weigh(child)
        todo.extend(reversed(kids))
    if max_boxes is not None and len(out.boxes) > max_boxes:
        _cap(out, max_boxes, weigh)
    out.depth = max((b.depth for b in out.boxes), default=-1) + 1
    return out


def _total(node: TreeNode) -> float:
    return float(getattr(node, "total", 0))


def _count(node: TreeNode, weigh: Callable[[TreeNode], float]) -> int:
    n, todo = 0, [node]
    while todo:
        cur = todo.pop()
        if weigh(cur) > 0:
            n += 1
            todo.extend(cur.children.values())
    return n


def _cap(out: Layout[TreeNode], max_boxes: int, weigh: Callable[[TreeNode], float]) -> None:
    """Keeps the ``max_boxes`` widest boxes (a parent is never narrower than its child and sorts first on a
    tie by depth, so every kept box keeps its parent) and re-indexes their parents."""
    order = sorted(range(len(out.boxes)), key=lambda i: (-out.boxes[i].width, out.boxes[i].depth, i))
    keep = sorted(order[:max_boxes])
    kept = set(keep)
    for i in order[max_boxes:]:
        box = out.boxes[i]
        if box.parent in kept:  # top-most dropped box: its subtree leaves the picture
            out.hidden_frames += _count(box.node, weigh)
            out.hidden_samples += box.width
    new_index = {old: new for new, old in enumerate(keep)}
    out.boxes = [Box(b.node, b.x, b.width, b.depth, new_index.get(b.parent, -1))
                 for b in (out.boxes[i] for i in keep)]


# -- colours ----------------------------------------------------------------------------------------

#: (hue range in degrees, saturation, lightness range) per frame kind: python frames warm (red to yellow),
#: native frames aqua, kernel frames green, thread/process roots grey-violet, unknown frames tan
_PALETTE: dict[str, tuple[float, float, float, float, float]] = {
    "python": (0.0, 55.0, 0.85, 0.55, 0.66),
    "native": (175.0, 200.0, 0.55, 0.62, 0.74),
    "kernel": (85.0, 125.0, 0.45, 0.55, 0.66),
    "thread": (255.0, 275.0, 0.18, 0.74, 0.82),
    "process": (255.0, 275.0, 0.18, 0.68, 0.76),
    "other": (28.0, 42.0, 0.35, 0.62, 0.72),
}
LEGEND: list[tuple[str, str]] = [
    (f"hsl({int(h0)}, {int(s * 100)}%, {int(l0 * 100)}%)", kind)
    for kind, (h0, _h1, s, l0, _l1) in _PALETTE.items() if kind != "process"
]


def frame_color(frame: Frame | None) -> str:
    """A frame's fill, ``#rrggbb``: the hue family by kind, the shade by a hash of the function name (stable
    across runs and processes: CRC-32, not Python's salted ``hash``). The root is grey."""
    if frame is None:
        return "#c8c8c8"
    h0, h1, s, l0, l1 = _PALETTE.get(frame.kind, _PALETTE["other"])
    v = zlib.crc32(frame.function.encode("utf-8", "surrogatepass"))
    a, b = (v & 0xFFFF) / 0xFFFF, ((v >> 16) & 0xFFFF) / 0xFFFF
    r, g, bl = colorsys.hls_to_rgb((h0 + (h1 - h0) * a) / 360.0, l0 + (l1 - l0) * b, s)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(bl * 255):02x}"


# -- renderings --------------------------------------------------------------------------------------

def _subtitle(profile: Profile) -> str:
    m = profile.meta
    parts = [f"{profile.total} samples", f"mode {m.mode}"]
    if m.engine:
        parts.append(m.engine)
    if m.rate_hz:
        parts.append(f"{m.rate_hz:g} Hz")
    if m.duration_s:
        parts.append(f"{m.duration_s:g} s")
    if m.pid is not None:
        parts.append(f"pid {m.pid}")
    return ", ".join(parts)


def hidden_note(lay: Layout[N], what: str) -> list[str]:
    """The sentence that says what a layout left out (empty when nothing was)."""
    if not lay.hidden_frames:
        return []
    pct = 100.0 * lay.hidden_samples / lay.total if lay.total else 0.0
    return [f"{lay.hidden_frames} frames narrower than {what} not drawn ({pct:.2f}% of samples)"]


def profile_chart(profile: Profile, *, title: str, min_width: float, max_boxes: int | None, what: str) -> Chart:
    """The chart (bars, notes, legend) of ``profile``'s flamegraph; ``what`` names the cut-off in the note.

    Raises:
        ProfileError: the profile has no samples.
    """
    if profile.total <= 0:
        raise ProfileError("the profile has no samples: there is no flamegraph to draw")
    tree = build_tree(profile)
    lay = layout(tree, min_width=min_width, max_boxes=max_boxes)
    total = float(tree.total)
    bars = []
    for box in lay.boxes:
        node = box.node
        assert isinstance(node, FlameNode)
        kind = node.frame.kind if node.frame is not None else "root"
        info = (f"{node.total} samples ({100.0 * node.total / total:.2f}%), self {node.self_count} "
                f"({100.0 * node.self_count / total:.2f}%), {kind}")
        bars.append(Bar(x=box.x, width=box.width, depth=box.depth, parent=box.parent, fill=frame_color(node.frame),
                        label=node.name, info=info))
    return Chart(title=title, subtitle=_subtitle(profile), total=total, bars=bars,
                 notes=hidden_note(lay, what), legend=LEGEND)


@paused_gc()
def render_svg(profile: Profile, *, title: str = "Flame Graph", width: int = SVG_WIDTH,
               min_width_px: float = SVG_MIN_PX) -> str:
    """A self-contained SVG flamegraph (no external reference): click a frame to zoom, "Search" (or Ctrl-F)
    to highlight matching frames with the matched share, "Reset Zoom" to restore; each frame's ``<title>``
    tooltip gives its function, file:line, samples and share. Every label is XML-escaped.

    Raises:
        ProfileError: the profile has no samples.
    """
    chart_px = width - 20
    min_width = min_width_px * profile.total / chart_px if profile.total else 0.0
    chart = profile_chart(profile, title=title, min_width=min_width, max_boxes=None, what=f"{min_width_px:g} px")
    return render_chart_svg(chart, width=width)


@paused_gc()
def render_html(profile: Profile, *, title: str = "Flame Graph") -> str:
    """An interactive offline HTML page (inline CSS and JS, nothing loaded from anywhere): the flamegraph,
    click to zoom, a search box that highlights matching frames and shows their share, a reset button and
    hover details. The frames are embedded as JSON in a ``<script type="application/json">`` with ``<``,
    ``>`` and ``&`` escaped, so no label can close the tag.

    Raises:
        ProfileError: the profile has no samples.
    """
    chart = profile_chart(profile, title=title, min_width=HTML_MIN_FRACTION * profile.total,
                          max_boxes=HTML_MAX_FRAMES, what=f"{100 * HTML_MIN_FRACTION:g}% of samples")
    return render_chart_html(chart)
