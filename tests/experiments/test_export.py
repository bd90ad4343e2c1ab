"""Exports and study views on a real Optuna SQLite storage (no machine changes)."""

import configparser
import json
import stat

import optuna
import pytest
import yaml

from experiments.deploy.export import FILENAMES, FORMATS, ExportError, render, write_export
from experiments.study.results import StudyNotFound, load_view


@pytest.fixture()
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["vm.swappiness", "thp.enabled"])
    study.set_user_attr("sysctl_keys", {"vm.swappiness": "vm.swappiness"})
    rows = [  # throughput, cost, p95 violation (<=0 feasible)
        ((100.0, 0.02), 10, "never", -1.0),
        ((300.0, 0.05), 20, "always", -1.0),  # knee-ish
        ((320.0, 0.09), 30, "madvise", -1.0),
        ((900.0, 0.01), 40, "never", 5.0),  # would dominate, but violates the SLA
    ]
    for (thr, cost), sw, thp, viol in rows:
        study.enqueue_trial({"vm.swappiness": sw, "thp.enabled": thp})
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.suggest_categorical("thp.enabled", ["always", "madvise", "never"])
        t.set_constraint("latency_p95_ms", viol)
        study.tell(t, [thr, cost])
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return url


def test_knee_ignores_infeasible_and_failed(url):
    view = load_view(url, "s")
    front = {t.number for t in view.front_trials()}
    assert 3 not in front and 4 not in front
    assert front == {0, 1, 2}
    knee = view.knee_trial()
    assert knee.number == 1


def test_json_export(url):
    doc = json.loads(render(load_view(url, "s"), "json"))
    assert doc["trial"] == 1 and doc["chosen_by"].startswith("trial 1: knee of the Pareto front among 3 feasible")
    assert doc["objectives"] == {"throughput_rps": 300.0, "cost_usd_per_hour": 0.05}
    assert doc["knobs"] == {"vm.swappiness": 20, "thp.enabled": "always"}


def test_sysctl_export_only_has_sysctl_lines(url):
    text = render(load_view(url, "s"), "sysctl", trial=2)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["vm.swappiness = 30"]
    assert "thp.enabled=madvise" in text  # mentioned in a comment, not as a setting


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "toml"}, "unknown format 'toml'; allowed: json, yaml, sysctl, tuned, systemd, shell"),
        ({"fmt": "json", "trial": 3}, "violates the study's constraints"),
        ({"fmt": "json", "trial": 4}, "is fail, not complete"),
        ({"fmt": "json", "trial": 99}, "has no trial 99"),
    ],
)
def test_export_errors(url, kwargs, message):
    view = load_view(url, "s")
    fmt = kwargs.pop("fmt")
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(view, fmt, **kwargs)


def test_unknown_study_lists_existing(url):
    with pytest.raises(StudyNotFound, match="studies here: s"):
        load_view(url, "nope")


def _noisy_study(url, rows, *, choose=None):
    """rows: (swappiness, [[throughput, cost] per repeat], p95 violation)."""
    study = optuna.create_study(study_name="n", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["vm.swappiness"])
    if choose:
        study.set_user_attr("spec", {"choose": choose})
    for sw, samples, viol in rows:
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.set_user_attr("applied", {"vm.swappiness": sw})
        t.set_user_attr("samples", samples)
        t.set_user_attr("metrics", {"latency_p95_ms": 10 + viol})
        t.set_constraint("latency_p95_ms", viol)
        med = [sorted(col)[len(col) // 2] for col in zip(*samples)]
        study.tell(t, med)
    return load_view(url, "n")


def test_duplicates_pool_and_a_difference_inside_the_noise_is_a_tie(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    view = _noisy_study(url, [
        (10, [[1000, 0.02], [900, 0.02], [1100, 0.02]], -1),   # noisy, same cost
        (20, [[1020, 0.02], [950, 0.02], [1080, 0.02]], -1),   # "better" median, inside the noise
        (10, [[1050, 0.02]], -1),                              # a re-measurement of trial 0
        (30, [[500, 0.01], [510, 0.01], [505, 0.01]], -1),     # clearly cheaper, clearly slower
    ])
    configs = view.configurations()
    assert [c.trial.number for c in configs] == [0, 1, 3]
    assert [t.number for t in configs[0].members] == [0, 2]  # trial 2 measured trial 0's configuration
    assert configs[0].estimate.n == 4
    d = view.decide(rule="best", target="throughput_rps")
    assert d.trial.number == 0  # pooled median 1025 (4 measurements) against 1020
    assert d.measured_by == [0, 2]
    assert d.equivalent == [1]  # not called better on a difference inside the noise
    assert set(d.noisy_front) >= {0, 1, 3}


def test_the_study_choose_rule_drives_the_export(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    rows = [(10, [[1000, 0.05]], -1), (20, [[800, 0.03]], -1), (30, [[400, 0.01]], -1)]
    view = _noisy_study(url, rows, choose={"rule": "max-perf-under-budget", "budget": {"cost_usd_per_hour": 0.04}})
    doc = json.loads(render(view, "json"))
    assert doc["trial"] == 1 and "cost_usd_per_hour <= 0.04" in doc["chosen_by"]
    with pytest.raises(ValueError, match="no feasible trial has cost_usd_per_hour <= 0.001; closest is trial 2"):
        _ = view.decide(rule="max-perf-under-budget", budget={"cost_usd_per_hour": 0.001})


# ---------------------------------------------------------------- every format, every knob family
#: one value per knob family of the catalog (tests/integration/test_export_tools.py uses it too)
RICH_KNOBS = {
    "vm.swappiness": 30, "vm.dirty_ratio": 25, "kernel.sched_autogroup_enabled": 0, "kernel.numa_balancing": 0,
    "net.core.somaxconn": 1024, "net.ipv4.tcp_fin_timeout": 30, "net.ipv4.tcp_rmem": [4096, 131072, 8388608],
    "net.ipv4.tcp_wmem": 6291456,  # the max only: not one sysctl line
    "thp.enabled": "madvise", "thp.defrag": "defer+madvise", "ksm.run": 0,
    "block.vda.read_ahead_kb": 256, "block.vda.scheduler": "mq-deadline", "block.vda.nr_requests": 64,
    "block.vdb.scheduler": "none",
    "cpufreq.governor": "performance", "cpufreq.epp": "balance_performance",
    "irq.24.affinity": "0", "irq.default_affinity": "0-1", "nic.eth0.tso": "off", "nic.eth0.gro": "on",
    "sizing.vcpus": 1.5, "sizing.cpu_weight": 200, "sizing.memory_gib": 2.5, "sizing.cpuset_cpus": "0-1",
    "sizing.cpuset_mems": "0", "affinity.cpus": 2, "affinity.placement": "compact", "sched.policy": "batch",
    "sched.nice": -5, "ioprio.class": "best-effort", "ioprio.level": 4, "instance.type": "m5.large",
}
SYSCTL_PREFIXES = ("vm.", "kernel.", "net.")


def make_view(tmp_path, knobs, name="rich"):
    """A one-trial study whose trial applied ``knobs``; sysctl_keys as the runner records them."""
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", list(knobs))
    study.set_user_attr("sysctl_keys", {k: k for k in knobs if k.startswith(SYSCTL_PREFIXES)})
    t = study.ask()
    t.set_user_attr("applied", dict(knobs))
    study.tell(t, [300.0, 0.05])
    return load_view(url, name)


@pytest.fixture()
def rich(tmp_path):
    return make_view(tmp_path, RICH_KNOBS)


def _body(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "json"])
def test_every_text_format_has_the_header(rich, fmt):
    text = render(rich, fmt, trial=0)
    head = text.splitlines()[:7]
    assert any("study 'rich', trial 0" in line for line in head)
    assert any(line.startswith("# chosen by: trial 0 (chosen by the user)") for line in head)
    assert any("throughput_rps=300, cost_usd_per_hour=0.05" in line for line in head)


def test_yaml_is_the_json_document(rich):
    doc = yaml.safe_load(render(rich, "yaml", trial=0))
    ref = json.loads(render(rich, "json", trial=0))
    doc.pop("exported_at"), ref.pop("exported_at")
    assert doc == ref and doc["format"] == "novatune.config/v1"


def test_sysctl_lists_what_it_cannot_carry(rich):
    text = render(rich, "sysctl", trial=0)
    assert "net.ipv4.tcp_rmem = 4096 131072 8388608" in _body(text)
    assert not any(line.startswith(("net.ipv4.tcp_wmem", "thp.", "sizing.")) for line in _body(text))
    (note,) = [line for line in text.splitlines() if line.startswith("# not expressible here:")]
    for item in ("net.ipv4.tcp_wmem=6291456 (max only", "thp.enabled=madvise", "sizing.vcpus=1.5",
                 "instance.type=m5.large", "irq.24.affinity=0"):
        assert item in note
    assert "see the JSON export" in note


def _tuned(text):
    cp = configparser.ConfigParser(delimiters=("=",), inline_comment_prefixes=("#",), strict=True)
    cp.optionxform = str
    cp.read_string(text)
    return {s: dict(cp[s]) for s in cp.sections()}


def test_tuned_profile_sections(rich):
    text = render(rich, "tuned", trial=0, include="throughput-performance")
    conf = _tuned(text)
    assert conf["main"] == {"summary": "novatune: study rich trial 0", "include": "throughput-performance"}
    assert conf["sysctl"]["vm.swappiness"] == "30" and conf["sysctl"]["kernel.numa_balancing"] == "0"
    assert conf["sysctl"]["net.ipv4.tcp_rmem"] == "4096 131072 8388608" and "net.ipv4.tcp_wmem" not in conf["sysctl"]
    assert conf["vm"] == {"transparent_hugepages": "madvise", "transparent_hugepage.defrag": "defer+madvise"}
    # two devices with different settings: one disk unit each
    assert conf["disk_vda"] == {"type": "disk", "devices": "vda", "elevator": "mq-deadline", "readahead": "256"}
    assert conf["disk_vdb"] == {"type": "disk", "devices": "vdb", "elevator": "none"}
    assert conf["sysfs"] == {"/sys/kernel/mm/ksm/run": "0", "/sys/block/vda/queue/nr_requests": "64"}
    assert conf["cpu"] == {"governor": "performance", "energy_performance_preference": "balance_performance"}
    assert conf["net"] == {"devices": "eth0", "features": "tso off gro on"}
    (note,) = [line for line in text.splitlines() if line.startswith("# not expressible here:")]
    assert "irq.default_affinity=0-1" in note and "sizing.memory_gib=2.5" in note and "systemd export" in note


def test_tuned_one_disk_unit_without_include(tmp_path):
    view = make_view(tmp_path, {"block.vda.scheduler": "none", "block.vdb.scheduler": "none", "vm.swappiness": 5})
    conf = _tuned(render(view, "tuned", trial=0))
    assert "include" not in conf["main"]
    assert conf["disk"] == {"devices": "vda,vdb", "elevator": "none"}


@pytest.mark.parametrize("bad", ["../etc", "/usr/lib/tuned/balanced", "a b", "", ".hidden", "x;y", "a,b"])
def test_tuned_include_must_be_a_profile_name(rich, bad):
    with pytest.raises(ExportError, match="not a plain TuneD profile name"):
        render(rich, "tuned", trial=0, include=bad)


def test_include_is_for_tuned_only(rich):
    with pytest.raises(ExportError, match="tuned format only"):
        render(rich, "sysctl", trial=0, include="balanced")


def test_systemd_drop_in(rich):
    text = render(rich, "systemd", trial=0)
    body = _body(text)
    assert body[0] == "[Service]"
    assert set(body[1:]) == {
        "CPUQuota=150%", "CPUWeight=200", f"MemoryMax={int(2.5 * 1024**3)}", "AllowedCPUs=0-1",
        "AllowedMemoryNodes=0", "CPUAffinity=0-1", "CPUSchedulingPolicy=batch", "Nice=-5",
        "IOSchedulingClass=best-effort", "IOSchedulingPriority=4",
    }
    (note,) = [line for line in text.splitlines() if line.startswith("# not expressible here:")]
    assert "vm.swappiness=30" in note and "thp.enabled=madvise" in note and "sysctl, tuned or shell export" in note
    assert "sizing." not in note and "sched." not in note


def test_systemd_spread_placement_is_not_guessed(tmp_path):
    view = make_view(tmp_path, {"affinity.cpus": 1, "affinity.placement": "spread", "sizing.vcpus": 0.05})
    text = render(view, "systemd", trial=0)
    assert "CPUQuota=5%" in _body(text) and not any(line.startswith("CPUAffinity") for line in _body(text))
    assert "affinity.cpus=1" in text and "affinity.placement=spread" in text


def test_shell_script_writes_and_notes(rich):
    text = render(rich, "shell", trial=0)
    assert text.startswith("#!/bin/bash\n") and "\nset -eu\n" in text
    assert "emit /proc/sys/vm/swappiness 30" in text
    assert "emit /proc/sys/net/ipv4/tcp_rmem '4096 131072 8388608'" in text
    assert "emit /sys/kernel/mm/transparent_hugepage/defrag defer+madvise" in text
    assert "emit /proc/irq/default_smp_affinity 3" in text  # the CPU list as the file's hex mask
    assert "emit /proc/irq/24/smp_affinity_list 0" in text
    assert "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor" in text
    # the block scheduler is written before the queue size it resets
    assert text.index("/sys/block/vda/queue/scheduler") < text.index("/sys/block/vda/queue/nr_requests")
    for word in ("apply)", "rollback)", "check)", "status)", "NOVATUNE_STATE_FILE", "sync"):
        assert word in text
    (note,) = [line for line in text.splitlines() if line.startswith("# not expressible here:")]
    assert "nic.eth0.tso=off" in note and "sched.nice=-5" in note


def test_write_export_file_names(rich, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for fmt in FORMATS:
        dest = out / "profile" if fmt == "tuned" else out / fmt
        dest.mkdir()
        (path,) = write_export(rich, fmt, dest, trial=0)
        assert path == dest / FILENAMES[fmt]
        assert path.read_text().strip()
    (script,) = write_export(rich, "shell", tmp_path / "x.sh", trial=0)
    assert script == tmp_path / "x.sh" and script.stat().st_mode & stat.S_IXUSR
    assert FILENAMES == {"json": "novatune.json", "yaml": "novatune.yaml", "sysctl": "90-novatune.conf",
                         "tuned": "tuned.conf", "systemd": "90-novatune.conf", "shell": "novatune-apply.sh"}
    (tuned,) = write_export(rich, "tuned", tmp_path / "new" / "novatune", trial=0, include="balanced")
    assert tuned == tmp_path / "new" / "novatune" / "tuned.conf" and "include=balanced" in tuned.read_text()
    with pytest.raises(ExportError, match="is a file"):
        write_export(rich, "tuned", script, trial=0)


def test_write_export_into_a_directory_that_does_not_exist_yet(rich, tmp_path):
    """`-o /etc/systemd/system/myapp.service.d/` (the README's example) makes the drop-in directory and
    writes 90-novatune.conf in it; a trailing / means a directory for every format."""
    (dropin,) = write_export(rich, "systemd", f"{tmp_path}/etc/systemd/system/myapp.service.d/", trial=0)
    assert dropin == tmp_path / "etc/systemd/system/myapp.service.d/90-novatune.conf"
    assert "[Service]" in dropin.read_text()
    (no_slash,) = write_export(rich, "systemd", tmp_path / "other.service.d", trial=0)
    assert no_slash == tmp_path / "other.service.d" / "90-novatune.conf"
    (sysctl,) = write_export(rich, "sysctl", f"{tmp_path}/sysctl.d/", trial=0)
    assert sysctl == tmp_path / "sysctl.d" / "90-novatune.conf"
    (plain,) = write_export(rich, "sysctl", tmp_path / "new-dir" / "mine.conf", trial=0)
    assert plain == tmp_path / "new-dir" / "mine.conf" and plain.is_file()
    (tmp_path / "taken.d").write_text("a file")
    with pytest.raises(ExportError, match="names a directory for the systemd export, but it is a file"):
        write_export(rich, "systemd", tmp_path / "taken.d", trial=0)


def test_deployed_sysctl_and_tuned_exports_read_back_into_the_same_knob_values(rich, tmp_path):
    """What `novatune verify` compares for an installed sysctl.d file or TuneD profile."""
    from experiments.deploy.config_file import load_config
    from experiments.deploy.deployed import read_deployed
    from experiments.deploy.export import write_export

    names = {k: k for k in rich.attrs["sysctl_keys"]}  # sysctl key -> knob name, as the catalog gives them
    knobs = rich.knob_values(rich.trial(0))
    (sysctl_file,) = write_export(rich, "sysctl", tmp_path / "90-novatune.conf")
    values, unchecked = read_deployed(sysctl_file, names)
    assert set(values) == set(names) - {"net.ipv4.tcp_wmem"} and not unchecked  # a max-only triplet: a comment
    assert values["net.ipv4.tcp_rmem"] == "4096 131072 8388608" and values["vm.swappiness"] == "30"

    write_export(rich, "tuned", tmp_path / "prof", include="throughput-performance")
    values, unchecked = read_deployed(tmp_path / "prof", names)
    assert values["thp.enabled"] == "madvise" and values["thp.defrag"] == "defer+madvise"
    assert values["cpufreq.epp"] == "balance_performance" and values["ksm.run"] == "0"
    assert {k for k in values if k.startswith("block.")} == {k for k in knobs if k.startswith("block.")}
    assert {k for k in values if k.startswith(SYSCTL_PREFIXES)} == set(names) - {"net.ipv4.tcp_wmem"}
    assert "the settings of the included profile 'throughput-performance'" in unchecked
    assert "[net]" in unchecked  # NIC features: not read back

    # through load_config, with the real catalog's names
    (tmp_path / "real.conf").write_text("vm.swappiness = 30\n-net.core.somaxconn = 1024\n")
    assert load_config(tmp_path / "real.conf").values == {"vm.swappiness": "30", "net.core.somaxconn": "1024"}


@pytest.mark.parametrize(("text", "message"), [
    ("vm.no_such_knob = 1\n", "no novatune knob for: sysctl vm.no_such_knob"),
    ("just words\n", "not a 'key = value' line"),
    ("# only comments\n", "sets no knob novatune knows"),
])
def test_a_deployed_file_novatune_cannot_read_is_a_config_error(tmp_path, text, message):
    from experiments.deploy.config_file import ConfigError, load_config

    f = tmp_path / "x.conf"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)
