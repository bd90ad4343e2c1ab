"""`novatune profile record|watch|list|show|hotspots` and `novatune flamegraph diff` as a user meets them.

Bad input (fast, in process): exit 2, one line naming what was wrong and what is allowed, no traceback,
nothing stored, no py-spy left. Real recordings (slow, the real CLI in a subprocess, py-spy on spawned Python
programs): every format opened by a reader written by someone else (protoc, speedscope's published schema,
xml.etree, html.parser, json) and the known 70/30 mix recovered from each; a launched command; list, show and
hotspots; a diff of one program under two workloads; continuous windows and Ctrl-C.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._readers import protoc_decode, shares_collapsed, shares_pprof, shares_speedscope, validate_speedscope
from collectors.profiler.store import ProfileStore
from experiments.cli import main
from tests.experiments._profiling_support import (
    IDLE,
    PYTHON_EXE,
    Page,
    gone_pid,
    html_shares,
    json_shares,
    mix_proc,
    mix_script,
    own_pyspy,
    pyspy_under,
    spawned,
    svg_shares,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
ALLOW_PYTHON = json.dumps([f"exe:{PYTHON_EXE}"])
SLEEP_EXE = os.path.realpath("/usr/bin/sleep")  # coreutils' real path (it may be a link elsewhere)
FORMATS = ("collapsed", "speedscope", "pprof", "svg", "html", "json")
HOTSPOT_KEYS = ["function", "file", "line", "self_pct", "total_pct"]


def stored(home: Path) -> list[dict]:
    """What the profile store under ``home`` holds (nothing when it was never created)."""
    if not (home / "profiles").exists():
        return []
    return [r.to_dict() for r in ProfileStore(home / "profiles").list(limit=1000)]


def novatune(*args: str, home: Path, allowed: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, with its own data directory (and ``allowed_targets`` when given)."""
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "200"}
    env.pop("NOVATUNE_ALLOWED_TARGETS", None)
    if allowed is not None:
        env["NOVATUNE_ALLOWED_TARGETS"] = allowed
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env, capture_output=True,
                          timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.args, proc.stderr.decode(errors="replace"))
    return proc


# ====================================================================== bad input (fast, no sampling)
@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("NOVATUNE_HOME", str(h))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NOVATUNE_ALLOWED_TARGETS", raising=False)
    return h


@pytest.fixture(scope="module")
def idle_python():
    with spawned([sys.executable, "-c", IDLE]) as proc:
        yield proc


@pytest.fixture(scope="module")
def sleeper():
    with spawned(["sleep", "60"], ready=None) as proc:
        yield proc


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    out = {"bin": d / "garbage.bin", "json": d / "garbage.json", "text": d / "garbage.txt", "gz": d / "bad.gz",
           "speedscope": d / "bad.speedscope.json", "good": d / "good.txt"}
    out["bin"].write_bytes(bytes(range(256)) * 8)
    out["json"].write_text('{"hello": "world"}\n')
    out["text"].write_text("this is not\na profile\n")
    out["gz"].write_bytes(b"\x1f\x8b but not gzip")
    out["speedscope"].write_text('{"$schema": "https://www.speedscope.app/file-format-schema.json"}')
    out["good"].write_text("main;work 10\nmain;idle 5\n")
    return out


#: (argv with {placeholders}, allowed_targets or None, words the one-line error must hold)
BAD = {
    "no target": (["profile", "record"], None, ["exactly one target", "--pid PID", "-- CMD"]),
    "both targets": (["profile", "record", "--pid", "{py}", "--", sys.executable, "-c", "pass"], None,
                     ["exactly one target", "--pid PID", "-- CMD"]),
    "unknown format": (["profile", "record", "--pid", "{py}", "--format", "gif"], ALLOW_PYTHON,
                       ["'gif'", "allowed: collapsed, speedscope, pprof, svg, html, json"]),
    "rate 0": (["profile", "record", "--pid", "{py}", "--rate", "0"], ALLOW_PYTHON, ["rate", "0", "1 to 1000 Hz"]),
    "rate 5000": (["profile", "record", "--pid", "{py}", "--rate", "5000"], ALLOW_PYTHON,
                  ["rate", "5000", "1 to 1000 Hz"]),
    "duration 0": (["profile", "record", "--pid", "{py}", "--duration", "0"], ALLOW_PYTHON,
                   ["duration 0 s", "allowed: 1 to 3600 s"]),
    "duration 5000": (["profile", "record", "--pid", "{py}", "--duration", "5000"], ALLOW_PYTHON,
                      ["duration 5000 s", "allowed: 1 to 3600 s"]),
    "mode": (["profile", "record", "--pid", "{py}", "--mode", "idle"], ALLOW_PYTHON, ["'idle'", "cpu, wall"]),
    "no such pid": (["profile", "record", "--pid", "{gone}"], ALLOW_PYTHON, ["no process has pid {gone}"]),
    "pid not allowed": (["profile", "record", "--pid", "{py}"], None,
                        ["pid {py}", "is not an allowed target", "allowed_targets", "exe:/PATH", "allowed now: none"]),
    "pid 1": (["profile", "record", "--pid", "1"], ALLOW_PYTHON, ["pid 1", "never targets"]),
    "not python": (["profile", "record", "--pid", "{sleep}"], json.dumps([f"exe:{SLEEP_EXE}"]),
                   ["pid {sleep}", "is not a Python process", "py-spy profiles Python processes only"]),
    "command does not exist": (["profile", "record", "--", "/nonexistent/prog"], None,
                               ["cannot start '/nonexistent/prog'", "No such file"]),
    "record -o missing dir": (["profile", "record", "--pid", "{py}", "-f", "svg", "-o", "{tmp}/no/such/dir/x.svg"],
                              ALLOW_PYTHON, ["cannot write", "{tmp}/no/such/dir", "does not exist"]),
    "watch no target": (["profile", "watch"], None, ["exactly one target", "--pid PID or --cgroup PATH"]),
    "watch both": (["profile", "watch", "--pid", "{py}", "--cgroup", "/sys/fs/cgroup"], None, ["exactly one target"]),
    "watch window": (["profile", "watch", "--pid", "{py}", "--window", "5"], ALLOW_PYTHON, ["5", "10 to 60 s"]),
    "watch rate": (["profile", "watch", "--pid", "{py}", "--window", "10", "--rate", "1000"], ALLOW_PYTHON,
                   ["1000", "5 to 100 Hz"]),
    "watch not allowed": (["profile", "watch", "--pid", "{py}", "--window", "10"], None,
                          ["is not an allowed target", "allowed_targets"]),
    "watch cgroup": (["profile", "watch", "--cgroup", "{tmp}/nocgroup"], None,
                     ["not a cgroup directory", "/sys/fs/cgroup"]),
    "list label": (["profile", "list", "--label", "session"], None, ["'session'", "KEY=VALUE"]),
    "hotspots threshold": (["profile", "hotspots", "{good}", "--threshold", "150"], None, ["150", "0 to 100"]),
}
for _cmd in (["profile", "hotspots"], ["profile", "show"], ["flamegraph", "diff", "{good}"]):
    _name = " ".join(_cmd[:2])
    BAD |= {
        f"{_name} unknown id": ([*_cmd, "0123456789abcdef0123"], None,
                                ["no stored profile has id 0123456789abcdef0123", "novatune profile list"]),
        f"{_name} malformed id": ([*_cmd, "01234abc"], None,
                                  ["'01234abc' is neither a stored profile id", "nor an existing file"]),
        f"{_name} missing file": ([*_cmd, "{tmp}/missing.txt"], None, ["{tmp}/missing.txt", "nor an existing file"]),
        f"{_name} binary file": ([*_cmd, "{bin}"], None, ["{bin}", "neither text nor a gzipped pprof"]),
        f"{_name} json file": ([*_cmd, "{json}"], None, ["{json}", "not a profile file"]),
        f"{_name} text file": ([*_cmd, "{text}"], None, ["{text}", "not a profile file", "frame;frame;... COUNT"]),
        f"{_name} bad gzip": ([*_cmd, "{gz}"], None, ["{gz}", "does not decompress"]),
        f"{_name} bad speedscope": ([*_cmd, "{speedscope}"], None, ["{speedscope}", "not a profile file"]),
        f"{_name} a directory": ([*_cmd, "{tmp}"], None, ["cannot read profile file {tmp}", "directory"]),
    }
BAD["show -o missing dir"] = (["profile", "show", "{good}", "-o", "{tmp}/nope/x.txt"], None,
                              ["cannot write", "does not exist"])
BAD["show -o a directory"] = (["profile", "show", "{good}", "-o", "{tmp}"], None, ["is a directory"])
BAD["diff -o missing dir"] = (["flamegraph", "diff", "{good}", "{good}", "-o", "{tmp}/nope/d.svg"], None,
                              ["cannot write", "does not exist"])
BAD["diff format"] = (["flamegraph", "diff", "{good}", "{good}", "--format", "pprof"], None,
                      ["'pprof'", "allowed: svg, html, json"])
BAD["diff noise"] = (["flamegraph", "diff", "{good}", "{good}", "--noise", "80"], None, ["80", "0 to 50"])
BAD["show format"] = (["profile", "show", "{good}", "--format", "png"], None,
                      ["'png'", "allowed: collapsed, speedscope, pprof, svg, html, json"])


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_exit_2_with_one_clear_line_nothing_stored_nothing_left(
        case, home, tmp_path, monkeypatch, capsys, idle_python, sleeper, files):
    argv, allowed, words = BAD[case]
    subs = {"py": str(idle_python.pid), "sleep": str(sleeper.pid), "gone": str(gone_pid()), "tmp": str(tmp_path),
            **{k: str(v) for k, v in files.items()}}
    argv = [a.format(**subs) for a in argv]
    if allowed is not None:
        monkeypatch.setenv("NOVATUNE_ALLOWED_TARGETS", allowed)
    t0 = time.monotonic()
    code = main(argv)
    took = time.monotonic() - t0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for word in words:
        assert word.format(**subs) in lines[0], (word, lines[0])
    assert "Traceback" not in captured.err + captured.out and captured.out == ""
    assert took < 3, f"refused only after {took:.1f} s: the check comes after work"
    if case == "not python" and shutil.which("perf"):
        assert "--engine perf" in lines[0]  # an option the command has
    assert stored(home) == []
    assert own_pyspy(idle_python.pid, sleeper.pid) == []
    assert idle_python.poll() is None and sleeper.poll() is None, "the targets are untouched"


def test_the_real_cli_exits_2_without_a_traceback(tmp_path, idle_python):
    for argv, words in ((["profile", "record", "--pid", str(idle_python.pid), "-f", "gif"], ["'gif'", "allowed:"]),
                        (["profile", "record", "--pid", str(idle_python.pid)], ["not an allowed target"]),
                        (["flamegraph", "diff", "0123456789abcdef0123", "nope"], ["no stored profile has id"])):
        proc = novatune(*argv, home=tmp_path / "home", allowed=None if "gif" not in argv else ALLOW_PYTHON)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
        assert all(w in err for w in words) and "Traceback" not in err, err
    assert stored(tmp_path / "home") == [] and own_pyspy(idle_python.pid) == []


def test_help_names_the_shapes_users_rely_on(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")

    def helptext(*argv: str) -> str:
        assert main([*argv, "--help"]) == 0
        return capsys.readouterr().out

    top = helptext("profile")
    for word in ("record", "watch", "list", "show", "hotspots"):
        assert word in top
    record = helptext("profile", "record")
    assert "(--pid PID | -- CMD ...)" in record
    for option in ("--pid", "--duration", "--rate", "--mode", "--native", "--engine", "--format", "--output"):
        assert option in record
    assert "collapsed | speedscope | pprof | svg | html | json" in record
    diff = helptext("flamegraph", "diff")
    assert "{BASE} {TARGET}" in diff and "svg | html | json" in diff and "--noise" in diff
    assert "ID|FILE" in helptext("profile", "hotspots")
    assert "--windows" in helptext("profile", "watch")
    for text in (top, record, diff):
        assert "``" not in text, "reStructuredText quotes leak into the help"


# ====================================================================== real recordings
def _shares(fmt: str, path: Path) -> dict[str, float]:
    """heavy_a/heavy_b self shares as the format's own reader sees them."""
    data = path.read_bytes()
    if fmt == "collapsed":
        return shares_collapsed(path)
    if fmt == "speedscope":
        doc = json.loads(data)
        assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
        return shares_speedscope(path)  # validated against the published schema first
    if fmt == "pprof":
        decoded = protoc_decode(data)  # google/pprof's profile.proto, by protoc
        strings = decoded["string_table"]
        assert strings[0] == "" and gzip.decompress(data)
        assert [(strings[t["type"][0]], strings[t["unit"][0]]) for t in decoded["sample_type"]][0][1] == "count"
        return shares_pprof(path)
    if fmt == "svg":
        return svg_shares(data)
    if fmt == "html":
        page = Page(data.decode())
        assert page.external == [], "the page loads nothing (works offline)"
        assert "script" in page.tags and page.csp and "default-src 'none'" in page.csp
        return html_shares(data)
    assert fmt == "json"
    return json_shares(data)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_record_a_running_python_process_in_every_format_each_opened_by_its_reader(tmp_path, fmt):
    home = tmp_path / "home"
    out = tmp_path / f"profile.{fmt}"
    with mix_proc(tmp_path, 70) as target:
        proc = ok(novatune("profile", "record", "--pid", str(target.pid), "--duration", "3", "--rate", "100",
                           "--format", fmt, "-o", str(out), home=home, allowed=ALLOW_PYTHON))
        assert own_pyspy(target.pid) == [] and target.poll() is None
    err = proc.stderr.decode()
    assert f"wrote {out}" in err and f"{fmt})" in err and proc.stdout == b""
    shares = _shares(fmt, out)
    a, b = shares.get("heavy_a", 0.0), shares.get("heavy_b", 0.0)
    assert a == pytest.approx(70, abs=10) and b == pytest.approx(30, abs=10), shares
    rows = stored(home)
    assert len(rows) == 1 and rows[0]["pid"] == target.pid and rows[0]["id"] in err
    assert rows[0]["labels"]["source"] == "record" and rows[0]["rate_hz"] == 100


@pytest.mark.slow
def test_a_launched_command_then_list_show_and_hotspots(tmp_path):
    home = tmp_path / "home"
    script = mix_script(tmp_path)
    # a command novatune starts is its own: no allowed_targets needed; it is ended after the window
    cmd = ok(novatune("profile", "record", "--duration", "3", "--", sys.executable, str(script), "70", home=home))
    assert shares_collapsed_text(cmd.stdout.decode()).get("heavy_a", 0) == pytest.approx(70, abs=10)
    with mix_proc(tmp_path, 70) as target:
        ok(novatune("profile", "record", "--pid", str(target.pid), "-d", "3", "-f", "json", "-o",
                    str(tmp_path / "p.json"), home=home, allowed=ALLOW_PYTHON))
    listed = json.loads(ok(novatune("profile", "list", "--json", home=home)).stdout)
    assert len(listed) == 2
    by_pid = {r["pid"]: r for r in listed}
    assert target.pid in by_pid
    launched = next(r for r in listed if r["pid"] != target.pid)
    for row in listed:
        assert row["labels"]["source"] == "record" and "mix.py" in row["target"] and row["samples"] > 50
        assert {"id", "start", "duration_s", "mode", "rate_hz", "pid", "samples", "labels"} <= set(row)
    only = json.loads(ok(novatune("profile", "list", "--json", "--label", f"pid={target.pid}", home=home)).stdout)
    assert [r["id"] for r in only] == [by_pid[target.pid]["id"]]
    assert "profiles" in ok(novatune("profile", "list", home=home)).stdout.decode()  # the table

    hot = json.loads(ok(novatune("profile", "hotspots", launched["id"], "--json", home=home)).stdout)
    assert hot and all(list(h) == HOTSPOT_KEYS for h in hot)
    assert [h["self_pct"] for h in hot] == sorted((h["self_pct"] for h in hot), reverse=True)
    assert hot[0]["function"] == "heavy_a" and hot[0]["self_pct"] == pytest.approx(70, abs=10)
    assert hot[0]["file"] == str(script) and hot[0]["line"] > 0
    assert {"heavy_a", "heavy_b"} <= {h["function"] for h in hot}
    lines = json.loads(ok(novatune("profile", "hotspots", launched["id"], "--json", "--by", "line",
                                   "--threshold", "0", home=home)).stdout)
    assert sum(1 for h in lines if h["function"] == "heavy_a") >= 1
    table = ok(novatune("profile", "hotspots", launched["id"], home=home)).stdout.decode()
    assert "heavy_a" in table and "self %" in table

    shown = ok(novatune("profile", "show", by_pid[target.pid]["id"], "--format", "collapsed", home=home))
    text = shown.stdout.decode()
    assert text.startswith("#") and json.loads(text.splitlines()[0][1:].strip())  # the metadata header line
    from_file = tmp_path / "shown.txt"
    from_file.write_text(text)
    # the same hotspots from the file as from the id
    by_file = json.loads(ok(novatune("profile", "hotspots", str(from_file), "--json", home=home)).stdout)
    by_id = json.loads(ok(novatune("profile", "hotspots", by_pid[target.pid]["id"], "--json", home=home)).stdout)
    assert [(h["function"], h["self_pct"]) for h in by_file] == [(h["function"], h["self_pct"]) for h in by_id]
    again = ok(novatune("profile", "show", str(tmp_path / "p.json"), "--format", "speedscope", home=home))
    validate_speedscope(json.loads(again.stdout))


def shares_collapsed_text(text: str) -> dict[str, float]:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"novatune-test-{os.getpid()}.txt"
    try:
        path.write_text(text)
        return shares_collapsed(path)
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_diff_of_one_program_under_two_workloads(tmp_path):
    home = tmp_path / "home"
    ids = {}
    for share in (70, 30):  # the same script; its argument moves the time from heavy_a to heavy_b
        with mix_proc(tmp_path, share) as target:
            rec = ok(novatune("profile", "record", "--pid", str(target.pid), "-d", "3", "-o",
                              str(tmp_path / f"w{share}.txt"), home=home, allowed=ALLOW_PYTHON))
        ids[share] = next(r["id"] for r in stored(home) if r["id"] in rec.stderr.decode())
    d = json.loads(ok(novatune("flamegraph", "diff", ids[70], ids[30], "--format", "json", home=home)).stdout)
    rows = {r["function"]: r for r in d["functions"]}
    assert all(set(r) >= {"function", "base_pct", "target_pct", "delta_pct"} for r in d["functions"])
    a, b = rows["heavy_a"], rows["heavy_b"]
    assert a["base_pct"] == pytest.approx(70, abs=10) and a["target_pct"] == pytest.approx(30, abs=10)
    assert a["delta_pct"] < -25 and b["delta_pct"] > 25, (a, b)
    assert a["delta_pct"] == pytest.approx(a["target_pct"] - a["base_pct"], abs=0.01)
    # the same diff from the collapsed files; the other way round, the signs flip
    files = json.loads(ok(novatune("flamegraph", "diff", str(tmp_path / "w30.txt"), str(tmp_path / "w70.txt"),
                                   "-f", "json", home=home)).stdout)
    back = {r["function"]: r["delta_pct"] for r in files["functions"]}
    assert back["heavy_a"] > 25 and back["heavy_b"] < -25
    svg = tmp_path / "diff.svg"
    ok(novatune("flamegraph", "diff", ids[70], ids[30], "-o", str(svg), home=home))  # svg by default
    import xml.etree.ElementTree as ET

    root = ET.parse(svg).getroot()
    titles = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title"))
    assert "heavy_a" in titles and "heavy_b" in titles
    html = ok(novatune("flamegraph", "diff", ids[70], ids[30], "-f", "html", home=home)).stdout.decode()
    page = Page(html)
    assert page.external == [] and "script" in page.tags and "heavy_a" in html
    assert own_pyspy() == []


@pytest.mark.slow
def test_watch_stores_each_window_with_its_rate_and_overhead(tmp_path):
    home = tmp_path / "home"
    with mix_proc(tmp_path, 70) as target:
        t0 = time.monotonic()
        proc = ok(novatune("profile", "watch", "--pid", str(target.pid), "--window", "10", "--windows", "2",
                           home=home, allowed=ALLOW_PYTHON, timeout=90))
        took = time.monotonic() - t0
        assert own_pyspy(target.pid) == [] and target.poll() is None
    assert 19 < took < 40, took
    printed = proc.stdout.decode().strip().splitlines()
    rows = stored(home)
    assert len(printed) == 2 and len(rows) == 2, (printed, rows)
    assert "2 windows stored" in proc.stderr.decode()
    store = ProfileStore(home / "profiles")
    for row in rows:
        assert row["id"] in proc.stdout.decode() and row["labels"]["source"] == "watch"
        assert row["labels"]["target"] == f"pid:{target.pid}" and 9 < row["duration_s"] < 15
        overhead = store.get(row["id"]).meta.overhead
        assert {"rate_hz", "pyspy_cpu_pct", "est_slowdown_pct", "budget_pct", "next_rate_hz"} <= set(overhead)
        assert 5 <= overhead["rate_hz"] <= 100 and overhead["rate_hz"] == row["rate_hz"]
        assert overhead["pyspy_cpu_pct"] > 0


@pytest.mark.slow
def test_ctrl_c_during_watch_stores_the_window_so_far_and_leaves_nothing_running(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_ALLOWED_TARGETS": ALLOW_PYTHON}
    with mix_proc(tmp_path, 70) as target:
        cli = subprocess.Popen([sys.executable, "-m", "experiments", "profile", "watch", "--pid", str(target.pid),
                                "--window", "30"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: own_pyspy(target.pid), 30, "py-spy to start")
            time.sleep(2)
            t0 = time.monotonic()
            cli.send_signal(signal.SIGINT)  # what Ctrl-C sends (py-spy runs in a session of its own)
            out, err = cli.communicate(timeout=30)
            took = time.monotonic() - t0
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert own_pyspy(target.pid) == [] and target.poll() is None
    assert cli.returncode == 0 and took < 5, (cli.returncode, took, err)
    assert "Traceback" not in err.decode() and "1 window stored" in err.decode(), err
    rows = stored(home)
    assert len(rows) == 1 and rows[0]["labels"]["partial"] == "true" and rows[0]["labels"]["stopped"] == "true"
    assert 1 < rows[0]["duration_s"] < 10 and rows[0]["samples"] > 20


@pytest.mark.slow
def test_perf_engine_for_a_process_that_does_not_run_python(tmp_path):
    if shutil.which("perf") is None:
        pytest.skip("perf is not installed (Debian linux-perf): the not-Python error says so instead")
    loop = "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"
    refused = novatune("profile", "record", "--duration", "2", "--", "sh", "-c", loop, home=tmp_path / "home")
    assert refused.returncode == 2 and "--engine perf" in refused.stderr.decode()
    proc = ok(novatune("profile", "record", "--duration", "2", "--engine", "perf", "-f", "json", "--", "sh", "-c",
                       loop, home=tmp_path / "home"))
    doc = json.loads(proc.stdout)
    assert doc["meta"]["engine"] == "perf" and sum(c for _, c in doc["samples"]) > 20
    assert {f[3] for f in doc["frames"]} & {"native", "kernel"}


@pytest.mark.slow
def test_ctrl_c_during_record_ends_the_window_early_and_keeps_it(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_ALLOWED_TARGETS": ALLOW_PYTHON}
    with mix_proc(tmp_path, 70) as target:
        for argv in (["--pid", str(target.pid)], ["--", sys.executable, str(mix_script(tmp_path)), "70"]):
            cli = subprocess.Popen([sys.executable, "-m", "experiments", "profile", "record", "-d", "60", *argv],
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                pyspy = wait_until(lambda c=cli: own_pyspy(target.pid) or pyspy_under(c.pid), 30, "py-spy to start")
                time.sleep(1.5)
                cli.send_signal(signal.SIGINT)
                out, err = cli.communicate(timeout=30)
            finally:
                if cli.poll() is None:
                    cli.kill()
                    cli.wait()
            assert cli.returncode == 0, err
            assert "stopped early by Ctrl-C" in err.decode() and shares_collapsed_text(out.decode())["heavy_a"] > 40
            assert all(not os.path.exists(f"/proc/{p}") for p in pyspy), "py-spy is reaped"
        assert target.poll() is None and own_pyspy(target.pid) == []
    rows = stored(home)
    assert len(rows) == 2 and all(r["labels"]["stopped"] == "true" and r["duration_s"] < 20 for r in rows)
    assert not [ln for ln in subprocess.run(["pgrep", "-f", str(tmp_path / "mix.py")], capture_output=True,
                                            text=True).stdout.split() if int(ln) != target.pid], "launched: ended"



@pytest.mark.slow
def test_a_pid_that_exits_mid_window_is_a_clear_error_with_nothing_kept(tmp_path):
    home = tmp_path / "home"
    with mix_proc(tmp_path, 70, lifetime_s=2.5) as target:
        proc = novatune("profile", "record", "--pid", str(target.pid), "-d", "20", home=home, allowed=ALLOW_PYTHON)
        target.wait(timeout=10)
        assert own_pyspy(target.pid) == []
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert f"pid {target.pid}" in err and "exited" in err and "-- CMD" in err and "Traceback" not in err
    assert stored(home) == []
