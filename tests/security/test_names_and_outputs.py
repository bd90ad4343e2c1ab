"""Classes 10 and 11 (exports) of docs/security.md: study names that are paths, ``-o`` writes through
links, and export files built from a study database someone crafted.

Each test reproduces the attack (a name ``../../victim``, a link at the output path or at the old
predictable temporary name, knob names and values with newlines, sections and shell code) and asserts the
refusal (CLI exit 2 with a message saying what is allowed, API 4xx) and that nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient

from collectors.errors import NovatuneError
from experiments.deploy.export import FORMATS, ExportError, render, write_export
from experiments.safefs import UnsafeLocation
from experiments.service import create_app
from experiments.settings import InvalidName, Paths, Settings, check_name
from experiments.spec import load_spec
from experiments.study.manager import StudyManager
from experiments.study.results import load_view

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "experiments" / "specs" / "quickstart.yaml"
TOKEN = "a-token-of-thirty-two-characters-x"
BAD_NAMES = ["../../victim", "../x", "a/b", "..", ".", ".hidden", "", "x" * 65, "a b", "a\nb", "/etc"]


def novatune(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def tree(root: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "")
            for p in sorted(root.rglob("*"))}


def study(url: str, name: str, knobs: dict, *, sysctl_keys: dict | None = None, objectives=None) -> None:
    """A one-trial study as the runner records one, with whatever names and values the caller puts in."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    s.set_user_attr("objectives", objectives or ["throughput_rps", "cost_usd_per_hour"])
    s.set_user_attr("knobs", list(knobs))
    s.set_user_attr("sysctl_keys", sysctl_keys if sysctl_keys is not None else
                    {k: k for k in knobs if k.startswith(("vm.", "kernel.", "net."))})
    t = s.ask()
    t.set_user_attr("applied", dict(knobs))
    s.tell(t, [300.0, 0.05])


@pytest.fixture()
def victim(tmp_path):
    """A directory outside the data directory that a hostile name points at."""
    v = tmp_path / "victim"
    v.mkdir()
    (v / "precious").write_text("keep me\n")
    return v


# ------------------------------------------------------------------ class 10: names
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_the_one_name_rule(bad):
    with pytest.raises(InvalidName, match="letters, digits, '.', '_' or '-'"):
        check_name(bad)
    with pytest.raises(InvalidName):
        Paths(Path("/nonexistent")).study_dir(bad)


@pytest.mark.parametrize("good", ["quickstart", "quickstart-2", "a", "A.b_c-9", "x" * 64, "a..b"])
def test_good_names_still_name_a_directory_directly_under_runs(good, tmp_path):
    paths = Paths(tmp_path / "home")
    assert check_name(good) == good and paths.study_dir(good).parent == paths.runs


def test_a_name_that_is_a_path_never_leaves_the_data_directory(tmp_path, victim):
    home = tmp_path / "home"
    before = tree(tmp_path)
    for args in (["study", "run", str(SPEC), "--name", "../../victim"], ["study", "start", str(SPEC), "--name",
                 "../victim"], ["quickstart", "--name", "../../victim", "--trials", "1"],
                 ["study", "export", "../victim", "-o", str(tmp_path / "out.json")],
                 ["study", "delete", "../../victim", "--yes"], ["apply", "--study", "../victim", "--dry-run"]):
        proc = novatune(*args, home=home)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "is not allowed: a name is 1 to 64 letters" in proc.stderr and "Traceback" not in proc.stderr
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("home")} == before  # nothing outside home
    assert not any(k.startswith("home/runs/") for k in after)  # and no run inside it either


def test_a_study_already_stored_under_a_hostile_name_is_not_deleted_through_it(tmp_path, victim):
    """A store from before the rule (or crafted) holds ``../../victim``: ``study delete`` used to remove
    ``runs/../../victim``, a directory outside the data directory."""
    paths = Paths(tmp_path / "home" / "data").ensure()
    optuna.create_study(study_name="../../victim", storage=paths.optuna_url)
    proc = novatune("study", "delete", "../../victim", "--yes", home=paths.home)
    assert proc.returncode == 2 and "'../../victim' is not allowed" in proc.stderr, proc.stderr
    with pytest.raises(InvalidName):
        StudyManager(paths).delete("../../victim")
    assert (victim / "precious").read_text() == "keep me\n"
    assert [s.study_name for s in optuna.get_all_study_summaries(paths.optuna_url)] == ["../../victim"]


def test_the_manager_and_the_api_refuse_a_hostile_name(tmp_path):
    paths = Paths(tmp_path / "home")
    mgr = StudyManager(paths)
    with pytest.raises(InvalidName):
        mgr.claim(load_spec(SPEC), name="../x", trials=1, managed=False, pid=os.getpid())
    assert mgr.records() == []
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        spec = {"name": "x", "workload": {"kind": "oltp"}, "knobs": {"vm.swappiness": {"low": 1, "high": 100}},
                "objectives": {"throughput_rps": "maximize"}}
        r = c.post("/studies", params={"name": "../../victim"}, json=spec, headers=auth)
        assert r.status_code == 422, r.text
        r = c.post("/studies", json={**spec, "name": "../x"}, headers=auth)
        assert r.status_code == 422, r.text
        for bad in (".hidden", "..x", "x" * 65):
            assert c.delete(f"/studies/{bad}", headers=auth).status_code == 422
        assert c.get("/studies").json() == []
    assert not (paths.home.parent / "victim").exists()


def test_a_run_directory_that_is_a_link_is_refused(tmp_path, victim):
    paths = Paths(tmp_path / "home").ensure()
    (paths.runs / "s").symlink_to(victim)
    with pytest.raises(UnsafeLocation, match="is a symbolic link"):
        paths.study_dir("s")


# ------------------------------------------------------------------ class 10: -o writes
@pytest.fixture()
def stored(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    study(paths.optuna_url, "s", {"vm.swappiness": 10, "thp.enabled": "never"})
    return paths


def test_an_output_path_that_is_a_link_is_refused_not_followed(stored, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$secret:19000:0:99999:7:::\n")
    out = tmp_path / "out"
    out.mkdir()
    view = load_view(stored.optuna_url, "s")
    for fmt, name in (("json", "novatune.json"), ("shell", "novatune-apply.sh"), ("sysctl", "90-novatune.conf")):
        link = out / name
        link.symlink_to(shadow)
        for dest in (link, out, Path(f"{out}/")):  # the file, or the directory it would be written into
            with pytest.raises(NovatuneError, match=f"{link} is a symbolic link; novatune never writes through"):
                write_export(view, fmt, dest)
            assert link.is_symlink() and os.readlink(link) == str(shadow)
    proc = novatune("study", "export", "s", "--format", "json", "-o", f"{out}/", home=stored.home)  # the CLI's -o
    assert proc.returncode == 2 and "is a symbolic link; novatune never writes through a link" in proc.stderr
    assert shadow.read_text() == "root:$6$secret:19000:0:99999:7:::\n"
    assert sorted(p.name for p in out.iterdir()) == ["90-novatune.conf", "novatune-apply.sh", "novatune.json"]


def test_the_old_predictable_temporary_name_is_not_used(stored, tmp_path):
    """The export used to write ``.<name>.tmp<pid>`` with ``open(..., "w")``: a link planted there made
    root write through it."""
    shadow = tmp_path / "shadow"
    shadow.write_text("secret\n")
    out = tmp_path / "novatune.json"
    planted = out.with_name(f".{out.name}.tmp{os.getpid()}")
    planted.symlink_to(shadow)
    assert write_export(load_view(stored.optuna_url, "s"), "json", out) == [out]
    assert shadow.read_text() == "secret\n" and planted.is_symlink()
    assert '"vm.swappiness": 10' in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".novatune.json.")] == [planted.name]


def test_writing_into_directories_still_works_and_the_files_are_private_under_the_cli(stored, tmp_path):
    for fmt, dest, made in (("systemd", tmp_path / "myapp.service.d", "myapp.service.d/90-novatune.conf"),
                            ("tuned", tmp_path / "profile", "profile/tuned.conf"),
                            ("shell", f"{tmp_path}/new/", "new/novatune-apply.sh")):
        proc = novatune("study", "export", "s", "--format", fmt, "-o", str(dest), home=stored.home)
        assert proc.returncode == 0, proc.stderr
        mode = (tmp_path / made).stat().st_mode & 0o777
        assert mode == (0o700 if fmt == "shell" else 0o600), (fmt, oct(mode))


def test_the_replay_trace_never_follows_a_link(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("g,k,y\nw,1,10\nw,2,20\nw,3,15\n")
    shadow = tmp_path / "shadow"
    shadow.write_text("secret\n")
    trace = tmp_path / "trace.csv"
    trace.symlink_to(shadow)
    proc = novatune("replay", str(table), "--group", "g", "--knobs", "k", "--objective", "y:max", "--budget", "2",
                    "--seeds", "1", "--sampler", "random", "--trace", str(trace), home=tmp_path / "home")
    assert proc.returncode == 2 and "is a symbolic link" in proc.stderr, proc.stderr
    assert shadow.read_text() == "secret\n" and trace.is_symlink()


# ------------------------------------------------------------------ class 11: exports of a crafted database
HOSTILE = {
    "name with a newline and a section": ({"vm.swappiness\n[main]\ninclude": 10}, None),
    "name with shell code": ({"vm.swappiness$(touch /tmp/pwned)": 10}, None),
    "value with a newline": ({"vm.swappiness": "10\nkernel.core_pattern = |/tmp/x"}, None),
    "value with shell code": ({"thp.enabled": "never'; touch /tmp/pwned; '"}, None),
    "value with a substitution": ({"block.vda.scheduler": "$(touch /tmp/pwned)"}, None),
    "value with an equals sign": ({"cpufreq.governor": "performance\nExecStartPre=/bin/sh"}, None),
    "value with a percent specifier": ({"sched.policy": "%h"}, None),
    "a non-finite value": ({"vm.swappiness": float("nan")}, None),
    "a nested value": ({"net.ipv4.tcp_rmem": [[4096], "x y"]}, None),
    "sysctl key with a newline": ({"vm.swappiness": 10}, {"vm.swappiness": "vm.swappiness = 1\nkernel.x"}),
    "sysctl key with a path": ({"vm.swappiness": 10}, {"vm.swappiness": "../../etc/shadow"}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_exports_refuse_what_a_crafted_study_database_smuggles(tmp_path, case):
    knobs, keys = HOSTILE[case]
    paths = Paths(tmp_path / "home").ensure()
    study(paths.optuna_url, "evil", knobs, sysctl_keys=keys)
    view = load_view(paths.optuna_url, "evil")
    for fmt in FORMATS:  # the check sits before every format's renderer (both faces call render)
        with pytest.raises(ExportError, match="cannot be exported: its database holds what no export may carry"):
            render(view, fmt)


def test_both_faces_refuse_an_export_the_database_smuggles_into_and_write_nothing(tmp_path):
    knobs, keys = HOSTILE["value with shell code"]
    paths = Paths(tmp_path / "home").ensure()
    study(paths.optuna_url, "evil", knobs, sysctl_keys=keys)
    out = tmp_path / "out"
    proc = novatune("study", "export", "evil", "--format", "shell", "-o", str(out), home=paths.home)
    assert proc.returncode == 2 and "no export may carry" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not Path("/tmp/pwned").exists()
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        r = c.get("/studies/evil/export", params={"format": "tuned"})
        assert r.status_code == 409 and "no export may carry" in r.json()["detail"], r.text


def test_hostile_objective_names_stay_inside_the_header_comment(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    study(paths.optuna_url, "o", {"vm.swappiness": 10, "thp.enabled": "never"},
          objectives=["throughput\ntouch /tmp/pwned", "cost\n[main]"])
    view = load_view(paths.optuna_url, "o")
    for fmt in ("sysctl", "tuned", "systemd", "shell", "yaml"):
        text = render(view, fmt)
        header = text.split("\n# install:")[0]
        assert all(line.startswith("#") for line in header.splitlines()), (fmt, header)
    script = tmp_path / "a.sh"
    script.write_text(render(view, "shell"))
    check = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0


def test_a_link_under_runs_is_not_listed_nor_read_by_the_api(tmp_path):
    """Only the data directory's owner can put a link under runs/, but the API still never reads through
    one: the listing skips it (it used to answer 500 once the name check refused the path)."""
    paths = Paths(tmp_path / "home").ensure()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "status.json").write_text('{"name": "linked", "state": "running"}')
    (paths.runs / "linked").symlink_to(elsewhere)
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        r = c.get("/studies")
        assert r.status_code == 200, r.text
        assert "linked" not in r.text
