"""A fuzz of spec fields (hypothesis): whatever a spec names, no path outside the allowed roots is ever opened
for writing.

Each example is a spec of a random workload kind whose string fields are hostile (absolute paths to /etc, a
fake host file, the data directory's journal, ``..`` sequences, devices, very long strings, NUL bytes, plain
noise), in a scratch directory where a symlink or a hard link may have been planted first. It goes through
what a real study does before anything runs: ``parse_spec``, ``prepare`` (the spec checked once) and the
study's own workload builder (``run_workload``) with its path preparation (``Workload.prepare_paths``, the
first step of ``start``: the workdir, the log, fio's file, a server's private directory and what is written
into it). An audit hook (``sys.addaudithook``) records every write-like event of the test's thread (``open``
with write flags, ``os.mkdir``, ``os.rename``, ``os.remove``, ``os.chmod``, ``os.chown``, ``shutil.rmtree``,
..., and the helper's own ``novatune.safepath.open``, which names the directory descriptor a relative open
lands in) and resolves it independently; every one must land under the run's scratch directory, the
temporary directory of the servers' private directories, or a configured root outside the data directory.
Nothing may be started. The host file, the journal and the host directory keep their bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.errors import NovatuneError
from collectors.workloads.tools.stress_ng import STRESSORS
from experiments.settings import Paths
from experiments.spec import parse_spec
from experiments.study.prepare import prepare, run_workload

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: event -> (indices of the paths it writes, index of its dir_fd or None)
_EVENTS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "os.mkdir": ((0,), 2), "os.rmdir": ((0,), 1), "os.remove": ((0,), 1), "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3), "os.truncate": ((0,), None), "os.utime": ((0,), 3), "shutil.rmtree": ((0,), 1),
    "os.rename": ((0, 1), 2), "os.replace": ((0, 1), 2), "os.link": ((1,), 3), "os.symlink": ((1,), 2),
    "shutil.copyfile": ((1,), None), "shutil.copytree": ((1,), None), "shutil.move": ((0, 1), None),
    "os.mkfifo": ((0,), 2), "os.mknod": ((0,), 3),
}


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _landing(path: Any, dir_fd: Any = None) -> list[str]:
    """Where a write to ``path`` lands: its directory resolved, and the file itself resolved (if it is a link)."""
    if isinstance(path, int):
        return [_fd_path(path)]
    text = os.fsdecode(path)
    if os.path.isabs(text):
        full = text
    else:  # an audit event gives dir_fd -1 for "none"
        full = os.path.join(_fd_path(dir_fd) if isinstance(dir_fd, int) and dir_fd >= 0 else os.getcwd(), text)
    head, tail = os.path.split(os.path.normpath(full))
    return [os.path.join(os.path.realpath(head), tail), os.path.realpath(full)]


@dataclass
class _Audit:
    """The recorder behind the (permanent) audit hook: inert unless ``active`` for the owner thread."""

    active: bool = False
    owner: int = 0
    writes: list[tuple[str, str]] = field(default_factory=list)
    #: (device, inode) of every existing file a write landed on: a hard link has an innocent path
    inodes: set[tuple[int, int]] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    pending: dict[str, list[str]] = field(default_factory=dict)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or threading.get_ident() != self.owner:
            return
        try:
            self._record(event, args)
        except Exception as err:  # noqa: BLE001 - a hook must not raise into the code under test; fail the test
            self.writes.append((event, f"<unresolvable: {err!r}>"))

    def _record(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "subprocess.Popen" or event == "os.posix_spawn" or event == "os.exec":
            self.started.append(repr(args[:2]))
        elif event == "novatune.safepath.open":
            dir_fd, name, _flags = args
            self.pending[name] = _landing(name, dir_fd)
        elif event == "open":
            path, mode, flags = (list(args) + [None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & _WRITE_FLAGS
            if not writes or isinstance(path, int):
                return  # a read, or an already open descriptor (os.fdopen)
            text = os.fsdecode(path)
            landing = self.pending.pop(text, None) if not os.path.isabs(text) else None
            for p in landing or _landing(text):
                self._add(event, p)
        elif event in _EVENTS:
            indices, dir_index = _EVENTS[event]
            dir_fd = args[dir_index] if dir_index is not None and dir_index < len(args) else None
            for i in indices:
                if i < len(args) and args[i] is not None:
                    for p in _landing(args[i], dir_fd):
                        self._add(event, p)

    def _add(self, event: str, path: str) -> None:
        self.writes.append((event, path))
        try:
            st = os.stat(path)
        except OSError:
            return
        self.inodes.add((st.st_dev, st.st_ino))


AUDIT = _Audit()
_INSTALLED: list[bool] = []


@dataclass
class World:
    base: Path
    paths: Paths
    allowed: Path
    host_dir: Path
    host: Path
    tmp: Path

    @property
    def home(self) -> Path:
        return self.paths.home

    def never(self) -> set[tuple[int, int]]:
        """The files no write may land on, by identity: the host file, the journal, the study database."""
        out = set()
        for f in (self.host, self.home / "journal.jsonl", self.home / "optuna.db"):
            st = f.stat()
            out.add((st.st_dev, st.st_ino))
        return out

    def snapshot(self) -> dict[str, str]:
        out = {}
        for f in (self.host, self.home / "journal.jsonl"):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
        out["host_dir"] = " ".join(sorted(os.listdir(self.host_dir)))
        return out

    def allowed_write(self, path: str, roots: list[str], workdir: Path) -> bool:
        p = Path(path)
        scratch = (workdir, self.home / "runs" / ".check", self.tmp)
        if any(p == d or d in p.parents for d in scratch):
            return True
        in_root = any(p == Path(r) or Path(r) in p.parents for r in roots)
        return in_root and not (p == self.home or self.home in p.parents)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(os.path.realpath(tempfile.mkdtemp(prefix="novatune-fuzz-")))
    os.chmod(base, 0o755)  # the servers' accounts must reach the private directories under tmp/
    paths = Paths(base / "data" / "home").ensure()
    (paths.home / "journal.jsonl").write_text('{"seq": 1}\n')
    (paths.home / "optuna.db").write_bytes(b"SQLite format 3\0")
    allowed = base / "allowed"
    allowed.mkdir()
    host_dir = base / "host" / "etc"
    host_dir.mkdir(parents=True)
    host = host_dir / "shadow"
    host.write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.link(host, allowed / "hardlink")
    os.mkfifo(allowed / "fifo")
    os.mknod(allowed / "null", 0o600 | 0o020000, os.makedev(1, 3))
    os.mknod(host_dir / "null", 0o600 | 0o020000, os.makedev(1, 3))
    (allowed / "evil").symlink_to(host)
    tmp = base / "tmp"
    tmp.mkdir(mode=0o755)
    if not _INSTALLED:
        sys.addaudithook(AUDIT)
        _INSTALLED.append(True)
    old_tempdir = tempfile.tempdir
    tempfile.tempdir = str(tmp)
    try:
        yield World(base, paths, allowed, host_dir, host, tmp)
    finally:
        tempfile.tempdir = old_tempdir
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ the strategies

NAMES = ["fuzz", "fuzz-2"]
PLANTS = [None, "fio.dat", "log", "tmp", "work", "study", "hardlink"]
PARTS = ["..", ".", "", "etc", "novatune-absent", "fio.dat", "planted", "dev", "journal.jsonl", "runs", "fuzz", "work"]


def hostile(w: World) -> st.SearchStrategy[str]:
    """Hostile strings: the targets that matter half of the time, else other paths, noise and path soup."""
    # no real system file or device that a regression could damage: they stand in a temp tree (the host
    # file for /etc/shadow, a node with /dev/null's numbers for a device); /etc paths name files that do not exist
    targets = [
        "/etc/novatune-fuzz-absent", str(w.host), str(w.home / "journal.jsonl"), str(w.home / "optuna.db"),
        str(w.home / "runs" / "fuzz" / "trials" / "x.csv"), "../journal.jsonl", "../../../../etc/shadow",
        str(w.allowed / "hardlink"), str(w.allowed / "fifo"), str(w.allowed / "null"), str(w.allowed / "evil"),
        str(w.allowed / "evil" / "x"), "planted", str(w.host_dir / "null"), "fio.dat",
    ]
    others = [
        "/etc/novatune-fuzz-absent/x", str(w.home), "sub/dir/x.dat", "planted/x", "/dev/novatune-fuzz-absent",
        "/proc/self/novatune-absent", "/sys/kernel/novatune-absent", str(w.allowed / "ok.dat"),
        str(w.allowed / "new" / "deep.dat"), "x" * 5000, "a\0b", "/" + "a/" * 2100, "fio.dat\0/etc/shadow",
        "~root/.ssh/authorized_keys", "http://127.0.0.1:1/", "file:///etc/shadow", "C:\\x", "fio.dat:/etc/shadow",
    ]
    rest = st.one_of(
        st.sampled_from(others),
        st.text(max_size=40),
        st.lists(st.sampled_from(PARTS), max_size=8).map("/".join),
        st.lists(st.sampled_from(PARTS), min_size=1, max_size=8).map(lambda p: "/" + "/".join(p)),
    )
    return st.integers(0, 1).flatmap(lambda i: st.sampled_from(targets) if i == 0 else rest)


def mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: a spec with every field hostile is only ever refused on its first one."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else valid)


def workload(w: World) -> st.SearchStrategy[dict[str, Any]]:
    h = hostile(w)
    opt = st.one_of(st.none(), h)
    fio = st.fixed_dictionaries({"kind": st.just("fio"), "filename": h, "size": st.sampled_from(["4k", "1M"]),
                                 "rw": st.sampled_from(["randwrite", "read", "rw"])})
    return st.one_of(
        fio, fio, fio,  # the kind whose option is a path, more often
        st.fixed_dictionaries({"kind": st.just("fio"), "filename": st.none(), "size": st.just("4k")}),
        st.fixed_dictionaries({"kind": st.just("wrk"), "url": mostly(st.none(), h),
                               "file_bytes": st.integers(1, 4096)}),
        st.fixed_dictionaries({"kind": st.just("stress-ng"), "stressor": mostly(st.sampled_from(STRESSORS), h)}),
        st.fixed_dictionaries({"kind": st.just("redis-benchmark"),
                               "tests": st.lists(mostly(st.sampled_from(["set", "get"]), h), min_size=1,
                                                 max_size=3)}),
        st.fixed_dictionaries({"kind": st.just("pgbench"), "clients": st.integers(1, 4)}),
        st.fixed_dictionaries({"kind": st.just("iperf3"), "streams": st.integers(1, 4)}),
        st.fixed_dictionaries({"kind": st.just("oltp"), "workers": st.integers(1, 2)}),
        st.fixed_dictionaries({"kind": st.just("passive"), "cgroup": mostly(st.just("/sys/fs/cgroup"), h),
                               "probe_url": opt, "scrape_url": opt}),
    )


@st.composite
def case(draw: st.DrawFn, w: World) -> tuple[dict[str, Any], str | None, list[str]]:
    wl = draw(workload(w))
    spec = {
        "name": draw(mostly(st.sampled_from(NAMES), hostile(w))),
        "description": draw(hostile(w)),
        "workload": wl,
        "knobs": {"vm.swappiness": {"low": 1, "high": 100}},
        "objectives": {"target_cpu_pct" if wl["kind"] == "passive" else "throughput": "maximize"},
    }
    plant = draw(st.sampled_from(PLANTS))
    # the third: the operator allowed a directory that contains the data directory
    roots = draw(st.sampled_from([[], [str(w.allowed)], [str(w.allowed), str(w.home.parent)],
                                  [str(w.allowed), str(w.home.parent)]]))
    return spec, plant, roots


# ------------------------------------------------------------------ one example


def _plant(w: World, study: Path, kind: str, plant: str | None) -> None:
    """Reset the study's directory, then plant a symlink (or a hard link) where the workload will write."""
    if study.is_symlink():
        study.unlink()
    shutil.rmtree(study, ignore_errors=True)
    work = study / "work"
    if plant == "study":
        study.symlink_to(w.host_dir)
        return
    study.mkdir(parents=True, mode=0o700)
    if plant == "work":
        work.symlink_to(w.host_dir)
        return
    work.mkdir(mode=0o700)
    target = {"fio.dat": "fio.dat", "log": f"{kind}-tuned.log", "tmp": "tmp", "hardlink": "fio.dat"}.get(plant or "")
    if target == "tmp":
        (work / "tmp").symlink_to(w.host_dir)
    elif plant == "hardlink":
        os.link(w.host, work / target)
    elif target:
        (work / target).symlink_to(w.host)


def _run(w: World, spec_data: dict[str, Any], plant: str | None, roots: list[str]) -> Path | None:
    """The study's steps before anything runs; returns the workdir used (None: refused before it)."""
    AUDIT.active = True
    try:
        spec = parse_spec(spec_data, source="fuzz")
        prepare(spec, paths=w.paths, allowed_paths=roots, source="fuzz")
    except NovatuneError:
        return None
    finally:
        AUDIT.active = False
    study = w.paths.runs / spec.name  # where the study's directory goes; planted on before the run looks at it
    workdir = study / "work"
    _plant(w, study, spec.workload.kind, plant)
    AUDIT.active = True
    try:
        workdir = w.paths.study_dir(spec.name) / "work"  # as the run gets it (a planted link is refused here)
        wl = run_workload(spec, workdir, paths=w.paths, allowed_paths=roots)
        try:
            wl.prepare_paths()
        finally:
            wl.stop()
    except NovatuneError:
        pass
    finally:
        AUDIT.active = False
    return workdir


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a device node and prepares servers' directories: needs root")
@pytest.mark.timeout(300)
def test_no_spec_field_makes_novatune_write_outside_the_allowed_roots(world: World,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a first import must not write a .pyc under the repo
    AUDIT.owner = threading.get_ident()
    before = world.snapshot()
    never = world.never()
    seen: dict[str, int] = {}

    # derandomized: the same 200 examples on every run, so that the fast tier cannot flake
    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case(world))
    def one(example: tuple[dict[str, Any], str | None, list[str]]) -> None:
        spec_data, plant, roots = example
        AUDIT.writes.clear()
        AUDIT.inodes.clear()
        AUDIT.started.clear()
        workdir = _run(world, spec_data, plant, roots)
        kind = spec_data["workload"]["kind"]
        seen[kind] = seen.get(kind, 0) + (workdir is not None)
        seen["writes recorded"] = seen.get("writes recorded", 0) + len(AUDIT.writes)
        bad = [(e, p) for e, p in AUDIT.writes
               if workdir is None or not world.allowed_write(p, roots, workdir)]
        assert not bad, (spec_data, plant, roots, bad)
        assert not AUDIT.inodes & never, (spec_data, plant, roots, AUDIT.writes)
        assert not AUDIT.started, (spec_data, AUDIT.started)
        assert world.snapshot() == before, (spec_data, plant, roots)

    one()
    assert sum(1 for k, n in seen.items() if n and k != "writes recorded") >= 6, seen  # not only refusals
    assert seen["writes recorded"] > 0, seen  # the hook saw the workloads' own writes
