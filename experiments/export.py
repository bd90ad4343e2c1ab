"""Export a chosen trial as a configuration operators deploy.

Formats (:data:`FORMATS`), each with its default file name (:data:`FILENAMES`):

``json`` / ``yaml``
    The whole decision, ``format: novatune.config/v1`` (what ``novatune plan``,
    ``verify`` and ``apply`` read). The only formats that carry every knob.
``sysctl``
    A sysctl.d file (``key = value``), for ``sysctl -p``.
``tuned``
    A TuneD profile directory holding ``tuned.conf`` (``[sysctl]``, ``[vm]``,
    ``[disk]``, ``[sysfs]``, ``[cpu]``, ``[net]``), optionally including a stock profile.
``systemd``
    A ``[Service]`` drop-in for the workload's unit, from the knobs bound to the
    workload (cgroup sizing, CPU affinity, scheduling and IO priority).
``shell``
    ``novatune-apply.sh apply|rollback|check|status``: writes the host settings
    after saving their current values to a synced state file; ``rollback`` restores them.

Every text format starts with a comment naming the study, the trial, how it was
chosen and its objectives; knobs a format cannot express are listed in a comment,
never dropped silently. Option names of the TuneD plugins are those of TuneD 2.20
(``tuned/plugins/plugin_*.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from optuna.trial import TrialState

from actuators.net import NET_TRIPLETS
from collectors.kernelfiles import format_cpu_mask, parse_cpu_list
from experiments.store import StudyView

__all__ = ["FILENAMES", "FORMATS", "ExportError", "ExportRequestError", "choose_trial", "read_deployed", "render",
           "systemd_options", "write_export"]

FORMATS = ("json", "yaml", "sysctl", "tuned", "systemd", "shell")
Format = Literal["json", "yaml", "sysctl", "tuned", "systemd", "shell"]

#: default file name per format; ``tuned`` names the file inside the profile directory
FILENAMES: dict[str, str] = {
    "json": "novatune.json",
    "yaml": "novatune.yaml",
    "sysctl": "90-novatune.conf",
    "tuned": "tuned.conf",
    "systemd": "90-novatune.conf",
    "shell": "novatune-apply.sh",
}

#: a stock TuneD profile name for ``include=`` (TuneD's own ``safe_name``, minus leading dots)
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: device / interface names that may appear in paths and section names
_DEV_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,32}")

_THP = {"thp.enabled": "enabled", "thp.defrag": "defrag"}
_THP_DIR = "/sys/kernel/mm/transparent_hugepage"
_KSM = {"ksm.run": "/sys/kernel/mm/ksm/run"}
_CPUFREQ = {"cpufreq.governor": "scaling_governor", "cpufreq.epp": "energy_performance_preference"}
_TUNED_CPU = {"cpufreq.governor": "governor", "cpufreq.epp": "energy_performance_preference"}
_BLOCK_FILES = {
    "scheduler": "queue/scheduler",  # first: changing the scheduler resets nr_requests
    "read_ahead_kb": "queue/read_ahead_kb",
    "nr_requests": "queue/nr_requests",
    "rq_affinity": "queue/rq_affinity",
    "nomerges": "queue/nomerges",
    "wbt_lat_usec": "queue/wbt_lat_usec",
}
#: nic leaf -> (TuneD [net] option, ethtool word)
_NIC = {
    "tso": ("features", "tso"), "gso": ("features", "gso"), "gro": ("features", "gro"),
    "rx_ring": ("ring", "rx"), "tx_ring": ("ring", "tx"), "rx_usecs": ("coalesce", "rx-usecs"),
}
#: knobs bound to the workload (cgroup / process scope): the systemd drop-in's domain
_WORKLOAD = ("sizing.vcpus", "sizing.cpu_weight", "sizing.memory_gib", "sizing.cpuset_cpus", "sizing.cpuset_mems",
             "affinity.cpus", "affinity.placement", "sched.policy", "sched.nice", "ioprio.class", "ioprio.level")
_INSTALL = {
    "yaml": "novatune plan novatune.yaml; novatune verify novatune.yaml",
    "sysctl": "install -m 0644 90-novatune.conf /etc/sysctl.d/ && sysctl -p /etc/sysctl.d/90-novatune.conf",
    "tuned": "cp -r PROFILE_DIR /etc/tuned/novatune && tuned-adm profile novatune && tuned-adm verify",
    "systemd": ("install -D -m 0644 90-novatune.conf /etc/systemd/system/UNIT.service.d/90-novatune.conf"
                " && systemctl daemon-reload && systemctl restart UNIT"),
    "shell": "bash novatune-apply.sh apply   (undo: bash novatune-apply.sh rollback)",
}


class ExportError(ValueError):
    """The requested export cannot be made (no feasible trial, bad trial number, ...)."""


class ExportRequestError(ExportError):
    """The request itself is invalid (unknown format, bad ``include``): HTTP 422, not a study state."""


def choose_trial(view: StudyView, trial: int | None = None) -> tuple[Any, str]:
    """The trial to export and how it was chosen: ``--trial N``, else the study's ``choose`` rule
    (the knee of the front by default) on pooled medians (:meth:`StudyView.decide`)."""
    if trial is not None:
        try:
            t = view.trial(trial)
        except LookupError as err:
            raise ExportError(str(err)) from None
        if t.state != TrialState.COMPLETE:
            raise ExportError(f"trial {trial} of {view.name!r} is {t.state.name.lower()}, not complete: nothing to export")
        if not view.is_feasible(t):
            raise ExportError(f"trial {trial} of {view.name!r} violates the study's constraints; choose a feasible trial")
        return t, f"trial {trial} (chosen by the user)"
    try:
        decision = view.decide()
    except ValueError as err:
        raise ExportError(f"study {view.name!r}: nothing to export: {err}") from None
    t = decision.trial
    how = decision.reason
    if decision.equivalent:
        how += f"; not significantly different from trial(s) {', '.join(map(str, decision.equivalent))}"
    return t, how


def _exported_at() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible exports: the same study gives the same bytes)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    return when.isoformat(timespec="seconds")


def _document(view: StudyView, t: Any, chosen_by: str) -> dict[str, Any]:
    return {
        "format": "novatune.config/v1",
        "study": view.name,
        "trial": t.number,
        "chosen_by": chosen_by,
        "knobs": view.knob_values(t),
        "objectives": dict(zip(view.objectives, t.values)),
        "metrics": t.user_attrs.get("metrics", {}),
        "exported_at": _exported_at(),
    }


# ------------------------------------------------------------------ helpers
def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _objective_text(doc: dict[str, Any]) -> str:
    parts = []
    for k, v in doc["objectives"].items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return ", ".join(parts) or "(none)"


def _header(fmt: str, doc: dict[str, Any]) -> list[str]:
    return [
        f"# novatune export ({fmt}) of study {doc['study']!r}, trial {doc['trial']}",
        f"# chosen by: {_one_line(doc['chosen_by'])}",
        f"# objectives: {_objective_text(doc)}",
        f"# exported at {doc['exported_at']}",
        f"# install: {_INSTALL[fmt]}",
    ]


def _value(value: Any) -> str:
    """A knob value as sysctl/sysfs text: sequences (tcp_rmem triplets) space-separated."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return " ".join(_value(v) for v in value)
    return _one_line(value)


def _sysctl_key(view: StudyView, name: str, value: Any) -> tuple[str | None, str]:
    """(sysctl key, why not) for ``name``: None when the knob is not a sysctl or not writable as one line."""
    key = view.attrs.get("sysctl_keys", {}).get(name)
    if not key:
        return None, ""
    if key in NET_TRIPLETS and not isinstance(value, (list, tuple)):
        return None, " (max only; min and default are the host's)"
    return key, ""


def _note(items: list[str], fmt: str) -> list[str]:
    """The comment listing the knobs this format cannot carry, with where to find each kind."""
    if not items:
        return []
    see = "the JSON export"
    if fmt != "systemd" and any(i.split("=", 1)[0] in _WORKLOAD for i in items):
        see += " (workload-bound knobs: the systemd export)"
    if fmt == "systemd":
        see += " (host-wide knobs: the sysctl, tuned or shell export)"
    elif fmt == "sysctl":
        see += " (other host settings: the tuned or shell export)"
    return [f"# not expressible here: {', '.join(items)}; see {see}"]


def _knob(name: str, value: Any) -> str:
    return f"{name}={_value(value)}"


def _split_dev(name: str, prefix: str) -> tuple[str, str] | None:
    """``block.vda.scheduler`` -> (``vda``, ``scheduler``); None for a malformed name."""
    dev, _, leaf = name[len(prefix):].rpartition(".")
    return (dev, leaf) if _DEV_NAME.fullmatch(dev) and dev not in (".", "..") else None


def _irq_number(name: str) -> str | None:
    n = name[len("irq."):-len(".affinity")] if name.endswith(".affinity") else ""
    return n if n.isdigit() else None


# ------------------------------------------------------------------ formats
def _render_sysctl(view: StudyView, doc: dict[str, Any]) -> str:
    lines = _header("sysctl", doc)
    others = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        if key:
            lines.append(f"{key} = {_value(value)}")
        else:
            others.append(_knob(name, value) + why)
    lines += _note(others, "sysctl")
    return "\n".join(lines) + "\n"


def _section(lines: list[str], name: str, options: list[tuple[str, str]], **extra: str) -> None:
    if not options:
        return
    lines += ["", f"[{name}]", *(f"{k}={v}" for k, v in extra.items()), *(f"{k}={v}" for k, v in options)]


def _render_tuned(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    sysctl: list[tuple[str, str]] = []
    vm: list[tuple[str, str]] = []
    cpu: list[tuple[str, str]] = []
    sysfs: list[tuple[str, str]] = []
    disks: dict[str, dict[str, str]] = {}
    nics: dict[str, dict[str, list[str]]] = {}
    others: list[str] = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        v = _value(value)
        if key:
            sysctl.append((key, v))
        elif name == "thp.enabled":
            vm.append(("transparent_hugepages", v))
        elif name == "thp.defrag":
            vm.append(("transparent_hugepage.defrag", v))
        elif name in _KSM:
            sysfs.append((_KSM[name], v))
        elif name in _TUNED_CPU:
            cpu.append((_TUNED_CPU[name], v))
        elif name.startswith("block.") and (dl := _split_dev(name, "block.")) and dl[1] in _BLOCK_FILES:
            dev, leaf = dl
            if leaf == "scheduler":
                disks.setdefault(dev, {})["elevator"] = v
            elif leaf == "read_ahead_kb":
                disks.setdefault(dev, {})["readahead"] = v  # TuneD: a plain number is KiB
            else:
                sysfs.append((f"/sys/block/{dev}/{_BLOCK_FILES[leaf]}", v))
        elif name.startswith("nic.") and (dl := _split_dev(name, "nic.")) and dl[1] in _NIC:
            iface, leaf = dl
            option, word = _NIC[leaf]
            nics.setdefault(iface, {}).setdefault(option, []).append(f"{word} {v}")
        else:
            # irq.*: TuneD 2.20's scheduler plugin applies default_irq_smp_affinity only together
            # with isolated_cores, and has no per-IRQ option; /proc/irq is outside [sysfs]
            others.append(_knob(name, value) + why)
    lines = _header("tuned", doc)
    lines += _note(others, "tuned")
    main = [("summary", _one_line(f"novatune: study {doc['study']} trial {doc['trial']}"))]
    if include:
        main.append(("include", include))
    _section(lines, "main", main)
    _section(lines, "sysctl", sysctl)
    _section(lines, "vm", vm)
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for dev, opts in disks.items():
        groups.setdefault(tuple(sorted(opts.items())), []).append(dev)
    for opts, devs in groups.items():
        if len(groups) == 1:
            _section(lines, "disk", [("devices", ",".join(devs)), *opts])
        else:
            _section(lines, f"disk_{devs[0]}", [("devices", ",".join(devs)), *opts], type="disk")
    _section(lines, "sysfs", sysfs)
    _section(lines, "cpu", cpu)
    for iface, options in nics.items():
        opts = [("devices", iface), *((k, " ".join(ws)) for k, ws in options.items())]
        if len(nics) == 1:
            _section(lines, "net", opts)
        else:
            _section(lines, f"net_{iface}", opts, type="net")
    return "\n".join(lines) + "\n"


def _percent(x: float) -> str:
    return f"{round(float(x) * 100, 2):g}%"


def systemd_options(knobs: dict[str, Any]) -> tuple[dict[str, str], list[str], list[str]]:
    """The ``[Service]`` option each workload-bound knob of ``knobs`` becomes (knob -> ``Option=value``),
    the notes explaining unit conversions, and the knobs a drop-in cannot express (``name=value (why)``)."""
    opts: dict[str, str] = {}
    notes: list[str] = []
    others: list[str] = []
    placement = knobs.get("affinity.placement", "compact")
    for name, value in knobs.items():
        if name == "sizing.vcpus":
            opts[name] = f"CPUQuota={_percent(value)}"
            notes.append(f"CPUQuota: sizing.vcpus={value} CPUs x 100%")
        elif name == "sizing.cpu_weight":
            opts[name] = f"CPUWeight={int(value)}"  # the cgroup v2 cpu.weight scale, 1-10000, 100 = default
        elif name == "sizing.memory_gib":
            opts[name] = f"MemoryMax={round(float(value) * 1024**3)}"
            notes.append(f"MemoryMax: sizing.memory_gib={value} GiB in bytes")
        elif name == "sizing.cpuset_cpus":
            opts[name] = f"AllowedCPUs={_value(value)}"
        elif name == "sizing.cpuset_mems":
            opts[name] = f"AllowedMemoryNodes={_value(value)}"
        elif name == "affinity.cpus":
            if placement == "compact":
                n = int(value)
                opts[name] = f"CPUAffinity={'0' if n == 1 else f'0-{n - 1}'}"
                notes.append(f"CPUAffinity: affinity.cpus={n} as the first {n} CPU(s) (compact placement)")
            else:
                others.append(_knob(name, value) + " (which CPUs depends on the target's topology)")
        elif name == "affinity.placement":
            if placement != "compact" or "affinity.cpus" not in knobs:
                others.append(_knob(name, value))
        elif name == "sched.policy":
            opts[name] = f"CPUSchedulingPolicy={_value(value)}"
        elif name == "sched.nice":
            opts[name] = f"Nice={int(value)}"
        elif name == "ioprio.class":
            opts[name] = f"IOSchedulingClass={_value(value)}"
        elif name == "ioprio.level":
            opts[name] = f"IOSchedulingPriority={int(value)}"
        else:
            others.append(_knob(name, value))
    return opts, notes, others


def _render_systemd(view: StudyView, doc: dict[str, Any]) -> str:
    opts, notes, others = systemd_options(doc["knobs"])
    lines = _header("systemd", doc)
    lines += [f"# {n}" for n in notes]
    lines += _note(others, "systemd")
    lines += ["", "[Service]", *opts.values()]
    if not opts:
        lines.append("# (no knob of this trial is bound to the workload's unit)")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Write:
    """One file the shell script writes: a path, or a glob over CPUs (cpufreq)."""

    name: str
    path: str
    value: str
    glob: bool = False


def _shell_writes(view: StudyView, doc: dict[str, Any]) -> tuple[list[_Write], list[str]]:
    writes: list[_Write] = []
    others: list[str] = []
    block: list[tuple[int, _Write]] = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        v = _value(value)
        if key:
            if any(not part or part in (".", "..") for part in key.split(".")) or "/" in key:
                others.append(_knob(name, value))
                continue
            writes.append(_Write(name, "/proc/sys/" + key.replace(".", "/"), v))
        elif name in _THP:
            writes.append(_Write(name, f"{_THP_DIR}/{_THP[name]}", v))
        elif name in _KSM:
            writes.append(_Write(name, _KSM[name], v))
        elif name in _CPUFREQ:
            writes.append(_Write(name, f"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/{_CPUFREQ[name]}", v, glob=True))
        elif name.startswith("block.") and (dl := _split_dev(name, "block.")) and dl[1] in _BLOCK_FILES:
            dev, leaf = dl
            block.append((list(_BLOCK_FILES).index(leaf), _Write(name, f"/sys/block/{dev}/{_BLOCK_FILES[leaf]}", v)))
        elif name == "irq.default_affinity":
            try:
                mask = format_cpu_mask(parse_cpu_list(str(value), strict=True))
            except ValueError:
                others.append(_knob(name, value))
                continue
            writes.append(_Write(name, "/proc/irq/default_smp_affinity", mask))
        elif name.startswith("irq.") and (n := _irq_number(name)):
            writes.append(_Write(name, f"/proc/irq/{n}/smp_affinity_list", v))
        else:
            others.append(_knob(name, value) + why)
    writes += [w for _, w in sorted(block, key=lambda p: p[0])]  # scheduler before the queue sizes it resets
    return writes, others


_SHELL_BODY = r"""
set -eu

STATE_FILE=${NOVATUNE_STATE_FILE:-/var/lib/novatune/novatune-apply.state}
TAB=$(printf '\t')

die() { echo "novatune-apply: $*" >&2; exit 1; }

PLAN=$(mktemp)
REV=$(mktemp)
trap 'rm -f "$PLAN" "$REV"' EXIT

# The current value of a kernel file: the [selected] word of a choice list, tabs as spaces.
current() {
  v=$(cat -- "$1") || return 1
  case $v in
    *'['*']'*) v=${v#*\[}; v=${v%%]*} ;;
  esac
  printf '%s' "$v" | tr '\t\n' '  ' | sed 's/ *$//'
}

put() { printf '%s\n' "$2" > "$1"; }

# Every setting as FILE<TAB>VALUE, in apply order.
settings() {
  emit() { printf '%s\t%s\n' "$1" "$2"; }
__SETTINGS__
}

do_apply() {
  [ ! -e "$STATE_FILE" ] || die "$STATE_FILE exists: an earlier apply was not rolled back (run: $0 rollback)"
  settings > "$PLAN"
  while IFS=$TAB read -r path _; do
    [ -e "$path" ] || die "$path does not exist on this host; nothing changed"
  done < "$PLAN"
  mkdir -p "$(dirname "$STATE_FILE")"
  tmp="$STATE_FILE.tmp"
  : > "$tmp"
  while IFS=$TAB read -r path _; do
    printf '%s\t%s\n' "$path" "$(current "$path")" >> "$tmp"
  done < "$PLAN"
  sync
  mv -f "$tmp" "$STATE_FILE"
  sync
  while IFS=$TAB read -r path value; do
    [ "$(current "$path")" = "$value" ] && continue
    if ! put "$path" "$value"; then
      echo "novatune-apply: cannot write $value to $path; rolling back" >&2
      do_rollback || true
      exit 1
    fi
  done < "$PLAN"
  echo "applied $(wc -l < "$STATE_FILE") setting(s); previous values saved in $STATE_FILE"
}

do_rollback() {
  if [ ! -e "$STATE_FILE" ]; then
    echo "nothing to roll back: $STATE_FILE does not exist"
    return 0
  fi
  tac "$STATE_FILE" > "$REV"
  # two passes: a later write can reset an earlier one (a block scheduler resets nr_requests)
  failed=0
  for pass in 1 2; do
    failed=0
    while IFS=$TAB read -r path value; do
      if [ "$(current "$path" 2>/dev/null || echo '<unreadable>')" != "$value" ]; then
        if ! put "$path" "$value" 2>/dev/null; then
          failed=1
          [ "$pass" = 1 ] || echo "novatune-apply: could not restore $path to $value" >&2
        fi
      fi
    done < "$REV"
    [ "$failed" = 1 ] || break
  done
  [ "$failed" = 0 ] || die "rollback incomplete; $STATE_FILE kept"
  rm -f "$STATE_FILE"
  sync
  echo "rolled back; removed $STATE_FILE"
}

do_check() {
  drift=0
  settings > "$PLAN"
  while IFS=$TAB read -r path value; do
    now=$(current "$path" 2>/dev/null || echo '<unreadable>')
    if [ "$now" != "$value" ]; then
      echo "differs: $path is $now, export says $value"
      drift=1
    fi
  done < "$PLAN"
  [ "$drift" = 0 ] && echo "every setting matches the export"
  return "$drift"
}

do_status() {
  if [ -e "$STATE_FILE" ]; then
    echo "applied; saved previous values ($STATE_FILE):"
    cat -- "$STATE_FILE"
  else
    echo "not applied (no $STATE_FILE)"
  fi
}

case "${1:-}" in
  apply) do_apply ;;
  rollback) do_rollback ;;
  check) do_check ;;
  status) do_status ;;
  *) echo "usage: $0 apply|rollback|check|status  (state file: \$NOVATUNE_STATE_FILE, default $STATE_FILE)" >&2; exit 2 ;;
esac
"""


def _render_shell(view: StudyView, doc: dict[str, Any]) -> str:
    writes, others = _shell_writes(view, doc)
    body = []
    for w in writes:
        q = shlex.quote(w.value)
        if w.glob:
            body += [
                "  found=0",
                f"  for f in {w.path}; do",
                f'    if [ -e "$f" ]; then emit "$f" {q}; found=1; fi',
                "  done",
                f'  [ "$found" = 1 ] || echo "novatune-apply: no CPU has {w.path.rsplit("/", 1)[1]}: {w.name} skipped" >&2',
            ]
        else:
            body.append(f"  emit {shlex.quote(w.path)} {q}  # {w.name}")
    if not writes:
        body.append("  :  # no host setting in this export")
    lines = ["#!/bin/bash", *_header("shell", doc)]
    lines += [
        "# apply: saves the current value of every file below to $NOVATUNE_STATE_FILE",
        "#   (default /var/lib/novatune/novatune-apply.state), syncs it, then writes the new values;",
        "#   refuses while a state file exists. rollback: restores the saved values, removes the state file.",
        "# check: exit 1 when a setting differs from the export. status: shows the saved state.",
    ]
    lines += _note(others, "shell")
    return "\n".join(lines) + _SHELL_BODY.replace("__SETTINGS__", "\n".join(body))


def _render_yaml(doc: dict[str, Any]) -> str:
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return "\n".join(_header("yaml", doc)) + "\n" + text


# ------------------------------------------------------------------ public
def _check_request(fmt: str, include: str | None) -> None:
    if fmt not in FORMATS:
        raise ExportRequestError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if include is None:
        return
    if fmt != "tuned":
        raise ExportRequestError(f"include= applies to the tuned format only, not {fmt!r}")
    if not isinstance(include, str) or not _PROFILE_NAME.fullmatch(include) or ".." in include:
        raise ExportRequestError(
            f"include {include!r} is not a plain TuneD profile name; allowed: letters, digits, '_', '.', '-' "
            "(e.g. throughput-performance), no path"
        )


def render(view: StudyView, fmt: str, *, trial: int | None = None, include: str | None = None) -> str:
    """The export text (for ``tuned``, the ``tuned.conf`` of the profile).

    ``include``: a stock TuneD profile the ``tuned`` profile builds on (``include=`` in ``[main]``).

    Raises:
        ExportError: unknown format, bad ``include``, unknown or unusable trial.
    """
    _check_request(fmt, include)
    t, chosen_by = choose_trial(view, trial)
    doc = _document(view, t, chosen_by)
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: json.dumps(doc, indent=2, sort_keys=False) + "\n",
        "yaml": lambda: _render_yaml(doc),
        "sysctl": lambda: _render_sysctl(view, doc),
        "tuned": lambda: _render_tuned(view, doc, include),
        "systemd": lambda: _render_systemd(view, doc),
        "shell": lambda: _render_shell(view, doc),
    }
    return renderers[fmt]()


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _is_directory(dest: str | Path, fmt: str) -> bool:
    """Whether ``dest`` names a directory to write :data:`FILENAMES` ``[fmt]`` into: an existing
    directory, a path written with a trailing ``/``, or (systemd) a drop-in directory ``UNIT.d``."""
    text = os.fspath(dest)
    path = Path(text)
    return path.is_dir() or text.endswith(os.sep) or (fmt == "systemd" and path.name.endswith(".d"))


def write_export(
    view: StudyView, fmt: str, dest: str | Path, *, trial: int | None = None, include: str | None = None
) -> list[Path]:
    """Write the export; returns the files written.

    ``tuned``: ``dest`` is the profile directory (created) that gets ``tuned.conf``. Other formats:
    ``dest`` is the file, or a directory in which :data:`FILENAMES` ``[fmt]`` is created: an existing
    one, a path ending in ``/``, or for ``systemd`` a drop-in directory (``myapp.service.d``), created
    when missing. The shell script is made executable.

    Raises:
        ExportError: as :func:`render`, or ``dest`` cannot be written.
    """
    text = render(view, fmt, trial=trial, include=include)
    into_dir = _is_directory(dest, fmt)
    dest = Path(dest)
    try:
        if fmt == "tuned":
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: a TuneD profile is a directory; {dest} is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / FILENAMES[fmt]
        elif into_dir:
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: names a directory for the {fmt} export, but it is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / FILENAMES[fmt]
        else:
            path = dest
            path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, text, 0o755 if fmt == "shell" else 0o644)
    except OSError as err:
        raise ExportError(f"cannot write the {fmt} export to {dest}: {err}") from None
    return [path]


# ----------------------------------------------------- reading them back
def read_deployed(path: Path, sysctl_names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The knob values a sysctl.d file or a TuneD profile (its directory or ``tuned.conf``) sets, as
    text, and what in it cannot be checked -- the inverse of the ``sysctl`` and ``tuned`` exports, so
    that ``novatune verify`` compares an installed file with the live state.

    ``sysctl_names`` maps sysctl keys to knob names (the catalog's). Raises :class:`ExportError` for a
    file that is neither, or a setting novatune has no knob for.
    """
    if path.is_dir():
        path = path / "tuned.conf"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: cannot read: {err}") from None
    values: dict[str, str] = {}
    unchecked: list[str] = []
    unknown: list[str] = []

    def sysctl(key: str, value: str) -> None:
        name = sysctl_names.get(key.strip().replace("/", "."))
        if name is None:
            unknown.append(f"sysctl {key.strip()}")
        else:
            values[name] = value.strip()

    if path.name != "tuned.conf":  # a sysctl.d file: key = value, '#'/';' comments, '-' ignores errors
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.lstrip("-").partition("=")
            if not sep:
                raise ExportError(f"{path}:{n}: not a 'key = value' line: {line!r}")
            sysctl(key, value)
    else:
        import configparser

        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as err:
            raise ExportError(f"{path}: not a TuneD profile: {err}") from None
        cpu = {v: k for k, v in _TUNED_CPU.items()}
        sysfs = {v: k for k, v in _KSM.items()}
        block = {v: k for k, v in _BLOCK_FILES.items()}
        for section in parser.sections():
            opts = dict(parser[section])
            kind = opts.pop("type", section.split("_", 1)[0] if section.startswith(("disk_", "net_")) else section)
            if kind == "main":
                if "include" in opts:
                    unchecked.append(f"the settings of the included profile {opts['include']!r}")
            elif kind == "sysctl":
                for key, value in opts.items():
                    sysctl(key, value)
            elif kind == "vm":
                for key, value in opts.items():
                    name = {"transparent_hugepages": "thp.enabled", "transparent_hugepage.defrag": "thp.defrag"}.get(key)
                    if name:
                        values[name] = value
                    else:
                        unchecked.append(f"[{section}] {key}")
            elif kind == "cpu":
                for key, value in opts.items():
                    if key in cpu:
                        values[cpu[key]] = value
                    else:
                        unchecked.append(f"[{section}] {key}")
            elif kind == "disk":
                devices = [d.strip() for d in opts.pop("devices", "").split(",") if d.strip()]
                for key, value in opts.items():
                    leaf = {"elevator": "scheduler", "readahead": "read_ahead_kb"}.get(key)
                    if leaf is None or not devices:
                        unchecked.append(f"[{section}] {key}")
                    for dev in devices if leaf else ():
                        values[f"block.{dev}.{leaf}"] = value
            elif kind == "sysfs":
                for key, value in opts.items():
                    m = re.fullmatch(r"/sys/block/([^/]+)/(queue/[a-z_]+)", key)
                    if key in sysfs:
                        values[sysfs[key]] = value
                    elif m and m.group(2) in block:
                        values[f"block.{m.group(1)}.{block[m.group(2)]}"] = value
                    else:
                        unknown.append(f"[{section}] {key}")
            else:  # [net] (ethtool settings) and plugins novatune does not tune
                unchecked.append(f"[{section}]")
    if unknown:
        raise ExportError(f"{path}: no novatune knob for: {', '.join(unknown)}")
    return values, unchecked
