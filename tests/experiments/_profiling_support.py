"""Real targets and independent readers for the profiler faces' tests (CLI, API, `novatune serve`).

Every target is a real Python process that ends itself after its lifetime and is killed and reaped at the end
of its block; py-spy processes are found by the pid they name, so only the test's own are counted (other
work on this machine may run py-spy too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

from tests.collectors.profiler._c_support import pyspy_children

#: the interpreter's real executable (what /proc/PID/exe shows): what allowed_targets must name
PYTHON_EXE = os.path.realpath(sys.executable)

#: a CPU-bound program whose time splits A % / (100 - A) % between heavy_a and heavy_b (A: its argument)
MIX = textwrap.dedent("""
    import os, sys, threading, time
    threading.Timer(float(os.environ.get("MIX_LIFETIME", "90")), os._exit, (0,)).start()
    A = int(sys.argv[1]) if len(sys.argv) > 1 else 70
    def heavy_a(n):
        x = 0
        for i in range(n):
            x += i
        return x
    def heavy_b(n):
        x = 0
        for i in range(n):
            x += i
        return x
    print("READY", flush=True)
    end = time.monotonic() + float(os.environ.get("MIX_RUN_S", "1e9"))
    while time.monotonic() < end:
        heavy_a(A * 1000)
        heavy_b((100 - A) * 1000)
""")

IDLE = 'import os, threading, time\nthreading.Timer(90, os._exit, (0,)).start()\nprint("READY", flush=True)\n' \
       'time.sleep(90)\n'


def mix_script(directory: Path) -> Path:
    """The mix program, written into ``directory``."""
    path = directory / "mix.py"
    path.write_text(MIX)
    return path


@contextmanager
def spawned(argv: list[str], *, ready: str | None = "READY", env: dict[str, str] | None = None,
            ) -> Iterator[subprocess.Popen[str]]:
    """``argv`` running (after it printed ``ready``, when given); killed and reaped at the end of the block."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    try:
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert ready in line, f"target did not start: {line!r}"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def mix_proc(directory: Path, share_a: int = 70, *, lifetime_s: float = 90) -> Iterator[subprocess.Popen[str]]:
    """The mix program running with ``share_a`` % of its time in heavy_a."""
    with spawned([sys.executable, str(mix_script(directory)), str(share_a)],
                 env={"MIX_LIFETIME": str(lifetime_s)}) as proc:
        yield proc


def gone_pid() -> int:
    """A pid that no process has now (a child that ran and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def pyspy_under(parent: int) -> list[int]:
    """py-spy processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if exe.endswith("py-spy") and stat[stat.rfind(")") + 2:].split()[1] == str(parent):
            found.append(int(entry))
    return found


def own_pyspy(*targets: int) -> list[int]:
    """py-spy processes that name one of ``targets`` or are this process's children."""
    return sorted({p for t in targets for p in pyspy_children(t)} | set(pyspy_under(os.getpid())))


def wait_until(pred, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Polls ``pred()`` until it is truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -------------------------------------------------------------- readers of the pages (python's own parsers)
def _shares(self_counts: dict[str, float]) -> dict[str, float]:
    total = sum(self_counts.values())
    return {fn: 100.0 * n / total for fn, n in self_counts.items()} if total else {}


def _function(label: str) -> str:
    """``heavy_a (/tmp/mix.py:7)`` -> ``heavy_a``."""
    return label.split(" (", 1)[0]


def _self_samples(detail: str) -> float:
    """``80 samples (40.40%), self 80 (40.40%), python`` -> 80."""
    return float(detail.split("self ", 1)[1].split(" ", 1)[0])


def svg_shares(data: bytes) -> dict[str, float]:
    """Self share per function from a flamegraph SVG, read with xml.etree (every frame's <title> is its
    label, then ``N samples (P%), self S (Q%), kind``).

    Raises:
        xml.etree.ElementTree.ParseError: not well-formed XML.
    """
    root = ET.fromstring(data)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg", root.tag
    counts: dict[str, float] = {}
    for g in root.iter(f"{ns}g"):
        if g.get("class") != "f":
            continue
        title = g.find(f"{ns}title")
        assert title is not None and title.text
        label, _, detail = title.text.partition("\n")
        counts[_function(label)] = counts.get(_function(label), 0.0) + _self_samples(detail)
    return _shares(counts)


class Page(HTMLParser):
    """What html.parser sees in a page: its tags, scripts (inline text and any src), links and CSP meta."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.external: list[str] = []
        self.csp: str | None = None
        self._in_script: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href"):
            value = a.get(key)
            if value and not value.startswith(("#", "data:")):
                self.external.append(value)
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content")
        if tag == "script":
            self._in_script, self._text = a, []

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._text)))
            self._in_script = None

    def data(self, element_id: str) -> object:
        """The JSON of the ``<script type="application/json" id=element_id>`` block."""
        for attrs, text in self.scripts:
            if attrs.get("id") == element_id:
                return json.loads(text)
        raise AssertionError(f"no script #{element_id} in the page")


def html_shares(data: bytes) -> dict[str, float]:
    """Self share per function from the HTML flamegraph's data block (bars: ``[x, w, depth, parent, colour,
    label, detail, ...]``), read with html.parser and json."""
    page = Page(data.decode())
    bars = page.data("flame-data")["bars"]  # type: ignore[index]
    counts: dict[str, float] = {}
    for bar in bars:
        label, detail = bar[5], bar[6]
        if "self " in detail:
            counts[_function(label)] = counts.get(_function(label), 0.0) + _self_samples(detail)
    return _shares(counts)


def json_shares(data: bytes) -> dict[str, float]:
    """Self share per leaf function from novatune's JSON document (``frames``: [function, file, line, kind];
    ``samples``: [[frame ids root first], count])."""
    doc = json.loads(data)
    names = [f[0] for f in doc["frames"]]
    counts: dict[str, float] = {}
    for stack, count in doc["samples"]:
        counts[names[stack[-1]]] = counts.get(names[stack[-1]], 0.0) + count
    return _shares(counts)
