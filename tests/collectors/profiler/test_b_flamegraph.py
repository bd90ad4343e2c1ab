"""The flame tree, its layout and the SVG/HTML flamegraphs (read back by xml.etree and html.parser)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.profiler.flamegraph import (
    FlameNode,
    build_tree,
    frame_color,
    layout,
    render_html,
    render_svg,
)
from collectors.profiler.formats.collapsed import loads
from collectors.profiler.model import Frame, Profile, ProfileError, ProfileMeta

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ["<script>alert(1)</script>", "</script><img src=x onerror=alert(2)>", "say \"hi\" 'there'", "a & b; c",
           "end ]]> cdata", "<!-- comment", "nul\x00bell\x07", "lone \udcff surrogate"]

MIX = """\
thread (1): MainThread;main (app.py:10);f (app.py:20) 70
thread (1): MainThread;main (app.py:10);g (app.py:30);memcpy (libc.so.6) 25
thread (1): MainThread;main (app.py:10);h (app.py:40);do_syscall_64_[k] 5
"""


def _mix() -> Profile:
    return loads(MIX, meta=ProfileMeta(rate_hz=100, engine="py-spy"))


def _check_sums(node: FlameNode) -> None:
    for n, _ in node.walk():
        assert n.total == n.self_count + sum(c.total for c in n.children.values()), n.name


def test_tree_totals_equal_the_sample_counts() -> None:
    prof = _mix()
    root = build_tree(prof)
    assert root.total == prof.total == 100
    _check_sums(root)
    main = root.children["thread (1): MainThread"].children["main (app.py:10)"]
    assert main.total == 100 and main.self_count == 0
    assert {c.name: c.total for c in main.children.values()} == {"f (app.py:20)": 70, "g (app.py:30)": 25,
                                                                  "h (app.py:40)": 5}
    assert sum(n.self_count for n, _ in root.walk()) == prof.total


def test_stacks_merge_by_label_path_and_self_counts_stay_with_their_frame() -> None:
    prof = loads("a;b 3\na;b;c 2\na 1\nx;b 4\n")
    root = build_tree(prof)
    a = root.children["a"]
    assert (a.total, a.self_count) == (6, 1)
    assert (a.children["b"].total, a.children["b"].self_count) == (5, 3)
    assert root.children["x"].children["b"].total == 4  # the same label under another parent is another node


stacks = st.dictionaries(st.lists(st.sampled_from(["a", "b", "c", "d (m.py:1)"]), min_size=1, max_size=6).map(tuple),
                         st.integers(1, 50), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(stacks)
def test_any_profile_keeps_its_totals_and_the_layout_nests(data: dict[tuple[str, ...], int]) -> None:
    prof = loads("".join(";".join(k) + f" {v}\n" for k, v in data.items()))
    root = build_tree(prof)
    assert root.total == sum(data.values())
    _check_sums(root)
    lay = layout(root)
    assert lay.hidden_frames == 0 and len(lay.boxes) == sum(1 for _ in root.walk())
    for box in lay.boxes[1:]:
        parent = lay.boxes[box.parent]
        assert box.depth == parent.depth + 1
        assert parent.x <= box.x and box.x + box.width <= parent.x + parent.width


def test_children_are_ordered_by_name_like_flamegraph_pl() -> None:
    prof = loads("r;zeta 5\nr;alpha 1\nr;Mid 2\n")
    lay = layout(build_tree(prof))
    kids = sorted((b for b in lay.boxes if b.depth == 2), key=lambda b: b.x)
    assert [b.node.name for b in kids] == ["Mid", "alpha", "zeta"]
    assert [(b.x, b.width) for b in kids] == [(0, 2), (2, 1), (3, 5)]


def test_frames_below_the_minimum_width_are_counted_not_lost() -> None:
    prof = loads("main;big 9990\nmain;tiny;deeper 10\n")
    lay = layout(build_tree(prof), min_width=100)
    assert "tiny" not in {b.node.name for b in lay.boxes}
    assert (lay.hidden_frames, lay.hidden_samples) == (2, 10)
    svg = render_svg(prof, width=1200, min_width_px=10)  # 10 px of 1180 = 84.7 samples > 10
    assert "tiny" not in svg and "2 frames narrower than 10 px not drawn (0.10% of samples)" in svg
    assert "tiny" in render_html(prof)  # the page embeds it: zooming in shows it


def test_max_boxes_keeps_the_widest_frames_and_their_parents() -> None:
    prof = loads("a;b;c 50\na;d 30\na;e;f 20\n")
    lay = layout(build_tree(prof), max_boxes=4)
    assert [b.node.name for b in lay.boxes] == ["all", "a", "b", "c"]
    assert all(b.parent < i for i, b in enumerate(lay.boxes)) and lay.boxes[0].parent == -1
    assert (lay.hidden_frames, lay.hidden_samples) == (3, 50)  # d, e, f; 30 + 20 samples


def test_colours_are_stable_warm_for_python_and_distinct_by_kind() -> None:
    py = frame_color(Frame("handle", "app.py", 3))
    assert py == frame_color(Frame("handle", "other.py", 99)) == "#f05c48"  # by function name, CRC-32: fixed
    r, g, b = (int(py[i:i + 2], 16) for i in (1, 3, 5))
    assert r > g > b  # warm
    kinds = {frame_color(Frame("fn", "x.py" if k == "python" else "", kind=k))  # type: ignore[arg-type]
             for k in ("python", "native", "kernel", "thread", "other")}
    assert len(kinds) == 5
    assert frame_color(Frame("fn", "libc.so.6", kind="native"))[1:3] < "a0"  # aqua: little red


def test_svg_parses_and_every_frame_has_a_title_with_place_samples_and_share() -> None:
    svg = render_svg(_mix(), title="mix")
    root = ET.fromstring(svg)
    frames = root.find(f".//{SVG}g[@id='frames']")
    assert frames is not None
    groups = frames.findall(f"{SVG}g")
    assert len(groups) == 8  # all, thread, main, f, g, memcpy, h, do_syscall_64
    for g in groups:
        title, rect = g.find(f"{SVG}title"), g.find(f"{SVG}rect")
        assert title is not None and title.text and rect is not None
    tips = {g.find(f"{SVG}title").text.split("\n")[0]: g.find(f"{SVG}title").text for g in groups}  # type: ignore[union-attr]
    assert tips["g (app.py:30)"] == "g (app.py:30)\n25 samples (25.00%), self 0 (0.00%), python"
    assert tips["memcpy (libc.so.6)"].endswith("25 samples (25.00%), self 25 (25.00%), native")
    widths = {g.find(f"{SVG}title").text.split("\n")[0]: float(g.find(f"{SVG}rect").get("width"))  # type: ignore[union-attr,arg-type]
              for g in groups}
    assert widths["f (app.py:20)"] == pytest.approx(0.7 * 1180 - 0.5, abs=0.02)


def test_svg_is_self_contained() -> None:
    svg = render_svg(_mix())
    assert re.findall(r"https?://[^\"'\s]+", svg) == ["http://www.w3.org/2000/svg"]  # the namespace, never fetched
    assert "href" not in svg and "@import" not in svg and "url(" not in svg.replace("url(#hatch)", "")


def _hostile() -> Profile:
    prof = Profile()
    for i, label in enumerate(HOSTILE):
        prof.add([Frame("main", "app.py", 1), Frame(label, f"{label}.py", i + 1)], 10 + i)
    return prof


def test_hostile_labels_are_escaped_in_the_svg() -> None:
    svg = render_svg(_hostile(), title="</title><script>alert(3)</script>")
    assert "<script>alert" not in svg and "<img" not in svg and "<!-- comment" not in svg
    assert svg.count("<script") == 2 and svg.count("]]>") == 1  # the config and the one CDATA script
    root = ET.fromstring(svg.encode("utf-8"))  # parses: nothing broke out of an attribute or a text node
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    for label in HOSTILE[:6]:
        assert any(t.startswith(label) for t in titles), label
    assert any(t.startswith("nul\ufffdbell\ufffd") for t in titles)  # XML cannot hold NUL/BEL: replaced
    assert root.find(f"{SVG}text[@id='title']").text == "</title><script>alert(3)</script>"  # type: ignore[union-attr]


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def test_hostile_labels_are_escaped_in_the_html() -> None:
    page = render_html(_hostile(), title="</title><script>alert(3)</script>")
    parser = _Scripts()
    parser.feed(page)
    assert [a.get("type") for a, _ in parser.scripts] == ["application/json", None]
    assert "img" not in parser.tags and page.count("</script>") == 2
    data = json.loads(parser.scripts[0][1])
    labels = [b[5] for b in data["bars"]]
    for label in HOSTILE[:6]:
        assert any(lab.startswith(label) for lab in labels), label
    assert data["title"] == "</title><script>alert(3)</script>"
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(3)&lt;/script&gt;</title>" in page
    page.encode("utf-8")  # no lone surrogate left in it


def test_html_is_offline_and_locks_itself_down() -> None:
    page = render_html(_mix())
    assert not re.search(r"\s(src|href)=", page) and not re.search(r"https?:", page)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and csp.group(1).startswith("default-src &apos;none&apos;; script-src &apos;sha256-")


def test_an_empty_profile_is_a_clear_error() -> None:
    with pytest.raises(ProfileError, match="no samples"):
        render_svg(Profile())
    with pytest.raises(ProfileError, match="no samples"):
        render_html(Profile())


def test_rendering_pauses_the_garbage_collector_and_restores_it_as_it_was() -> None:
    import gc

    assert gc.isenabled()
    render_svg(_mix())
    assert gc.isenabled()
    gc.disable()
    try:
        render_html(_mix())
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ProfileError):
        render_svg(Profile())
    assert gc.isenabled()
