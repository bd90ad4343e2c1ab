"""Classes 6 and 7: what a study may act on. Passive targets (pid 1, kernel threads, novatune itself, the
root cgroup; anything the operator did not name) and NIC knobs on a protected interface (the one with
the default route).

Each test reproduces the attack the old code allowed -- a passive spec naming pid 1 or novatune's own
pid passed ``prepare`` and process knobs then reniced it; ``nic.<default-route iface>.*`` was offered
with risk "medium" -- and asserts the refusal (its message names the target and the rule, CLI exit 2 /
HTTP 4xx) and that nothing changed. Changes are only ever attempted on processes the test starts; NIC
writes only on a veth pair inside a network namespace the test creates; the host's interfaces are only
read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from actuators import ActuatorError, Catalog, ChangeSession, Journal, KnobContext, SysRoot
from actuators.errors import ProtectedInterface
from actuators.nic import default_route_interfaces, protected
from collectors.passive.allowed import PF_KTHREAD, PassivePolicy, TargetRefused, TargetRule, never_target
from collectors.passive.target import PassiveWorkload
from experiments.deploy.applications import default_catalog
from experiments.service import create_app
from experiments.settings import Paths, Settings, SettingsError
from experiments.spec import SpecError, parse_spec
from experiments.study.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
PYTHON = os.path.realpath(sys.executable)
TOKEN = "security-targets-token"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No operator configuration leaks in: the settings are the defaults unless a test says otherwise."""
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    for var in ("NOVATUNE_CONFIG", "NOVATUNE_ALLOWED_TARGETS", "NOVATUNE_ALLOWED_PROBE_HOSTS",
                "NOVATUNE_PROTECTED_INTERFACES"):
        monkeypatch.delenv(var, raising=False)


def _spawn(argv0: str | None = None) -> subprocess.Popen[bytes]:
    """A sleeping process the test owns; with ``argv0`` its command line starts with that name."""
    if argv0 is None:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    return subprocess.Popen(["bash", "-c", f"exec -a {argv0} sleep 60"], stdin=subprocess.DEVNULL)


def _reap(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)


def _settled(proc: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) until ``proc`` has exec'd its program (its cmdline is no longer bash's)."""
    for _ in range(100):
        try:
            if b"bash" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                return
        except OSError:
            pass
        time.sleep(0.02)


def _state(pid: int) -> tuple[int, frozenset[int]]:
    return os.getpriority(os.PRIO_PROCESS, pid), frozenset(os.sched_getaffinity(pid))


def _a_kernel_thread() -> int:
    """A pid with PF_KTHREAD set other than kthreadd, else kthreadd (2)."""
    for entry in sorted(os.listdir("/proc"), key=lambda e: (len(e), e))[:4000]:
        if entry.isdigit() and int(entry) > 2:
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[6]) & PF_KTHREAD:
                return int(entry)
    return 2


def _everything_nameable(pids: list[int]) -> list[str]:
    """Allow-list entries naming each pid's executable and cgroups (all a rule can name, but the root cgroup)."""
    out: list[str] = []
    for pid in pids:
        try:
            out.append(f"exe:{os.readlink(f'/proc/{pid}/exe')}")
        except OSError:
            pass
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            path = line.split(":", 2)[2]
            if path != "/":
                out.append(f"cgroup:{path}")
    return list(dict.fromkeys(out))


def _passive_spec(workload: dict[str, object], knobs: dict[str, object] | None = None) -> dict[str, object]:
    return {"name": "victim", "workload": {"kind": "passive", **workload},
            "knobs": knobs or {"sched.nice": {"low": 0, "high": 19}},
            "objectives": {"target_cpu_pct": "minimize"}, "budget": {"trials": 1}}


# ================================================================== class 6: passive targets
def test_pid_1_kernel_threads_and_novatune_itself_are_never_targets_even_if_the_operator_allows_them() -> None:
    fake = _spawn("novatune")  # a novatune process (the service, a study worker) by its command line
    try:
        _settled(fake)
        victims = {1: "is init", _a_kernel_thread(): "kernel thread", os.getpid(): "novatune itself",
                   os.getppid(): "novatune itself", fake.pid: "is a novatune process"}
        policy = PassivePolicy.of(_everything_nameable(list(victims)))  # even so
        before = {pid: _state(pid) for pid in victims}
        for pid, why in victims.items():
            wl = PassiveWorkload(pids=[pid], policy=policy)
            with pytest.raises(TargetRefused, match=rf"pids \[{pid}\] refused: pid {pid} .*{why}.*never targets"):
                wl.check_target()
            with pytest.raises(TargetRefused, match="never targets"):
                wl.start()
            with pytest.raises(TargetRefused):
                wl.pids()  # what process knobs act on
        assert {pid: _state(pid) for pid in victims} == before
        assert fake.poll() is None
    finally:
        _reap(fake)


def test_a_passive_spec_naming_pid_1_is_refused_by_prepare_the_cli_and_the_api(tmp_path: Path) -> None:
    before = _state(1)
    spec = _passive_spec({"pids": [1]})
    with pytest.raises(SpecError, match=r"workload \(passive\): passive target pids \[1\] refused: pid 1 .* init"):
        prepare(parse_spec(spec), paths=Paths(tmp_path / "home"),
                settings=Settings(allowed_targets=_everything_nameable([1]) or [f"exe:{PYTHON}"]))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "experiments", "study", "run", str(tmp_path / "spec.yaml")],
                          cwd=REPO, env={**os.environ, "COLUMNS": "400"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pid 1" in proc.stderr and "never targets" in proc.stderr and "Traceback" not in proc.stderr
    app = create_app(Paths(tmp_path / "api").ensure(), Settings(api_token=TOKEN))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post("/studies", json=spec, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422, r.text
        assert any("pid 1" in p and "never targets" in p for p in r.json()["problems"]), r.text
        assert client.get("/studies/victim").status_code == 404
    assert _state(1) == before


def test_passive_targets_are_strict_by_default_and_allowed_by_the_operators_setting(tmp_path: Path) -> None:
    target = _spawn()
    try:
        spec = parse_spec(_passive_spec({"pids": [target.pid]}))
        with pytest.raises(SpecError) as err:
            prepare(spec, paths=Paths(tmp_path / "home"))  # nothing allowed: the default
        msg = str(err.value)
        assert f"pid {target.pid}" in msg and f"executable {PYTHON}" in msg and "is not an allowed target" in msg
        assert "allowed_targets" in msg and "exe:/PATH" in msg and "(allowed now: none)" in msg
        with pytest.raises(SpecError, match="is not an allowed target"):  # the executable is what counts
            prepare(spec, paths=Paths(tmp_path / "home"), settings=Settings(allowed_targets=["exe:/usr/bin/true"]))
        # what the operator named in the configuration is a target
        cfg = tmp_path / "home" / "config.yaml"
        cfg.parent.mkdir(mode=0o700, exist_ok=True)
        cfg.write_text(yaml.safe_dump({"allowed_targets": [f"exe:{PYTHON}"]}))
        plan = prepare(spec, paths=Paths(tmp_path / "home"))
        assert plan.policy.targets == (TargetRule("exe", PYTHON),)
        wl = plan.build_workload(tmp_path / "w", paths=Paths(tmp_path / "home"))
        assert wl.start() == [target.pid] and wl.pids() == [target.pid]
        assert target.poll() is None
    finally:
        _reap(target)


def test_an_allowed_target_entry_is_one_of_three_clear_forms_and_never_the_root_cgroup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad, why in (("cgroup:/", "root cgroup"), ("nginx", "not an allowed-target entry"),
                     ("unit:system.slice", "not an allowed-target entry"), ("exe:bin/x", "not an allowed-target"),
                     ("cgroup:/a/../b", "not an allowed-target entry")):
        monkeypatch.setenv("NOVATUNE_ALLOWED_TARGETS", json.dumps([bad]))
        with pytest.raises(SettingsError, match=rf"allowed_targets: .*{why}"):
            Settings.load()
    unit = TargetRule("unit", "nginx.service")
    assert unit.matches_cgroup("/system.slice/nginx.service")
    assert unit.matches_cgroup("/system.slice/nginx.service/worker")
    assert not unit.matches_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service")
    assert not unit.matches_cgroup("/system.slice/other.service")
    cg = TargetRule("cgroup", "/svc")
    assert cg.matches_cgroup("/svc") and cg.matches_cgroup("/svc/a") and not cg.matches_cgroup("/svcx")


def _fake_proc(tmp_path: Path, procs: dict[int, tuple[int, int, list[str]]]) -> Path:
    """A fake /proc: pid -> (ppid, flags, cmdline)."""
    proc = tmp_path / "proc"
    for pid, (ppid, flags, argv) in procs.items():
        d = proc / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} (x y) S {ppid} 1 1 0 -1 {flags} 0 0 0 0 0 0\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        (d / "cgroup").write_text("0::/svc\n")
    return proc


def test_the_never_rules_read_the_kernel_thread_flag_and_novatunes_command_lines(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {
        10: (1, 0, ["/usr/sbin/init"]), 50: (10, 0, ["bash"]), 60: (50, 0, ["python3", "-m", "pytest"]),
        4242: (17, PF_KTHREAD, []),
        4343: (10, 0, ["/usr/bin/python3", "-m", "experiments.study.worker", "s"]),
        4444: (10, 0, ["/usr/bin/python3", "/opt/venv/bin/novatune", "serve"]),
        4545: (10, 0, ["/usr/bin/python3", "-m", "http.server"]),
    })
    policy = PassivePolicy(targets=(TargetRule("cgroup", "/svc"),), proc=proc, self_pid=60)
    assert policy.own() == {60, 50, 10, 1}  # itself and every process up the tree
    for pid, why in ((4242, "kernel thread"), (4343, "novatune process"), (4444, "novatune process"),
                     (50, "novatune itself or a process that started it")):
        with pytest.raises(TargetRefused, match=why):
            policy.check_pids([pid])
        assert never_target([pid], proc=proc, self_pid=60) is not None
    policy.check_pids([4545])  # allowed by its cgroup, and nothing novatune
    with pytest.raises(TargetRefused, match="pid 4343 .*a descendant of the named pids"):
        policy.check_pids([4545], [4545, 4343])  # a process in the target now is checked too


@root_only
def test_the_root_cgroup_and_a_cgroup_holding_novatune_are_refused_also_when_a_knob_is_applied(
    tmp_path: Path,
) -> None:
    hierarchy_roots = [p for p in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup") if Path(p, "cgroup.procs").exists()]
    for root_cg in ("/", *hierarchy_roots):
        with pytest.raises(TargetRefused, match="root cgroup, which holds every process"):
            PassiveWorkload(cgroup=root_cg, policy=PassivePolicy.of(["cgroup:/anything"])).check_target()
    cpu = Path("/sys/fs/cgroup/cpu")
    if not (cpu / "cgroup.procs").exists() or (cpu / "cgroup.controllers").exists():
        pytest.skip("needs the cgroup v1 cpu hierarchy")
    name = f"novatune-sec-{uuid.uuid4().hex[:8]}"
    cg = cpu / name
    cg.mkdir()
    target, fake = _spawn(), _spawn("novatune")
    try:
        _settled(fake)
        (cg / "cgroup.procs").write_text(str(target.pid))
        wl = PassiveWorkload(cgroup=str(cg), policy=PassivePolicy.of([f"cgroup:/{name}"]))
        assert wl.start() == [target.pid]  # allowed, and nothing in it is never a target
        knob = Catalog(context=KnobContext(pids=wl.pids)).get("sched.nice")
        (cg / "cgroup.procs").write_text(str(fake.pid))  # then a novatune process is in the target
        before = {p: _state(p) for p in (target.pid, fake.pid)}
        refused = rf"cgroup {cg} refused: it holds a process that is never a target \(pid {fake.pid} .*novatune"
        with ChangeSession(Journal(tmp_path / "journal.jsonl"), run_id="sec-cg", trial=0) as session, \
                pytest.raises(TargetRefused, match=refused):
            session.apply(knob, 10)
        assert {p: _state(p) for p in (target.pid, fake.pid)} == before
        with pytest.raises(TargetRefused, match="holds a process that is never a target"):
            PassiveWorkload(cgroup=str(cg), policy=PassivePolicy.of([f"cgroup:/{name}"])).start()
    finally:
        _reap(target, fake)
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert not cg.exists()


def test_process_knobs_refuse_a_never_target_whatever_bound_them(tmp_path: Path) -> None:
    fake = _spawn("novatune")
    try:
        _settled(fake)
        before = _state(fake.pid)
        for name, value in (("sched.nice", 10), ("affinity.cpus", 1), ("ioprio.class", "idle")):
            knob = Catalog(context=KnobContext(pids=lambda: [fake.pid])).get(name)
            with ChangeSession(Journal(tmp_path / "journal.jsonl"), run_id="sec-knob", trial=0) as session, \
                    pytest.raises(ActuatorError, match=rf"{name}: refused: pid {fake.pid} .*novatune process"):
                session.apply(knob, value)
        with pytest.raises(ActuatorError, match="refused: pid 1 .* is init"):
            Catalog(context=KnobContext(pids=lambda: [1])).get("sched.nice").prepare(5)  # reads only, then refuses
        assert _state(fake.pid) == before and fake.poll() is None
    finally:
        _reap(fake)


# ================================================================== class 7: protected interfaces
ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth9\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth9\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth3\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IPV6_ROUTE = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 "
    "00000400 00000003 00000000 00000003     wg0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 "
    "ffffffff 00000001 00000000 00200200       lo\n"
)


def test_the_default_route_interfaces_are_read_from_proc_net_and_fail_closed(tmp_path: Path) -> None:
    assert default_route_interfaces(ROUTE, IPV6_ROUTE) == {"eth9", "wg0"}  # the unreachable ::/0 on lo is not one
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/route").write_text(ROUTE)
    (tmp_path / "proc/net/ipv6_route").write_text(IPV6_ROUTE)
    shield = protected(("default-route", "eth3"), root=SysRoot(tmp_path))
    assert set(shield) == {"eth9", "wg0", "eth3"} and "default route" in shield["eth9"]
    assert protected((), root=SysRoot(tmp_path)) == {}  # the operator removed the entry on purpose
    (tmp_path / "proc/net/route").unlink()
    assert list(protected(("default-route",), root=SysRoot(tmp_path))) == ["*"]  # unknown: every one


def test_protected_interfaces_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().protected_interfaces == ["default-route"]
    monkeypatch.setenv("NOVATUNE_PROTECTED_INTERFACES", '["../../etc"]')
    with pytest.raises(SettingsError, match="protected_interfaces: .*not an interface name"):
        Settings.load()


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ethtool") is None,
    reason="needs root, ip (iproute2) and ethtool",
)


@pytest.fixture
def routed_netns() -> Iterator[str]:
    """A namespace of the test's own: veth nva (with the default route) and nvb; the host's network untouched."""
    ns = f"novatune-sec-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "add", "nva", "type", "veth", "peer", "name", "nvb"],
                    ["addr", "add", "10.213.0.2/24", "dev", "nva"], ["link", "set", "nva", "up"],
                    ["link", "set", "nvb", "up"], ["route", "add", "default", "via", "10.213.0.1", "dev", "nva"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _features(ns: str, iface: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-k", iface], capture_output=True, text=True,
                          check=True).stdout


@needs_netns
def test_nic_knobs_of_the_default_route_interface_are_not_offered_and_refused(routed_netns: str) -> None:
    ns = routed_netns
    before = _features(ns, "nva")
    cat = Catalog(context=KnobContext(netns=ns))
    names = {k.name for k in cat.knobs() if k.name.startswith("nic.")}
    assert "nic.nvb.gro" in names and not any(n.startswith("nic.nva.") for n in names)
    with pytest.raises(ProtectedInterface, match=r"nic\.nva\.gro refused: nva is a protected interface \(it "
                                                 r"carries a default route.*protected_interfaces \(now "
                                                 r"\['default-route'\]"):
        cat.get("nic.nva.gro")
    assert ProtectedInterface.exit_code == 2 and 400 <= ProtectedInterface.http_status < 500
    assert cat.get("nic.nvb.gro").name == "nic.nvb.gro"  # the others are still offered
    named = Catalog(context=KnobContext(netns=ns, protected_interfaces=("nvb",)))
    with pytest.raises(ProtectedInterface, match="listed in the setting protected_interfaces"):
        named.get("nic.nvb.gro")
    assert Catalog(context=KnobContext(netns=ns, protected_interfaces=())).get("nic.nva.gro")  # removed on purpose
    assert _features(ns, "nva") == before


def _default_iface() -> str:
    ifaces = sorted(default_route_interfaces(Path("/proc/net/route").read_text(), ""))
    if not ifaces or shutil.which("ethtool") is None:
        pytest.skip("no IPv4 default route or no ethtool here")
    return ifaces[0]


def _novatune(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@root_only
def test_the_hosts_default_route_interface_is_refused_by_knobs_spec_apply_and_api(tmp_path: Path) -> None:
    iface = _default_iface()  # only ever read here: every write below is refused before it, or a dry run
    before = subprocess.run(["ethtool", "-k", iface], capture_output=True, text=True).stdout
    home = tmp_path / "home"
    listed = _novatune("knobs", "list", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    assert not [k["name"] for k in json.loads(listed.stdout) if k["name"].startswith(f"nic.{iface}.")]
    got = _novatune("knobs", "get", f"nic.{iface}.gro", home=home)
    assert got.returncode == 2 and f"{iface} is a protected interface" in got.stderr, got.stderr
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"format": "novatune.config/v1", "knobs": {f"nic.{iface}.rx_ring": 1}}))
    applied = _novatune("apply", str(cfg), "--dry-run", home=home)
    assert applied.returncode == 2 and "nothing was changed" in applied.stderr, applied.stderr
    assert f"nic.{iface}.rx_ring refused: {iface} is a protected interface" in applied.stderr
    spec = {"name": "cut", "knobs": {f"nic.{iface}.gro": {"choices": ["on", "off"]}},
            "objectives": {"throughput_rps": "maximize"}}
    with pytest.raises(SpecError, match=rf"knobs\.nic\.{iface}\.gro: nic\.{iface}\.gro refused"):
        prepare(parse_spec(spec), paths=Paths(home))
    app = create_app(Paths(tmp_path / "api").ensure(), Settings(api_token=TOKEN))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.get(f"/knobs/nic.{iface}.gro")
        assert r.status_code == 422 and "protected interface" in r.json()["detail"]
        assert not [k for k in client.get("/knobs").json() if k["name"].startswith(f"nic.{iface}.")]
        r = client.post("/studies", json=spec, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422 and "protected interface" in str(r.json()["problems"])
    # what was applied before the rule (or before the route moved) can still be read and rolled back
    assert default_catalog(protect=False).get(f"nic.{iface}.gro").name == f"nic.{iface}.gro"
    with pytest.raises(ProtectedInterface):
        default_catalog().get(f"nic.{iface}.gro")
    assert subprocess.run(["ethtool", "-k", iface], capture_output=True, text=True).stdout == before
