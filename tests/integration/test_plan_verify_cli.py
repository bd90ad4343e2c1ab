"""`novatune plan`, `verify` and `knobs get` through the CLI on a fake tree: exit codes, no tracebacks."""

import json

import pytest

from tests.actuators.conftest import build_fake_tree, tree_bytes
from tests.integration.conftest import novatune

pytestmark = pytest.mark.slow


@pytest.fixture()
def root(tmp_path):
    r = build_fake_tree(tmp_path / "root")
    (r / "etc/sysctl.d").mkdir(parents=True)
    (r / "etc/sysctl.d/90-site.conf").write_text("vm.swappiness = 10\n")
    return r


def _clean(proc):
    assert "Traceback" not in proc.stdout + proc.stderr


def _cfg(tmp_path, knobs):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"format": "novatune.config/v1", "knobs": knobs}))
    return str(p)


def test_plan_names_the_conflicting_file(tmp_path, home, root):
    before = tree_bytes(root)
    cfg = _cfg(tmp_path, {"vm.swappiness": 30})
    proc = novatune("plan", cfg, "--root", str(root), home=home)
    assert proc.returncode == 0, proc.stderr
    assert "/etc/sysctl.d/90-site.conf" in proc.stdout and "vm.swappiness" in proc.stdout
    data = json.loads(novatune("plan", cfg, "--root", str(root), "--json", home=home, check=True).stdout)
    (row,) = data["knobs"]
    assert (row["current"], row["new"], row["changes"]) == (60, 30, True)
    assert row["conflicts"][0]["source"] == "/etc/sysctl.d/90-site.conf" and row["conflicts"][0]["value"] == "10"
    assert tree_bytes(root) == before


def test_plan_out_of_bounds_exits_2_with_the_range(tmp_path, home, root):
    proc = novatune("plan", _cfg(tmp_path, {"vm.swappiness": 500}), "--root", str(root), home=home)
    assert proc.returncode == 2
    assert "[0, 200]" in proc.stderr
    _clean(proc)


@pytest.mark.parametrize("content", ["{", '{"format": "nope"}', "[]"])
def test_bad_config_file_exits_2(tmp_path, home, content):
    p = tmp_path / "bad.json"
    p.write_text(content)
    for cmd in ("plan", "verify"):
        proc = novatune(cmd, str(p), home=home)
        assert proc.returncode == 2, proc.stderr
        assert "error:" in proc.stderr
        _clean(proc)


def test_verify_exit_codes(tmp_path, home, root):
    cfg = _cfg(tmp_path, {"vm.swappiness": 20})
    proc = novatune("verify", cfg, "--root", str(root), "--json", home=home)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["drift"] == ["vm.swappiness"]
    (root / "proc/sys/vm/swappiness").write_text("20\n")
    proc = novatune("verify", cfg, "--root", str(root), home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no drift" in proc.stdout


def test_knobs_get_path_is_refused(home):
    proc = novatune("knobs", "get", "../../etc/passwd", home=home)
    assert proc.returncode == 2
    assert "unknown knob" in proc.stderr
    _clean(proc)


def test_recover_prints_nothing_to_do(home):
    proc = novatune("recover", home=home)
    assert proc.returncode == 0 and "nothing to recover" in proc.stdout
    _clean(proc)
