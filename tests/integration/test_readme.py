"""The README's shell blocks, run as written, the way a new user runs them on a fresh machine.

One test walks the README in order, in a copy of the checkout, as a user whose home is a temporary
folder (so ``~/.local/share/novatune`` is the data directory the README's commands name):

1. "Start here", line 1: ``pip install . && novatune quickstart`` in a new virtual environment
   (core dependencies only: what a user gets), the full quickstart study. Line 2 is ``bash .ci/run``:
   what CI itself runs, so it is checked to be exactly that, not run again from inside itself.
2. "The service": ``novatune serve &``, a short study through the HTTP API, its export, the stop.
3. "Deploy the chosen configuration": every command, with paths under ``/etc`` redirected to a
   temporary folder; ``apply`` and ``rollback`` change the real knobs and put them back.
4. "Profile what runs": two recordings of a command novatune starts, hotspots, a diff, the store's list.
5. "Right-size what runs": a replay of the shared Bitbrains traces, then the built-in OLTP service in a
   cgroup of its own under load, observed, its proposal approved, applied (validated or rolled back under
   the load), rolled back, its history; the cost savings.

Substitutions, and nothing else: ``/etc/`` -> a temporary folder, port 8080 -> a free port
(``NOVATUNE_PORT`` for the CLI, the literal in the curl lines), the demo service's port 7411 -> a free
port, ``../shared/`` -> the shared data beside the checkout (the copy has no parent of its own). Every block runs under
``set -euo pipefail``; the kernel settings must read as before at the end (``knob-snapshot`` when
it sits beside the checkout, and the integration snapshot of the tuned files and cgroups).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, needs_root, snapshot

pytestmark = [needs_root, pytest.mark.slow]

README = REPO / "README.md"
KNOB_SNAPSHOT = next((p for p in (REPO.parent / "shared/tools/knob-snapshot", Path("/work/shared/tools/knob-snapshot"))
                      if p.exists()), None)


def block(heading: str) -> str:
    """The first ```bash block after the README heading that starts with ``heading``."""
    text = README.read_text()
    m = re.search(rf"^## {re.escape(heading)}.*?^```bash\n(.*?)^```", text, re.S | re.M)
    assert m, f"README has no bash block under a heading starting with {heading!r}"
    return m.group(1)


def commands(text: str) -> list[str]:
    """The block's commands without their trailing comments (continuation lines joined)."""
    out = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", raw).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _knobs(path: Path) -> None:
    if KNOB_SNAPSHOT is not None:
        with open(path, "w") as f:
            subprocess.run([sys.executable, str(KNOB_SNAPSHOT)], stdout=f, check=True, timeout=60)


def _run(script: str, *, cwd: Path, env: dict[str, str], timeout: float, log: Path) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    with open(log, "a") as f:
        f.write(f"$ {script}\n--- exit {proc.returncode} after {time.monotonic() - started:.0f} s\n"
                f"{proc.stdout}\n--- stderr\n{proc.stderr}\n")
    return proc


#: what the quickstart recorded in MLflow: its trials (with params and throughput) and the study's plots
_READ_QUICKSTART = """
import json, sys
import mlflow
client = mlflow.MlflowClient(tracking_uri="sqlite:///" + sys.argv[1])
exp = client.get_experiment_by_name("novatune/quickstart")
runs = client.search_runs([exp.experiment_id], max_results=200)
trials = [r for r in runs if r.data.tags.get("novatune.kind") == "trial"]
study = next(r for r in runs if r.data.tags.get("novatune.kind") == "study")
print(json.dumps({"trials": len(trials),
                  "complete": sum(bool(r.data.params) and "throughput_rps" in r.data.metrics for r in trials),
                  "plots": [a.path for a in client.list_artifacts(study.info.run_id, "plots")]}))
"""


@pytest.mark.timeout(1800)  # the quickstart, then every block of the README in turn
def test_the_readme_blocks_run_as_written(tmp_path: Path, capsys) -> None:
    src = tmp_path / "novatune"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", ".venv", "venv", ".pytest_cache", ".hypothesis"))
    user = tmp_path / "user"
    user.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOVATUNE_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({
        "HOME": str(user), "PATH": f"{venv / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(venv), "COLUMNS": "200",
        "NOVATUNE_PORT": str(port),
        # the machine's pip cache (the user's HOME is new): the same packages, fetched once
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
    })
    log = tmp_path / "readme.log"
    before = snapshot()
    _knobs(tmp_path / "knobs-before.json")

    # 1. Start here
    start = commands(block("Start here"))
    assert start == ["pip install . && novatune quickstart", "bash .ci/run"], start
    t0 = time.monotonic()
    proc = _run(start[0], cwd=src, env=env, timeout=1500, log=log)
    quickstart_s = time.monotonic() - t0
    assert proc.returncode == 0, log.read_text()[-6000:]
    assert shutil.which("novatune", path=str(venv / "bin")), "pip install . did not install the novatune command"
    out = proc.stdout
    assert "Pareto front of quickstart" in out and '"chosen_by"' in out, out[-3000:]
    assert "Against the baseline (trial 0" in out and "the chosen trial" in out, out[-3000:]
    assert "workflowType=machine_learning" in out
    home = user / ".local/share/novatune"
    assert (home / "optuna.db").exists(), "the quickstart did not use ~/.local/share/novatune"

    # read with the MLflow the user installed (the walk's venv), not this process's: the two installs may
    # resolve different MLflow releases, and an older MLflow refuses a store a newer one wrote
    read = subprocess.run([str(venv / "bin/python"), "-c", _READ_QUICKSTART, str(home / "mlflow.db")],
                          capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout)
    assert got["trials"] >= 14 and got["trials"] == got["complete"], got
    plots = set(got["plots"])
    assert {"plots/pareto_front.png", "plots/pareto_front.html", "plots/convergence.png",
            "plots/convergence.html"} <= plots

    # 2. The service
    service = block("The service").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    proc = _run(service, cwd=src, env=env, timeout=900, log=log)
    assert proc.returncode == 0, log.read_text()[-6000:]
    assert "quickstart-2: completed after 3 trials" in proc.stdout, proc.stdout[-3000:]
    assert "[main]" in proc.stdout  # the TuneD profile of the API's study (its sysctls only when justified)
    deadline = time.monotonic() + 60  # `kill %1` stopped the service: it restores, then exits
    while time.monotonic() < deadline and _answers(port):
        time.sleep(0.5)
    assert not _answers(port), "the service still answers after `kill %1`"

    # 3. Deploy the chosen configuration
    etc = tmp_path / "etc"
    deploy = block("Deploy the chosen configuration").replace(" /etc/", f" {etc}/")
    proc = _run(deploy, cwd=src, env=env, timeout=600, log=log)
    assert proc.returncode == 0, log.read_text()[-6000:]
    written = ("tuned/novatune/tuned.conf", "sysctl.d/90-novatune.conf",
               "systemd/system/myapp.service.d/90-novatune.conf")
    for path in written:
        assert (etc / path).is_file(), f"{path} was not written"
    assert "[Service]" in (etc / "systemd/system/myapp.service.d/90-novatune.conf").read_text()
    assert os.access(src / "novatune-apply.sh", os.X_OK)
    best = json.loads((src / "best.json").read_text())
    # the justified choice: only changes with a measured effect, each with it; the others left as found
    assert "evidence" in best and "left_as_found" in best, best
    assert set(best["evidence"]) == set(best["knobs"]) and not set(best["knobs"]) & set(best["left_as_found"])
    assert "rolled back apply-" in proc.stdout and "no drift" in proc.stdout

    # 4. Profile what runs
    proc = _run(block("Profile what runs"), cwd=src, env=env, timeout=300, log=log)
    assert proc.returncode == 0, log.read_text()[-6000:]
    hot = json.loads(proc.stdout[proc.stdout.index("["):proc.stdout.index("]\n") + 1])
    assert all(set(h) == {"function", "file", "line", "self_pct", "total_pct"} for h in hot), hot
    lam = next(h for h in hot if h["function"].endswith("<lambda>"))  # the sort key: Python code of its own
    assert lam["self_pct"] >= 5 and hot[0]["self_pct"] >= lam["self_pct"], hot
    assert "lambda" in (src / "diff.html").read_text()  # the frame that appeared in the second workload
    assert proc.stdout.count("source=record") >= 2, proc.stdout[-3000:]  # both windows listed from the store
    left = subprocess.run(["pgrep", "-f", "timeit -n 100000000"], capture_output=True, text=True)
    assert left.stdout == "", f"a profiled command was left running: {left.stdout}"

    # 5. Right-size what runs
    shared = next((p for p in (REPO.parent / "shared", Path("/work/shared")) if (p / "datasets").is_dir()), None)
    assert shared is not None, "the shared data sets must sit beside the checkout"
    rightsize = block("Right-size what runs").replace("../shared/", f"{shared}/").replace("7411", str(_free_port()))
    proc = _run(rightsize, cwd=src, env=env, timeout=600, log=log)
    assert proc.returncode == 0, log.read_text()[-6000:]
    replay = json.loads((src / "replay.json").read_text())
    assert len(replay["recommendations"]) == 19 and set(replay["recommendations"][0]) == {
        "vm_id", "cpu_cores", "mem_gib", "finding", "confidence", "instance_type", "usd_per_month",
        "savings_usd_per_month"}
    assert not replay["summary"]["cpu"]["dominated_by"] and not replay["summary"]["memory"]["dominated_by"]
    assert json.loads((src / "observed.json").read_text())["samples"] >= 30
    states = [h["state"] for h in json.loads((src / "history.json").read_text())]
    assert states[:3] == ["proposed", "approved", "applied"] and states[-1] == "rolled_back", states
    assert states[3] in ("validated", "rolled_back"), states
    assert all(h["who"] == "cli:root" for h in json.loads((src / "history.json").read_text())[1:])
    assert "saves $" in proc.stdout, proc.stdout[-3000:]
    assert not Path("/sys/fs/cgroup/cpu/demo-oltp").exists(), "the demo cgroup was left behind"

    # 6. Keep it tuned
    proc = _run(block("Keep it tuned"), cwd=src, env=env, timeout=900, log=log)
    assert proc.returncode == 0, log.read_text()[-6000:]
    two = json.loads((src / "recommend-two-socket.json").read_text())
    advisors = {r["advisor"] for r in two["recommendations"]}
    assert {"numa", "pinning", "io"} <= advisors, advisors
    assert all(r["evidence"] and 0 <= r["confidence"] <= 1 for r in two["recommendations"])
    assert two["recommendations"][0]["score"] >= two["recommendations"][-1]["score"]
    # read-ahead 0 under the sequential reader: measured worse beyond the -10 % guard (4 KiB reads instead of
    # read-ahead's large ones), rolled back, every knob read back as it was; no application left
    val = json.loads((src / "validation.json").read_text())
    assert val["decision"] == "rolled_back" and val["restored"] == val["old"], val["reason"]
    assert list(val["old"]) == [k for k in val["old"] if k.endswith(".read_ahead_kb")] and val["application"] is None
    tp = next(m for m in val["metrics"] if m["metric"] == "throughput")
    assert tp["verdict"] == "worse" and tp["change_ci"][1] < -0.10, tp
    assert "rolled_back" in proc.stdout  # `novatune validations` lists it
    tuned = json.loads((src / "autotune-history.json").read_text())
    assert tuned["cycles"] and all(s["before"] == s["after"] or s["decision"] == "kept" for s in tuned["steps"])
    assert not Path(src / "ra").is_mount(), "the README's loop filesystem was left mounted"

    assert snapshot() == before, "the README's commands left a knob or a cgroup changed"
    if KNOB_SNAPSHOT is not None:
        diff = subprocess.run([sys.executable, str(KNOB_SNAPSHOT), "--diff", str(tmp_path / "knobs-before.json")],
                              capture_output=True, text=True, timeout=60)
        assert diff.returncode == 0, diff.stdout + diff.stderr
    with capsys.disabled():
        print(f"\nREADME: pip install . && novatune quickstart took {quickstart_s:.0f} s; whole walk "
              f"{time.monotonic() - t0:.0f} s")
