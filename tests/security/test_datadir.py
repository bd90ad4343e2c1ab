"""Classes 3 and 4 of docs/security.md: the data directory and the lock directory.

Another local user (``nobody`` here) prepares the directory novatune will use: a data directory with a
token, a ``host: 0.0.0.0`` config, a journal and a Python package that would run as root in the worker;
a lock directory with links to a victim file. Each test asserts the refusal (a clear message naming the
directory, its owner and mode, what is required; CLI exit 2) and that nothing changed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.holds import KnobHolds, lock_dir
from experiments.safefs import UnsafeLocation, private_dir, read_trusted
from experiments.service import create_app
from experiments.settings import Paths, Settings, api_token, token_file
from experiments.study.manager import StudyManager

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays another user: needs root")


def novatune(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "400", **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=120)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under ``root``: mode, owner and bytes (a link: its target)."""
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body: bytes | str = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, body)
    return out


@pytest.fixture()
def planted(tmp_path):
    """A data directory another user prepared: their token, their config, their journal, their code."""
    home = tmp_path / "home"
    (home / "experiments" / "study").mkdir(parents=True)
    (home / "api-token").write_text("attackers-token\n")
    (home / "config.yaml").write_text("host: 0.0.0.0\n")
    (home / "journal.jsonl").write_text('{"seq": 1, "op": "intent"}\n')
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('ran as uid %d' % __import__('os').getuid())\n"
    for f in ("experiments/__init__.py", "experiments/study/__init__.py", "experiments/study/worker.py"):
        (home / f).write_text(code)
    for p in [home, *home.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)
    home.chmod(0o777)
    return home, marker


# ------------------------------------------------------------------ class 3: the data directory
def test_a_data_directory_another_user_prepared_is_refused_everywhere(planted):
    home, marker = planted
    before = snapshot(home)
    for args in (["study", "list"], ["settings", "show"], ["recover"], ["history"]):
        proc = novatune(*args, home=home)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        msg = proc.stderr
        assert "Traceback" not in msg
        assert f"the data directory {home} is not safe" in msg, msg
        assert "owned by uid 65534 (nobody) with mode 0777" in msg and "chown root" in msg and "chmod 0700" in msg
    with pytest.raises(UnsafeLocation, match="owned by uid 65534"):
        create_app(Paths(home), Settings(api_token="a-token-of-sixteen-or-more"))  # the service never starts on it
    with pytest.raises(UnsafeLocation):
        api_token(Settings(), Paths(home))  # their token is never the API's
    assert snapshot(home) == before  # nothing read into use, nothing written
    assert not marker.exists()


def test_a_parent_others_may_write_in_is_refused_but_a_sticky_one_like_tmp_is_not(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename our directory away and put theirs in its place
    with pytest.raises(UnsafeLocation) as err:
        Paths(shared / "home").ensure()
    assert f"{shared}, on the way to it, is owned by uid 0 (root) with mode 0777" in str(err.value)
    assert "chmod go-w" in str(err.value)
    assert not (shared / "home").exists()
    shared.chmod(0o1777)  # sticky: others cannot rename or delete what is ours
    paths = Paths(shared / "home").ensure()
    assert stat.S_IMODE(paths.home.stat().st_mode) == 0o700


def test_a_link_another_user_owns_on_the_way_is_not_followed(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    link = sticky / "home"
    link.symlink_to(mine)  # looks fine today; its owner can point it anywhere tomorrow
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafeLocation, match=r"is a symbolic link owned by uid 65534 .* novatune follows only links"):
        Paths(link).ensure()
    os.lchown(link, 0, 0)
    assert Paths(link).ensure().home == mine  # a link of our own is followed


def test_config_and_token_files_must_be_ours_private_and_not_links(tmp_path, monkeypatch):
    paths = Paths(tmp_path / "home").ensure()
    victim = tmp_path / "victim.yaml"
    victim.write_text("host: 0.0.0.0\n")
    cfg = paths.home / "config.yaml"
    monkeypatch.delenv("NOVATUNE_CONFIG", raising=False)
    monkeypatch.setenv("NOVATUNE_HOME", str(paths.home))
    cfg.symlink_to(victim)
    with pytest.raises(UnsafeLocation, match="the config file .* is a symbolic link"):
        Settings.load()
    cfg.unlink()
    cfg.write_text("host: 0.0.0.0\n")
    cfg.chmod(0o666)
    with pytest.raises(UnsafeLocation, match="group or others may write it"):
        Settings.load()
    cfg.chmod(0o644)
    os.chown(cfg, NOBODY, NOBODY)
    with pytest.raises(UnsafeLocation, match="owned by uid 65534"):
        Settings.load()
    os.chown(cfg, 0, 0)
    assert Settings.load().host == "0.0.0.0"  # our own file, safe modes: read

    tok = token_file(paths)
    tok.write_text("readable-token\n")
    tok.chmod(0o644)
    with pytest.raises(UnsafeLocation, match="a secret that group or others may read"):
        api_token(Settings(), paths)
    tok.unlink()
    tok.symlink_to(victim)
    with pytest.raises(UnsafeLocation, match="is a symbolic link"):
        api_token(Settings(), paths)
    assert victim.read_text() == "host: 0.0.0.0\n"
    tok.unlink()
    token, source = api_token(Settings(), paths)
    assert source == "generated" and stat.S_IMODE(tok.stat().st_mode) == 0o600
    assert read_trusted(tok, what="t", secret=True) == (token + "\n").encode()


def test_the_worker_runs_nothing_from_the_data_directory(tmp_path, monkeypatch):
    """The worker used to start with the data directory as its working directory: ``python -m`` put it
    first on ``sys.path``, so a planted ``experiments/`` package ran as root. Now: ``-P`` and cwd ``/``."""
    monkeypatch.chdir(tmp_path)  # a planted package in the caller's directory does not run either
    mgr = StudyManager(Paths(tmp_path / "home"))
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    for base in (mgr.paths.home, tmp_path):
        for f in ("experiments/__init__.py", "experiments/study/__init__.py", "experiments/study/worker.py"):
            (base / f).parent.mkdir(parents=True, exist_ok=True)
            (base / f).write_text(code)
    mgr._spawn("ghost")  # no such study: the real worker says so and exits 2
    proc = mgr._children["ghost"]
    assert proc.wait(timeout=60) == 2
    log = (mgr.paths.study_dir("ghost") / "worker.log").read_text()
    assert "no registered study 'ghost'" in log, log
    assert not marker.exists()


def test_what_novatune_creates_in_its_data_directory_is_private(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-c", PRIVATE_FILES, str(home)], cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "NOVATUNE_HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr
    entries = {str(p.relative_to(home)): stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")]}
    assert any(k.endswith("optuna.db") for k in entries) and any(k.startswith("mlartifacts/") for k in entries)
    assert any(k == "journal.jsonl" for k in entries) and any("status.json" in k for k in entries)
    public = {k: f"{m:04o}" for k, m in entries.items() if m & 0o077}
    assert public == {}, public


#: what a CLI run creates, under the CLI's umask: the data directory, the journal, the Optuna and MLflow
#: stores with an artifact, a run directory with its status file
PRIVATE_FILES = """
import sys
import optuna
from experiments.cli import app, main
from experiments.settings import Paths

def make() -> None:
    from actuators import Journal
    from experiments.study.outcomes import write_json_atomic
    from experiments.study.tracking import Tracker
    paths = Paths.default().ensure()
    with Journal(paths.journal).run("r1"):
        pass
    optuna.create_study(study_name="s", storage=paths.optuna_url)
    run = paths.study_dir("s")
    run.mkdir()
    write_json_atomic(run / "status.json", {"state": "running"})
    (run / "a.txt").write_text("x")
    t = Tracker(paths.mlflow_uri, artifact_root=paths.artifacts)
    t.start_study("s", description="d", tags={})
    t.log_trial(0, params={"x": 1}, metrics={"y": 2.0}, tags={"state": "complete"}, artifacts=[run / "a.txt"])

app.command("make-files")(make)
sys.exit(main(["make-files"]))
"""

# ------------------------------------------------------------------ class 4: the lock directory
def test_a_lock_directory_another_user_prepared_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "locks"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    d.chmod(0o777)
    monkeypatch.setenv("NOVATUNE_LOCK_DIR", str(d))
    with pytest.raises(UnsafeLocation) as err:
        KnobHolds(["vm.swappiness"], owner="me").acquire()
    assert f"the lock directory ($NOVATUNE_LOCK_DIR) {d} is not safe" in str(err.value)
    assert "owned by uid 65534 (nobody) with mode 0777" in str(err.value)
    assert list(d.iterdir()) == []


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_planted_lock_file_never_clobbers_its_target(tmp_path, monkeypatch, plant):
    d = tmp_path / "locks"
    monkeypatch.setenv("NOVATUNE_LOCK_DIR", str(d))
    d = lock_dir()
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret:19000:0:99999:7:::\n")
    lock = d / "vm.swappiness.lock"
    if plant == "symlink":
        lock.symlink_to(victim)
    else:
        os.link(victim, lock)
    with pytest.raises(UnsafeLocation, match="symbolic link|linked 2 times"):
        KnobHolds(["vm.swappiness"], owner="me").acquire()
    assert victim.read_text() == "root:$6$secret:19000:0:99999:7:::\n"


def test_locks_are_private_so_no_other_user_can_hold_a_knob(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVATUNE_LOCK_DIR", str(tmp_path / "locks"))
    with KnobHolds(["vm.swappiness"], owner="me"):
        d = lock_dir()
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        lock = d / "vm.swappiness.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.read_text().startswith("me (pid ")
    # another user cannot even open the lock file, so cannot flock it and block every apply and rollback
    d.chmod(0o755)  # even were the directory open to them
    probe = subprocess.run(["cat", str(lock)], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                           text=True, timeout=30, cwd="/")
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


def test_roots_default_lock_directory_is_root_only(monkeypatch):
    monkeypatch.delenv("NOVATUNE_LOCK_DIR", raising=False)
    d = lock_dir()
    assert d == Path("/run/novatune/locks")
    st = d.stat()
    assert st.st_uid == 0 and not st.st_mode & 0o077
    for parent in (d.parent, Path("/run")):
        pst = parent.stat()
        assert pst.st_uid == 0 and not pst.st_mode & 0o022


def test_private_dir_checks_after_creating_so_a_racing_directory_is_refused(tmp_path, monkeypatch):
    """A directory another user creates between novatune's look and its mkdir is checked, not used."""
    target = tmp_path / "race"
    real_mkdir = os.mkdir

    def racing_mkdir(path, mode=0o777, **kw):  # type: ignore[no-untyped-def]  # os.mkdir's own signature
        real_mkdir(path, 0o777)
        os.chown(path, NOBODY, NOBODY)
        raise FileExistsError(path)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    with pytest.raises(UnsafeLocation, match="owned by uid 65534"):
        private_dir(target, what="the data directory", create=True)


def test_an_unsafe_data_directory_is_refused_before_a_study_starts(planted):
    home, marker = planted
    before = snapshot(home)
    spec = REPO / "experiments" / "specs" / "quickstart.yaml"
    started = time.monotonic()
    proc = novatune("study", "start", str(spec), home=home)
    assert proc.returncode == 2 and "is not safe" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 60
    assert not marker.exists() and snapshot(home) == before


def test_pythons_novatune_starts_for_workloads_import_nothing_from_their_working_directory(tmp_path):
    """``python -m collectors.workloads...`` (the OLTP server, its load generator, wrk's HTTP server) runs in a
    run's workdir or in the directory novatune was started from (``/tmp``, say): ``-m`` used to put it first
    on ``sys.path``, so a planted ``collectors/`` package ran as root."""
    from collectors.workloads.process import child_env, run_bounded

    marker = tmp_path / "pwned"
    (tmp_path / "collectors").mkdir()
    (tmp_path / "collectors" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    proc = run_bounded([sys.executable, "-m", "collectors.workloads.loadgen", "--help"], timeout_s=60,
                       cwd=str(tmp_path), env=child_env())
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
    assert not marker.exists()
