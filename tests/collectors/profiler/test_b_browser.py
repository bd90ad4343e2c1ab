"""The flamegraphs as a person meets them: the HTML page, the diff page and the SVG opened in headless Chromium
(Debian's ``chromium``, driven by Playwright over its DevTools protocol; Playwright's own browsers are never
installed). Click-to-zoom, search and reset must change what is drawn, and the page must load nothing but
itself. Screenshots are kept in ``$NOVATUNE_TEST_ARTIFACTS`` (else ``test-artifacts/`` in the checkout).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.profiler.diff import diff, render_diff_html
from collectors.profiler.flamegraph import render_html, render_svg
from collectors.profiler.formats.collapsed import loads
from collectors.profiler.model import Profile, ProfileMeta

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAIN = "thread (7): MainThread;main (app.py:10)"


def _profile(f: int, g: int, h: int, tiny: int = 1, rate: float = 100) -> Profile:
    text = (f"{MAIN};f (app.py:20) {f}\n{MAIN};g (app.py:30);memcpy (libc.so.6) {g}\n"
            f"{MAIN};h (app.py:40) {h}\n{MAIN};h (app.py:40);tiny (app.py:99) {tiny}\n")
    return loads(text, meta=ProfileMeta(rate_hz=rate, engine="py-spy"))


def _artifacts() -> Path:
    out = Path(os.environ.get("NOVATUNE_TEST_ARTIFACTS") or REPO / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Playwright persistent context on Debian's chromium, with a new user-data-dir."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed: it is in the dev extra of pyproject.toml")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 720})
        try:
            yield context
        finally:
            context.close()


class Opened:
    """A page at a file URL, with every request it made."""

    def __init__(self, context: Any, path: Path) -> None:
        self.url = path.as_uri()
        self.requests: list[str] = []
        self.page = context.new_page()
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.on("pageerror", lambda err: self.requests.append(f"page error: {err}"))
        self.page.goto(self.url)

    def frame(self, label: str) -> Any:
        return self.page.locator("#chart .frame").get_by_text(label, exact=True)

    def width(self, label: str) -> float:
        box = self.frame(label).bounding_box()
        assert box is not None, f"{label} is not drawn"
        return float(box["width"])

    def close(self) -> None:
        self.page.close()
        assert self.requests == [self.url], "the page loaded something besides itself (or a script failed)"


def _chart_width(page: Any, selector: str = "#chart") -> float:
    return float(page.evaluate(f"document.querySelector('{selector}').clientWidth"))


def test_html_flamegraph_zooms_searches_and_resets_offline(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "flame.html"
    path.write_text(render_html(_profile(7000, 2500, 499), title="browser check"))
    o = Opened(browser, path)
    page = o.page
    full = _chart_width(page)
    assert o.width("f (app.py:20)") == pytest.approx(0.70 * full, abs=2)
    assert o.width("g (app.py:30)") == pytest.approx(0.25 * full, abs=2)
    assert o.frame("tiny (app.py:99)").count() == 0  # 0.12 px: not drawn, and said so
    assert page.inner_text("#hidden") == "1 frames too narrow to draw at this zoom (click one to zoom in)"

    o.frame("h (app.py:40)").click()  # zoom: h spans the chart, its siblings are gone, tiny is wide enough now
    assert o.width("h (app.py:40)") == pytest.approx(full, abs=2)
    assert o.frame("f (app.py:20)").count() == 0 and o.frame("g (app.py:30)").count() == 0
    assert o.width("tiny (app.py:99)") == pytest.approx(full / 500, abs=1)
    assert "parent" in (o.frame("main (app.py:10)").get_attribute("class") or "")
    assert page.inner_text("#hidden") == "" and page.inner_text("#zoomed") == "Zoomed: h (app.py:40)"
    o.frame("h (app.py:40)").hover()
    assert page.inner_text("#details").startswith("h (app.py:40)  |  500 samples (5.00%)")

    page.click("#reset")
    page.fill("#search", "f (app")  # search: f highlighted, the share it matched shown
    assert page.inner_text("#matched") == "Matched: 70.00%"
    assert page.locator("#chart .frame.match").all_inner_texts() == ["f (app.py:20)"]
    page.fill("#search", "APP.PY:")  # nested matches count once: main holds them all
    assert page.inner_text("#matched") == "Matched: 100.00%"
    page.fill("#search", "memcpy")
    assert page.inner_text("#matched") == "Matched: 25.00%"
    page.screenshot(path=str(_artifacts() / "flamegraph-html-search.png"), full_page=True)

    o.frame("g (app.py:30)").click()
    page.click("#reset")  # reset: the full picture, nothing highlighted
    assert o.width("f (app.py:20)") == pytest.approx(0.70 * full, abs=2)
    assert page.locator("#chart .frame.match").count() == 0
    assert page.inner_text("#matched") == "" and page.input_value("#search") == ""
    o.close()


def test_diff_html_shows_changes_and_vanished_frames(browser: Any, tmp_path: Path) -> None:
    base = _profile(60, 20, 9, rate=10)
    base.merge(loads(f"{MAIN};gone (app.py:60) 10\n"))  # 10% of the base, absent from the target
    d = diff(base, _profile(3500, 5000, 1499, rate=100))
    path = tmp_path / "diff.html"
    path.write_text(render_diff_html(d, title="diff check"))
    o = Opened(browser, path)
    page = o.page
    full = _chart_width(page)
    f = o.frame("f (app.py:20)")
    assert f.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(30, 30, 255)"  # 60% -> 35%: blue
    assert o.width("f (app.py:20)") == pytest.approx(0.35 * full, abs=2)  # widths from the target
    gone = page.locator("#band-chart .frame.vanished").get_by_text("gone (app.py:60)", exact=True)
    box = gone.bounding_box()
    assert box is not None and box["width"] == pytest.approx(0.10 * _chart_width(page, "#band-chart"), abs=2)
    assert "repeating-linear-gradient" in gone.evaluate("e => getComputedStyle(e).backgroundImage")
    page.fill("#search", "gone")
    assert page.locator("#band-chart .frame.match").count() == 1
    page.fill("#search", "f (app")
    assert page.inner_text("#matched") == "Matched: 35.00%"
    o.frame("g (app.py:30)").click()
    assert o.width("g (app.py:30)") == pytest.approx(full, abs=2) and o.frame("f (app.py:20)").count() == 0
    assert page.locator("#table tr").nth(1).inner_text().split("\t")[:1] == ["memcpy (libc.so.6)"]
    page.screenshot(path=str(_artifacts() / "flamegraph-diff-html.png"), full_page=True)
    o.close()


def test_svg_flamegraph_zooms_searches_and_resets_in_chromium(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "flame.svg"
    path.write_text(render_svg(_profile(7000, 2500, 499), title="svg check"))
    o = Opened(browser, path)
    page = o.page
    groups = page.locator("#frames > g")

    def group(label: str) -> Any:
        return groups.filter(has=page.locator(f"xpath=./*[local-name()='title'][starts-with(., '{label}')]"))

    def rect_width(label: str) -> float:
        return float(group(label).locator("rect").get_attribute("width") or "nan")

    assert rect_width("f (app.py:20)") == pytest.approx(0.70 * 1180 - 0.5, abs=0.05)
    group("g (app.py:30)").locator("rect").click()
    assert rect_width("g (app.py:30)") == pytest.approx(1180 - 0.5, abs=0.05)
    assert group("f (app.py:20)").is_hidden() and group("g (app.py:30)").is_visible()
    assert group("memcpy (libc.so.6)").locator("text").text_content() == "memcpy (libc.so.6)"

    page.once("dialog", lambda dialog: dialog.accept("memcpy"))
    page.locator("#search").click()
    assert page.locator("#matched").text_content() == "Matched: 25.00%"
    assert group("memcpy (libc.so.6)").get_attribute("class") == "f match"
    page.screenshot(path=str(_artifacts() / "flamegraph-svg-zoomed.png"))

    page.locator("#reset").click()
    assert group("f (app.py:20)").is_visible() and rect_width("f (app.py:20)") == pytest.approx(0.70 * 1180 - 0.5,
                                                                                               abs=0.05)
    assert page.locator("#matched").text_content() == "" and page.locator("#frames > g.match").count() == 0
    o.close()
