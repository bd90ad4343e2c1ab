"""Differential flamegraphs: shares, deltas, colours, vanished frames, the JSON form and the renderings."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from collectors.profiler.diff import (
    NEUTRAL,
    ProfileDiff,
    diff,
    diff_color,
    render_diff_html,
    render_diff_svg,
)
from collectors.profiler.formats.collapsed import loads
from collectors.profiler.model import Profile, ProfileError, ProfileMeta

SVG = "{http://www.w3.org/2000/svg}"


def mix(f: int, g: int, h: int, *, gone: int = 0, rate: float = 100, tid: int = 1) -> Profile:
    """main calls f, g and h (h calls native poll); ``gone`` samples in old -> older."""
    t = f"thread ({tid}): MainThread;main (app.py:10)"
    text = f"{t};f (app.py:20) {f}\n{t};g (app.py:30) {g}\n{t};h (app.py:40);poll (libc.so.6) {h}\n"
    if gone:
        text += f"{t};old (app.py:50);older (app.py:55) {gone}\n"
    return loads(text, meta=ProfileMeta(rate_hz=rate))


def _node(d: ProfileDiff, *path: str):  # type: ignore[no-untyped-def]
    node = d.root
    for name in path:
        node = node.children[name]
    return node


def _rgb(fill: str) -> tuple[int, int, int]:
    return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)


def test_a_profile_against_itself_is_all_neutral_with_zero_delta() -> None:
    p = mix(70, 25, 5, gone=3)
    d = diff(p, p)
    assert d.vanished() == [] and d.scale == 0
    for node, _ in d.walk():
        assert d.delta_pct(node) == 0 and d.status(node) == "same" and d.color(node) == NEUTRAL
    assert {f["delta_pct"] for f in d.functions()} == {0}
    doc = d.to_dict()
    assert {f["status"] for f in doc["frames"]} == {"same"} and doc["vanished"] == []


def test_a_known_change_gives_its_delta_and_colours() -> None:
    d = diff(mix(70, 25, 5), mix(35, 55, 10))
    rows = d.functions()
    assert rows[0] == {"function": "f", "file": "app.py", "base_pct": 70.0, "target_pct": 35.0, "delta_pct": -35.0}
    assert [(r["function"], r["delta_pct"]) for r in rows] == [("f", -35.0), ("g", 30.0), ("poll", 5.0)]
    f = _node(d, "main (app.py:10)", "f (app.py:20)")
    g = _node(d, "main (app.py:10)", "g (app.py:30)")
    h = _node(d, "main (app.py:10)", "h (app.py:40)")
    main = _node(d, "main (app.py:10)")
    assert (d.status(f), d.status(g), d.status(h), d.status(main)) == ("shrank", "grew", "grew", "same")
    assert d.color(f) == "#0000ff"  # the largest change: full blue
    r, gg, b = _rgb(d.color(g))  # 30 of 35 points: strongly red
    assert r == 255 and gg == b and gg < 40
    r, gg, b = _rgb(d.color(h))  # 5 points: light red
    assert r == 255 and gg == b and 140 < gg < 200
    assert d.color(main) == NEUTRAL


def test_changes_within_the_noise_threshold_are_neutral() -> None:
    d = diff(mix(700, 250, 50), mix(697, 253, 50), noise_pct=0.5)  # 0.3 points each way
    assert all(d.status(n) == "same" and d.color(n) == NEUTRAL for n, _ in d.walk())
    d = diff(mix(700, 250, 50), mix(697, 253, 50), noise_pct=0.1)
    f = _node(d, "main (app.py:10)", "f (app.py:20)")
    assert d.status(f) == "shrank" and d.color(f) == "#0000ff"


def test_diff_color_saturation_follows_the_change() -> None:
    assert diff_color(0.4, scale=10, noise_pct=0.5) == NEUTRAL
    weak, strong = _rgb(diff_color(-1, scale=10, noise_pct=0.5)), _rgb(diff_color(-8, scale=10, noise_pct=0.5))
    assert weak[2] == strong[2] == 255 and weak[0] > strong[0]
    assert diff_color(10, scale=10, noise_pct=0.5) == "#ff0000"


def test_profiles_at_different_rates_and_durations_compare_by_share() -> None:
    base = mix(70, 25, 5, rate=10)  # 100 samples at 10 Hz
    target = mix(7000, 2500, 500, rate=100, tid=99)  # 10000 samples at 100 Hz, another thread id
    d = diff(base, target)
    assert (d.base_total, d.target_total) == (100, 10000)
    assert all(d.delta_pct(n) == 0 for n, _ in d.walk())
    d = diff(base, mix(3500, 5500, 1000, rate=100))
    assert d.functions()[0]["delta_pct"] == -35.0


def test_vanished_frames_are_listed_drawn_and_tested() -> None:
    d = diff(mix(60, 25, 5, gone=10), mix(35, 55, 10))
    older = _node(d, "main (app.py:10)", "old (app.py:50)", "older (app.py:55)")
    assert d.status(older) == "vanished" and d.delta_pct(older) == -10.0
    assert [p for p, _ in d.vanished()] == [("main (app.py:10)", "old (app.py:50)")]  # the top-most only
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["vanished"] == [{"path": ["main (app.py:10)", "old (app.py:50)"], "base_pct": 10.0}]
    assert {"function": "older", "file": "app.py", "base_pct": 10.0, "target_pct": 0.0, "delta_pct": -10.0} \
        in doc["functions"]
    svg = ET.fromstring(render_diff_svg(d))
    band = svg.find(f".//{SVG}g[@id='band']")
    assert band is not None
    titles = [g.find(f"{SVG}title").text for g in band]  # type: ignore[union-attr]
    assert [t.split("\n")[0] for t in titles] == ["old (app.py:50)", "older (app.py:55)"]  # type: ignore[union-attr]
    assert "vanished: base 10.00% (10 samples), not in target; called from main (app.py:10)" in titles[0]  # type: ignore[operator]
    rect = band[0].find(f"{SVG}rect")
    assert rect is not None and rect.get("fill") == "url(#hatch)"
    assert float(rect.get("width") or 0) == pytest.approx(0.10 * 1180 - 0.5, abs=0.02)  # its base width
    frames = svg.find(f".//{SVG}g[@id='frames']")
    assert frames is not None and "old" not in "".join(frames.itertext())  # no width in the target
    page = render_diff_html(d)
    assert "Vanished: 1 frame of the base (10.00% of its samples) is absent from the target" in page
    data = json.loads(page.split('<script type="application/json" id="flame-data">')[1].split("</script>")[0])
    assert [b[5] for b in data["band"]["bars"]] == ["old (app.py:50)", "older (app.py:55)"]
    assert data["band"]["bars"][0][4] == "hatch"


def test_new_frames_grow_from_nothing() -> None:
    d = diff(mix(70, 30, 0), mix(70, 20, 10))
    h = _node(d, "main (app.py:10)", "h (app.py:40)")
    assert d.status(h) == "new" and d.base_pct(h) == 0 and d.delta_pct(h) == 10.0
    assert _rgb(d.color(h))[0] == 255


def test_the_json_form_has_functions_frames_shares_and_totals() -> None:
    d = diff(mix(70, 25, 5), mix(35, 55, 10), noise_pct=1.0)
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["noise_pct"] == 1.0 and doc["base"]["total"] == 100 and doc["target"]["total"] == 100
    assert set(doc["functions"][0]) == {"function", "file", "base_pct", "target_pct", "delta_pct"}
    by_name = {f["name"]: f for f in doc["frames"]}
    f = by_name["f (app.py:20)"]
    assert (f["function"], f["file"], f["line"], f["kind"]) == ("f", "app.py", 20, "python")
    assert (f["base_pct"], f["target_pct"], f["delta_pct"], f["status"]) == (70.0, 35.0, -35.0, "shrank")
    assert doc["frames"][f["parent"]]["name"] == "main (app.py:10)"
    assert by_name["main (app.py:10)"]["parent"] == -1
    assert "thread (1): MainThread" not in by_name  # threads merged by default


def test_threads_can_be_kept_by_name_whatever_their_ids() -> None:
    d = diff(mix(70, 25, 5, tid=111), mix(70, 25, 5, tid=222), threads=True)
    assert list(d.root.children) == ["thread: MainThread"]
    assert all(d.delta_pct(n) == 0 for n, _ in d.walk())
    assert all(f["function"] != "thread: MainThread" for f in d.functions())


def test_bad_input_is_a_clear_error() -> None:
    p = mix(70, 25, 5)
    with pytest.raises(ProfileError, match="the base profile has no samples"):
        diff(Profile(), p)
    with pytest.raises(ProfileError, match="the target profile has no samples"):
        diff(p, Profile())
    for bad in (-1, float("nan"), 101):
        with pytest.raises(ProfileError, match="noise threshold"):
            diff(p, p, noise_pct=bad)


def test_diff_renderings_parse_and_escape_hostile_labels() -> None:
    base = loads("main (a.py:1);<script>x</script> (a&b.py:2) 5\nmain (a.py:1);ok (a.py:3) 5\n")
    target = loads("main (a.py:1);ok (a.py:3) 5\nmain (a.py:1);</script>\"' (q.py:1) 5\n")
    d = diff(base, target)
    svg = render_diff_svg(d, title="<b>t</b>")
    root = ET.fromstring(svg)
    assert "<script>x" not in svg and root.find(f"{SVG}text[@id='title']").text == "<b>t</b>"  # type: ignore[union-attr]
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("<script>x</script> (a&b.py:2)") for t in titles)  # drawn in the vanished band
    page = render_diff_html(d, title="<b>t</b>")
    assert "<script>x" not in page and page.count("</script>") == 2 and "<b>t" not in page
    assert "<td>&lt;script&gt;x&lt;/script&gt; (a&amp;b.py)</td>" in page  # the functions table
