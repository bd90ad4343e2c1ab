"""The tracemalloc wrapper (part C): runs a program as ``python`` would and writes its allocation sites at exit
or on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import collectors.profiler.tracewrap as tracewrap

WRAPPER = Path(tracewrap.__file__)


def _run(tmp_path: Path, *program: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "alloc.json"
    done = subprocess.run([sys.executable, str(WRAPPER), "--out", str(out), "--top", "5", "--", *program],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return done, json.loads(out.read_text()) if out.exists() else {}


def test_a_script_runs_as_main_with_its_argv_and_path_and_its_sites_are_written(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 'mine'\n")
    app = tmp_path / "app.py"
    app.write_text("import sys, helper\n"
                   "keep = [str(i) * 50 for i in range(30000)]\n"
                   "print(__name__, sys.argv[1:], helper.VALUE)\n"
                   "sys.exit(4)\n")
    done, doc = _run(tmp_path, str(app), "a", "b")
    assert done.returncode == 4 and done.stdout.strip() == "__main__ ['a', 'b'] mine", done.stderr
    top = doc["top"][0]
    assert (top["file"], top["line"]) == (str(app), 2) and top["count"] >= 30000 and top["size_bytes"] > 1_000_000
    assert len(doc["top"]) <= 5 and doc["traced_peak_bytes"] >= top["size_bytes"]
    assert not any(row["file"] == str(WRAPPER) for row in doc["top"])


def test_module_and_code_forms(tmp_path):
    (tmp_path / "mod.py").write_text("import sys\nprint('mod', __name__, sys.argv[1:])\n")
    done, doc = _run(tmp_path, "-m", "mod", "x")
    assert done.stdout.strip() == "mod __main__ ['x']" and "top" in doc
    done, doc = _run(tmp_path, "-c", "data = bytearray(3_000_000); print('code')")
    assert done.stdout.strip() == "code" and doc["top"][0]["file"] == "<string>"


def test_sigterm_writes_the_snapshot_even_with_a_non_daemon_thread(tmp_path):
    app = tmp_path / "server.py"
    app.write_text("import threading, time\n"
                   "blob = bytearray(2_000_000)\n"
                   "threading.Thread(target=time.sleep, args=(60,)).start()\n"
                   "print('up', flush=True)\n"
                   "time.sleep(60)\n")
    out = tmp_path / "alloc.json"
    proc = subprocess.Popen([sys.executable, str(WRAPPER), "--out", str(out), "--", str(app)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        doc = json.loads(out.read_text())
        assert any(row["file"] == str(app) and row["line"] == 2 for row in doc["top"])
    finally:
        proc.kill()
        proc.wait()


def test_usage_errors_exit_2(tmp_path):
    for argv in (["--", "x.py"], ["--out", "f"], ["--out", "f", "--top", "0", "--", "x.py"], ["--bogus"]):
        done = subprocess.run([sys.executable, str(WRAPPER), *argv], capture_output=True, text=True, timeout=30,
                              cwd=tmp_path)
        assert done.returncode == 2 and "usage: tracewrap.py" in done.stderr, argv
