"""speedscope's own importer (its npm release, in headless Chromium) opens novatune's speedscope, pprof and
collapsed output, and its sandwich table (total and self weight per function) agrees with novatune's hotspots.

The release comes from ``npm pack speedscope`` (``.ci/run`` unpacks it and sets ``SPEEDSCOPE_RELEASE`` to its
``dist/release`` folder); the files are served on 127.0.0.1 and opened with ``#profileURL=...&view=sandwich``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from collectors.profiler.formats import collapsed, pprof, speedscope
from collectors.profiler.hotspots import Hotspot, hotspots
from tests.collectors.profiler.a_samples import known_profile

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str:
    release = os.environ.get("SPEEDSCOPE_RELEASE", "")
    if not release or not (Path(release) / "index.html").is_file():
        return "speedscope's release (npm pack speedscope; set SPEEDSCOPE_RELEASE to its dist/release)"
    return "" if CHROMIUM else "chromium (apt-get install chromium)"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base URL, folder)``: speedscope's release and the files the test writes, on 127.0.0.1."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f".ci/run provides it, but it is missing: {missing}")
        pytest.skip(f"missing: {missing}")
    root = tmp_path / "www"
    shutil.copytree(os.environ["SPEEDSCOPE_RELEASE"], root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _Rows(HTMLParser):
    """The sandwich table's rows: ``[total cell, self cell, name cell]`` text, and the name cell's title."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[list[str], str]] = []
        self._cells: list[str] | None = None
        self._title = ""
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._cells, self._title = [], ""
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
            self._in_td = True
            self._title = dict(attrs).get("title") or self._title

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_td = False
        elif tag == "tr" and self._cells is not None:
            if len(self._cells) == 3:
                self.rows.append(([c.strip() for c in self._cells], self._title))
            self._cells = None

    def handle_data(self, data: str) -> None:
        if self._in_td and self._cells:
            self._cells[-1] += data


def _sandwich(base: str, name: str, profile_dir: Path) -> dict[str, tuple[str, str]]:
    """speedscope's sandwich table for the served file ``name``: symbol -> (total cell, self cell)."""
    url = f"{base}/index.html#profileURL={base}/{name}&view=sandwich"
    rows: dict[str, tuple[str, str]] = {}
    dom = ""
    # under load (the CI run of the whole suite) chromium has dumped the page with the table element but
    # before its rows were laid out: dump again with more virtual time, at most three times
    for attempt, budget in enumerate((10000, 30000, 60000)):
        res = subprocess.run([CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile_dir}-{attempt}",
                              f"--virtual-time-budget={budget}", "--dump-dom", url], capture_output=True,
                             text=True, timeout=180)
        assert res.returncode == 0, res.stderr[-2000:]
        parser = _Rows()
        parser.feed(res.stdout)
        rows, dom = {cells[2]: (cells[0], cells[1]) for cells, _ in parser.rows}, res.stdout
        if rows:
            break
    table = dom.find("<table")
    assert rows, f"speedscope showed no sandwich rows for {name}: {dom[table:table + 3000]}"
    return rows


def _pct(cell: str) -> float:
    m = re.search(r"\((<)?([\d.]+)%\)$", cell)
    assert m, cell
    return 0.0 if m.group(1) else float(m.group(2))


def test_speedscope_imports_the_speedscope_output_per_thread(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "p.speedscope.json").write_text(speedscope.dumps(known_profile(rate_hz=100.0)))
    rows = _sandwich(base, "p.speedscope.json", tmp_path / "chromium")
    # the first thread's profile (700 samples at 100 Hz = 7 s): parse 400 of them, self and total
    assert rows["parse"] == ("4.00s (57%)", "4.00s (57%)")
    assert rows["main"][0] == "7.00s (100%)"


def test_speedscope_imports_the_pprof_output_and_agrees_with_hotspots(served: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    base, root = served
    prof = known_profile(rate_hz=100.0)
    (root / "p.pb.gz").write_bytes(pprof.dumps(prof))
    rows = _sandwich(base, "p.pb.gz", tmp_path / "chromium")
    assert rows["parse"] == ("4.00s (40%)", "4.00s (40%)")  # cpu nanoseconds, the default sample type
    assert rows["fib"][0] == "2.00s (20%)"  # recursion and two lines: once per sample, one function
    assert rows["main"][0] == "9.40s (94%)"
    ours = {h.function + ("_[k]" if h.function == "schedule" else ""): h for h in hotspots(prof, threshold_pct=0)}
    assert set(rows) == set(ours)
    for name, (total, self_) in rows.items():
        assert _pct(total) == pytest.approx(ours[name].total_pct, abs=0.5), name
        assert _pct(self_) == pytest.approx(ours[name].self_pct, abs=0.5), name


def test_speedscope_imports_the_collapsed_output_and_agrees_with_line_hotspots(served: tuple[str, Path],
                                                                              tmp_path: Path) -> None:
    base, root = served
    prof = known_profile(rate_hz=100.0)
    (root / "p.txt").write_text(collapsed.dumps(prof))
    rows = _sandwich(base, "p.txt", tmp_path / "chromium")
    assert rows["handle (/srv/app/app.py:12)"] == ("620 (62%)", "100 (10%)")
    kernel = {f.function for f in prof.frames if f.kind == "kernel"}  # collapsed marks them as perf does: _[k]

    def label(h: Hotspot) -> str:
        if h.file:
            return f"{h.function} ({h.file}:{h.line})"
        return f"{h.function}_[k]" if h.function in kernel else h.function

    ours = {label(h).replace(";", ":"): h for h in hotspots(prof, threshold_pct=0, by="line")}
    ours = {k.replace(":0)", ")"): h for k, h in ours.items()}  # a native frame has no line
    code_rows = {k: v for k, v in rows.items() if not k.startswith("thread (")}
    assert set(code_rows) == set(ours)
    for name, (total, self_) in code_rows.items():
        assert _pct(total) == pytest.approx(ours[name].total_pct, abs=0.5), name
        assert _pct(self_) == pytest.approx(ours[name].self_pct, abs=0.5), name
