"""Every export format checked by the tool that consumes it.

sysctl.d: ``sysctl -p`` inside a network namespace made here (net.* only; host-wide keys are
checked read-only). TuneD: TuneD 2.20's own profile loader (Debian's tuned package unpacked by
.ci/run into $TUNED_ROOT, never installed or started). systemd: ``systemd-analyze verify`` on a
throwaway unit in a temp dir. shell: ``shellcheck``, then apply/rollback for real inside a
network namespace. JSON/YAML: ``novatune plan`` and ``novatune verify``.

Nothing here changes a host setting: writes happen only inside the namespaces these tests create.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from experiments.deploy.export import write_export
from tests.experiments.test_export import RICH_KNOBS, make_view
from tests.integration.conftest import needs_root, novatune

pytestmark = pytest.mark.timeout(120)

NET_KNOBS = {"net.core.somaxconn": 1024, "net.ipv4.tcp_fin_timeout": 30, "net.ipv4.tcp_rmem": [4096, 131072, 8388608]}
NET_FILES = {k: "/proc/sys/" + k.replace(".", "/") for k in NET_KNOBS}


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, **kw)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path


@pytest.fixture()
def netns():
    """A fresh network namespace, deleted afterwards; its net.* sysctls are its own."""
    _need("ip")
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"novatune-test-{secrets.token_hex(4)}"
    proc = _run("ip", "netns", "add", name)
    assert proc.returncode == 0, proc.stderr
    try:
        yield name
    finally:
        _run("ip", "netns", "delete", name)


def _ns_read(ns: str, path: str) -> str:
    proc = _run("ip", "netns", "exec", ns, "cat", path)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def _want(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


# ------------------------------------------------------------------ sysctl.d
def test_sysctl_d_loads_with_sysctl_p(tmp_path, netns):
    _need("sysctl")
    (conf,) = write_export(make_view(tmp_path, RICH_KNOBS), "sysctl", tmp_path, trial=0)
    assert conf.name == "90-novatune.conf"
    lines = [ln for ln in conf.read_text().splitlines() if ln and not ln.startswith("#")]
    net = [ln for ln in lines if ln.startswith("net.")]
    host = [ln for ln in lines if not ln.startswith("net.")]
    assert net and host
    net_conf = tmp_path / "net.conf"
    net_conf.write_text("\n".join(net) + "\n")
    proc = _run("ip", "netns", "exec", netns, "sysctl", "-p", str(net_conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for key in ("net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rmem"):
        assert _ns_read(netns, NET_FILES[key]) == _want(RICH_KNOBS[key])
    # host-wide keys are not written: each must name an existing sysctl and carry an integer value
    for line in host:
        key, _, value = (p.strip() for p in line.partition("="))
        assert Path("/proc/sys", *key.split(".")).is_file(), key
        assert all(v.lstrip("-").isdigit() for v in value.split()), line
    # the check can fail: sysctl -p reports an unknown key
    bad = tmp_path / "bad.conf"
    bad.write_text("net.core.no_such_key = 1\n")
    assert _run("ip", "netns", "exec", netns, "sysctl", "-p", str(bad)).returncode != 0


# ------------------------------------------------------------------ TuneD
_LOADER = textwrap.dedent("""
    import inspect, importlib, json, sys
    from tuned import profiles
    from tuned.plugins import base
    dirs, name = sys.argv[1:-1], sys.argv[-1]
    loader = profiles.Loader(profiles.Locator(dirs), profiles.Factory(), profiles.Merger(), None,
                             profiles.variables.Variables())
    p = loader.load(name)
    def known(kind):
        try:
            m = importlib.import_module("tuned.plugins.plugin_" + kind)
        except ImportError as e:
            return "import failed: %s" % e
        (cls,) = [c for c in vars(m).values()
                  if inspect.isclass(c) and issubclass(c, base.Plugin) and c.__module__ == m.__name__]
        return sorted(cls._get_config_options())
    print(json.dumps({"name": p.name, "options": dict(p.options), "units": {
        n: {"type": u.type, "devices": u.devices, "options": dict(u.options), "known": known(u.type)}
        for n, u in p.units.items()}}))
""")


@pytest.fixture()
def tuned_root():
    root = os.environ.get("TUNED_ROOT")
    if not root and Path("/usr/lib/python3/dist-packages/tuned/profiles/loader.py").is_file():
        root = "/"  # TuneD installed on this machine: its loader and stock profiles are used read-only
    if not root:
        pytest.skip("no TuneD: set TUNED_ROOT (.ci/run unpacks Debian's tuned package there)")
    root_path = Path(root)
    if not (root_path / "usr/lib/python3/dist-packages/tuned/profiles/loader.py").is_file():
        pytest.fail(f"TUNED_ROOT={root} holds no TuneD profile loader")
    if not Path("/usr/bin/python3").is_file():
        pytest.skip("/usr/bin/python3 (Debian's python, which runs TuneD) is missing")
    return root_path


def _tuned_load(tuned_root: Path, profiles_dir: Path, name: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tuned_root / "usr/lib/python3/dist-packages")}
    return _run("/usr/bin/python3", "-c", _LOADER, str(tuned_root / "usr/lib/tuned"), str(profiles_dir), name,
                env=env, cwd=profiles_dir)


def test_tuned_profile_loads_with_tuneds_loader(tmp_path, tuned_root):
    profiles_dir = tmp_path / "profiles"
    (conf,) = write_export(make_view(tmp_path, RICH_KNOBS), "tuned", profiles_dir / "novatune", trial=0,
                           include="throughput-performance")
    assert conf == profiles_dir / "novatune" / "tuned.conf"
    proc = _tuned_load(tuned_root, profiles_dir, "novatune")
    assert proc.returncode == 0, proc.stderr
    prof = json.loads(proc.stdout)
    units = prof["units"]
    sysctl = units["sysctl"]["options"]
    assert sysctl["vm.swappiness"] == "30"  # ours overrides throughput-performance's 10
    assert sysctl["vm.dirty_background_ratio"] == "10"  # inherited from the included stock profile
    assert sysctl["net.ipv4.tcp_rmem"] == "4096 131072 8388608"
    assert units["vm"]["options"] == {"transparent_hugepages": "madvise",
                                      "transparent_hugepage.defrag": "defer+madvise"}
    assert units["disk_vda"]["type"] == "disk" and units["disk_vda"]["devices"] == "vda"
    assert units["disk_vda"]["options"] == {"elevator": "mq-deadline", "readahead": "256"}
    assert units["disk_vdb"]["options"] == {"elevator": "none"}
    assert units["sysfs"]["options"] == {"/sys/kernel/mm/ksm/run": "0", "/sys/block/vda/queue/nr_requests": "64"}
    assert units["cpu"]["options"]["governor"] == "performance"
    assert units["cpu"]["options"]["energy_performance_preference"] == "balance_performance"
    assert units["net"]["devices"] == "eth0" and units["net"]["options"]["features"] == "tso off gro on"
    # every option we wrote is one the TuneD plugin knows (sysctl/sysfs take any key)
    ours = {"vm", "disk_vda", "disk_vdb", "cpu", "net"}
    for name in ours:
        known = units[name]["known"]
        assert isinstance(known, list), f"{name}: {known}"
        assert set(units[name]["options"]) <= set(known), (name, units[name]["options"], known)


def test_tuned_include_of_a_missing_profile_fails(tmp_path, tuned_root):
    profiles_dir = tmp_path / "profiles"
    write_export(make_view(tmp_path, {"vm.swappiness": 5}), "tuned", profiles_dir / "novatune", trial=0,
                 include="no-such-profile")
    proc = _tuned_load(tuned_root, profiles_dir, "novatune")
    assert proc.returncode != 0
    assert "Cannot find profile 'no-such-profile'" in proc.stderr


# ------------------------------------------------------------------ systemd drop-in
def _etc_systemd() -> list[tuple[str, float]]:
    out = []
    for dirpath, dirnames, filenames in os.walk("/etc/systemd"):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                out.append((p, os.lstat(p).st_mtime))
            except OSError:
                pass
    return sorted(out)


def _verify_unit(tmp_path: Path, drop_in: str) -> tuple[subprocess.CompletedProcess, Path]:
    units = tmp_path / "units"
    (units / "novatune-test.service.d").mkdir(parents=True, exist_ok=True)
    unit = units / "novatune-test.service"
    unit.write_text("[Unit]\nDescription=novatune export check\n\n[Service]\nExecStart=/bin/true\n")
    conf = units / "novatune-test.service.d" / "90-novatune.conf"
    conf.write_text(drop_in)
    # SYSTEMD_UNIT_PATH "dir:" = this directory, then the built-in path: drop-ins beside the unit load
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "info"}
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--generators=no", str(unit)], check=False,
                          capture_output=True, text=True, timeout=60, env=env, cwd=units)
    return proc, conf


def test_systemd_drop_in_verifies(tmp_path):
    _need("systemd-analyze")
    before = _etc_systemd()
    (drop,) = write_export(make_view(tmp_path, RICH_KNOBS), "systemd", tmp_path / "drop-in.conf", trial=0)
    text = drop.read_text()
    assert "CPUQuota=150%" in text
    proc, conf = _verify_unit(tmp_path, text)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert str(conf) not in out, out  # every complaint about the drop-in names it (file:line)
    for bad in ("Unknown key", "Failed to parse", "Invalid", "ignoring"):
        assert bad not in out, out
    # the check can fail: a broken key and a broken value in the same drop-in are reported
    n = len(text.splitlines())
    proc, conf = _verify_unit(tmp_path, text + "BogusKey=1\nMemoryMax=lots\n")
    out = proc.stdout + proc.stderr
    assert f"{conf}:{n + 1}: Unknown key 'BogusKey'" in out, out
    assert f"{conf}:{n + 2}: Invalid memory limit 'lots'" in out, out
    assert _etc_systemd() == before


# ------------------------------------------------------------------ shell script
def test_shell_script_passes_shellcheck(tmp_path):
    _need("shellcheck")
    for knobs in (RICH_KNOBS, NET_KNOBS):
        view = make_view(tmp_path, knobs, name=f"s{len(knobs)}")
        (script,) = write_export(view, "shell", tmp_path / f"{len(knobs)}.sh", trial=0)
        for cmd in (["shellcheck", "-s", "bash", str(script)], ["bash", "-n", str(script)]):
            proc = _run(*cmd)
            assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_root
def test_shell_apply_and_rollback_inside_a_netns(tmp_path, netns):
    host_before = {k: Path(f).read_text() for k, f in NET_FILES.items()}
    (script,) = write_export(make_view(tmp_path, NET_KNOBS, name="net"), "shell", tmp_path, trial=0)
    assert script.name == "novatune-apply.sh"
    state = tmp_path / "state" / "apply.state"
    env = {**os.environ, "NOVATUNE_STATE_FILE": str(state)}

    def run(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", netns, "bash", str(script), cmd],
                              check=False, capture_output=True, text=True, timeout=60, env=env)

    original = {k: _ns_read(netns, f) for k, f in NET_FILES.items()}
    assert all(original[k] != _want(v) for k, v in NET_KNOBS.items()), original
    assert run("check").returncode == 1
    proc = run("apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {k: _ns_read(netns, f) for k, f in NET_FILES.items()} == {k: _want(v) for k, v in NET_KNOBS.items()}
    saved = dict(line.split("\t", 1) for line in state.read_text().splitlines())
    assert saved == {NET_FILES[k]: v for k, v in original.items()}
    assert run("check").returncode == 0
    assert "applied" in run("status").stdout
    again = run("apply")
    assert again.returncode == 1 and "not rolled back" in again.stderr
    assert dict(line.split("\t", 1) for line in state.read_text().splitlines()) == saved  # state kept intact
    proc = run("rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {k: _ns_read(netns, f) for k, f in NET_FILES.items()} == original
    assert not state.exists()
    assert "not applied" in run("status").stdout
    assert run("bogus").returncode == 2
    assert {k: Path(f).read_text() for k, f in NET_FILES.items()} == host_before  # the host namespace untouched


@needs_root
def test_shell_a_refused_write_rolls_back(tmp_path, netns):
    knobs = {"net.ipv4.tcp_fin_timeout": 31, "net.core.somaxconn": -5}  # the kernel refuses the second
    (script,) = write_export(make_view(tmp_path, knobs, name="bad"), "shell", tmp_path, trial=0)
    state = tmp_path / "apply.state"
    before = {f: _ns_read(netns, f) for f in (NET_FILES["net.ipv4.tcp_fin_timeout"], NET_FILES["net.core.somaxconn"])}
    proc = subprocess.run(["ip", "netns", "exec", netns, "bash", str(script), "apply"], check=False,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NOVATUNE_STATE_FILE": str(state)})
    assert proc.returncode == 1 and "rolling back" in proc.stderr, proc.stdout + proc.stderr
    assert {f: _ns_read(netns, f) for f in before} == before
    assert not state.exists()


# ------------------------------------------------------------------ JSON / YAML
def _live() -> dict[str, object]:
    """Live values of knobs that studies rarely tune (concurrent studies on this machine tune swappiness)."""
    defrag = Path("/sys/kernel/mm/transparent_hugepage/defrag").read_text()
    return {
        "vm.stat_interval": int(Path("/proc/sys/vm/stat_interval").read_text()),
        "kernel.timer_migration": int(Path("/proc/sys/kernel/timer_migration").read_text()),
        "thp.defrag": defrag[defrag.index("[") + 1:defrag.index("]")],
    }


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_round_trip_through_plan_and_verify(tmp_path, home, fmt):
    # the live values are read, exported and verified; when something else on this machine changes
    # them meanwhile (a concurrent study), the attempt is repeated (bounded)
    for attempt in range(5):
        live = _live()
        (path,) = write_export(make_view(tmp_path, live, name=f"live{attempt}"), fmt, tmp_path / f"{attempt}.{fmt}",
                               trial=0)
        novatune("plan", str(path), home=home, check=True)
        proc = novatune("verify", str(path), "--json", home=home)
        if _live() == live:
            break
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["drift"] == []
    (named,) = write_export(make_view(tmp_path, live, name="named"), fmt, tmp_path, trial=0)
    assert named.name == f"novatune.{fmt}"
    changed = {**live, "vm.stat_interval": live["vm.stat_interval"] % 10 + 1}  # another value in [1, 10]
    (path,) = write_export(make_view(tmp_path, changed, name="changed"), fmt, tmp_path / f"changed.{fmt}", trial=0)
    novatune("plan", str(path), home=home, check=True)
    proc = novatune("verify", str(path), "--json", home=home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "vm.stat_interval" in json.loads(proc.stdout)["drift"]
