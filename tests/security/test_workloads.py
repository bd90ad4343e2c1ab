"""Classes 1 (workload paths) and 5 (servers started for workloads) of docs/security.md.

1. A spec named any existing regular file as fio's ``filename`` (``/etc/shadow``, novatune's journal) and
   fio, run as root, wrote up to 64 GiB into it; the check was made on a path fio opened later, following
   symlinks. Now a workload writes only in its run's scratch directory or under a root the operator
   configured (``workload_allowed_paths``), never in the data directory, never through a symlink, into a
   device or a hard link; novatune opens the file itself and hands fio the open descriptor.
5. The pgbench cluster trusted every TCP connection on 127.0.0.1 (any local user became the PostgreSQL
   superuser and could run OS commands), redis-server ran as root without auth, iperf3 as root. Now every
   server runs unprivileged and cannot be used by another local user.

The attacks run against fake "host" files and a fake device node in temp directories, never a real system
file or device (were a refusal ever to regress, a study would write into the target), and an unrelated uid.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from fastapi.testclient import TestClient

from collectors.errors import WorkloadError
from collectors.workloads.registry import TOOL_WORKLOADS
from collectors.workloads.tools.adapter import AdapterError
from collectors.workloads.tools.pgbench import PgbenchWorkload
from experiments import cli
from experiments.service import create_app
from experiments.settings import Paths, Settings

TOKEN = "security-token-0123456789abcdef"
ATTACKER = 54321  # a uid with no account: another local user
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the servers drop to other accounts: needs root")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data directory with a journal, two operator-allowed roots (one of them contains the data directory)
    and a "host" file outside every root."""
    home = Paths(tmp_path / "data" / "home").ensure().home
    (home / "journal.jsonl").write_text('{"seq": 1, "kind": "run"}\n')
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    host = tmp_path / "host" / "etc" / "shadow"
    host.parent.mkdir(parents=True)
    host.write_text("root:$6$secret:19000:0:99999:7:::\n")
    os.mknod(tmp_path / "host" / "null", 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers: harmless
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"workload_allowed_paths": [str(allowed), str(tmp_path / "data")]}))
    monkeypatch.setenv("NOVATUNE_HOME", str(home))
    monkeypatch.setenv("NOVATUNE_CONFIG", str(config))
    return {"home": home, "journal": home / "journal.jsonl", "allowed": allowed, "host": host, "tmp": tmp_path}


def fio_spec(filename: str) -> dict:
    return {"name": "fio-attack", "workload": {"kind": "fio", "rw": "randwrite", "size": "1M", "filename": filename},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"throughput": "maximize"},
            "budget": {"trials": 1}}


# ------------------------------------------------------------------ class 1: workload paths

#: target -> what the refusal must say
TARGETS = {
    "host": "outside the allowed roots",  # stands for /etc/shadow
    "device": "outside the allowed roots",  # stands for /dev/vda
    "journal": "inside novatune's own data directory",  # under an allowed root that contains the data directory
    "optuna.db": "inside novatune's own data directory",
    "../../../journal.jsonl": "'..' component",
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_spec_cannot_make_fio_write_outside_the_allowed_roots(
        world: dict[str, Path], target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """CLI (exit 2) and API (422) refuse the spec before anything runs; the targets keep their bytes."""
    name = {"host": str(world["host"]), "journal": str(world["journal"]), "device": str(world["tmp"] / "host" / "null"),
            "optuna.db": str(world["home"] / "optuna.db")}.get(target, target)
    before = {p: digest(p) for p in (world["journal"], world["host"])}
    spec_file = world["tmp"] / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(fio_spec(name)))

    assert cli.main(["study", "run", str(spec_file)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "fio: filename" in err and "refused" in err and TARGETS[target] in err, err
    if "outside" in TARGETS[target]:
        assert "workload_allowed_paths root" in err, err  # says what is allowed

    with TestClient(create_app(Paths(world["home"]), Settings(api_token=TOKEN)), base_url="http://127.0.0.1") as client:
        r = client.post("/studies", json=fio_spec(name), headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422, r.text
    assert TARGETS[target] in r.text
    assert {p: digest(p) for p in before} == before
    assert not (world["home"] / "optuna.db").exists()


def test_a_symlink_planted_in_the_scratch_directory_is_refused_not_followed(world: dict[str, Path]) -> None:
    host, wd = world["host"], world["tmp"] / "wd"
    before = digest(host)
    wl = TOOL_WORKLOADS["fio"](wd, rw="randwrite", size="1M")  # checked: the default file in the workdir
    wd.mkdir(mode=0o700)
    (wd / "fio.dat").symlink_to(host)  # planted between the check and the start
    with pytest.raises(WorkloadError, match=r"fio.dat is a symlink: only a regular file may be written"):
        wl.start()
    assert wl.pids() == [] and digest(host) == before and (wd / "fio.dat").is_symlink()


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (Debian package: fio)")
def test_fio_writes_the_file_novatune_opened_even_if_the_name_is_swapped(world: dict[str, Path]) -> None:
    """The old check-then-open-by-path race: the name is swapped for a symlink to a host file after start."""
    host, wd = world["host"], world["tmp"] / "wd"
    before = digest(host)
    wl = TOOL_WORKLOADS["fio"](wd, rw="randwrite", size="1M")
    try:
        wl.start()
        (wd / "fio.dat").rename(wd / "moved.dat")
        (wd / "fio.dat").symlink_to(host)
        m = wl.measure(warmup_s=0, measure_s=1)
        assert m.metrics["throughput"] > 0 and m.metrics["errors"] == 0
    finally:
        wl.stop()
    assert digest(host) == before
    assert (wd / "moved.dat").stat().st_size == 1 << 20  # the file novatune opened got fio's writes


def test_the_file_is_checked_again_before_every_run(world: dict[str, Path]) -> None:
    wd = world["tmp"] / "wd"
    wl = TOOL_WORKLOADS["fio"](wd, size="1M")
    try:
        wl.start()
        os.link(wd / "fio.dat", world["tmp"] / "alias.dat")  # a second name: the file may now be anything's
        with pytest.raises(AdapterError, match="refused before the run: .* has 2 hard links"):
            wl.measure(warmup_s=0, measure_s=1)
    finally:
        wl.stop()


def test_a_file_under_an_allowed_root_is_used_and_hard_links_devices_fifos_are_not(world: dict[str, Path]) -> None:
    allowed, host, wd = world["allowed"], world["host"], world["tmp"] / "wd"
    roots = {"allowed_roots": [allowed], "protected": [world["home"]]}
    TOOL_WORKLOADS["fio"](wd, filename=str(allowed / "bench.dat"), **roots)  # accepted
    os.link(host, allowed / "alias")
    os.mkfifo(allowed / "fifo")
    os.mknod(allowed / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device (/dev/null's numbers)
    for name, why in (("alias", "has 2 hard links"), ("fifo", "is a FIFO"), ("null", "is a character device")):
        with pytest.raises(AdapterError, match=why):
            TOOL_WORKLOADS["fio"](wd, filename=str(allowed / name), **roots)
    assert host.read_text().startswith("root:$6$secret")


def test_workload_allowed_paths_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVATUNE_WORKLOAD_ALLOWED_PATHS", '["relative/dir"]')
    with pytest.raises(Exception, match="must be an absolute path"):
        Settings.load()


# ------------------------------------------------------------------ class 5: servers started for workloads

SERVERS = ["redis-benchmark", "iperf3", "wrk", pytest.param("pgbench", marks=pytest.mark.slow)]
BINARIES = {"redis-benchmark": ("redis-server", "redis-benchmark", "redis-cli"), "iperf3": ("iperf3",),
            "wrk": ("wrk",), "pgbench": ("pgbench", "psql")}


@pytest.fixture
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="novatune-sec-"))
    os.chmod(base, 0o755)
    try:
        yield base / "w"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_attacker(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"}
    return subprocess.run(argv, user=ATTACKER, group=ATTACKER, extra_groups=[], cwd="/", env=env,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def _listeners(pids: list[int]) -> tuple[set[str], set[str]]:
    tcp, unix = set(), set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            tcp |= {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
            unix |= {c.laddr for c in proc.net_connections(kind="unix") if c.laddr}
        except psutil.NoSuchProcess:
            continue  # a server's short-lived helper
    return tcp, unix


@needs_root
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", SERVERS)
def test_servers_run_unprivileged_and_refuse_other_local_users(kind: str, workdir: Path) -> None:
    for b in BINARIES[kind]:
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    if kind == "pgbench" and PgbenchWorkload.pg_bindir() is None:
        pytest.skip("initdb not installed (Debian package: postgresql)")
    wl = TOOL_WORKLOADS[kind](workdir, **({"requests": 500} if kind == "redis-benchmark" else {}))
    try:
        pids = wl.start()
        ps = subprocess.run(["ps", "-o", "user=,args=", "-p", ",".join(map(str, pids))], capture_output=True,
                            text=True, check=True).stdout.splitlines()
        users = {line.split()[0] for line in ps}
        assert "root" not in users and users, ps  # was: redis-server and iperf3 -s as root
        tcp, unix = _listeners(pids)
        assert tcp <= {"127.0.0.1"}, tcp
        _attack(kind, wl, pids, tcp, unix)
        assert psutil.pid_exists(pids[0])
        assert wl.measure(warmup_s=0, measure_s=1).metrics["throughput"] > 0  # still measures the same thing
    finally:
        wl.stop()


def _attack(kind: str, wl: Any, pids: list[int], tcp: set[str], unix: set[str]) -> None:
    """What another local user (or the server's account, were the server taken over) could do."""
    if kind == "redis-benchmark":
        assert not tcp and len(unix) == 1, (tcp, unix)  # no TCP at all: a unix socket only
        sock = Path(next(iter(unix)))
        st = sock.stat()
        assert st.st_mode & 0o777 == 0o700 and st.st_uid != 0
        result = as_attacker(["redis-cli", "-s", str(sock), "CONFIG", "SET", "dir", "/tmp"])
        assert "Permission denied" in result.stderr + result.stdout, result  # was: root, no auth, on TCP
    elif kind == "pgbench":
        result = as_attacker(["psql", "-w", "-h", "127.0.0.1", "-p", str(wl.port), "-U", "postgres", "-c",
                              "COPY (SELECT 1) TO PROGRAM 'id'"])
        assert result.returncode != 0 and "password" in result.stderr, result  # was: trust: superuser, ran `id`
    # every server: its account cannot write novatune's workdir
    server = psutil.Process(pids[0]).uids().effective
    probe = subprocess.run(["test", "-w", str(wl.workdir)], user=server, extra_groups=[], cwd="/", timeout=30)
    assert probe.returncode != 0
