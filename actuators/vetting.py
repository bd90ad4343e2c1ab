"""Every journal record is checked again before it is replayed: the one gate between a record and a write.

A journal record is only bytes in a file; ``recover`` replays the records of dead runs at every study
start, ``novatune rollback`` (``POST /tuning/rollback/{id}``) those of an application, a session its
own. All of them restore through :func:`actuators.restore.restore_intent`, which first calls
:func:`vet_intent`: the record is re-validated through the same knob tables and hard bounds as a
fresh apply, and anything else is :class:`Refused` (never written):

* the record's knob name must match a family's pattern (:data:`actuators.registry.REGISTRY`), its
  ``restore`` kind be one that family journals, and (a file's) root be the one restored under
  (else :class:`Skipped`: another root's record, left alone);
* **a file** (``file`` kind): the family resolves the name, here, to a knob whose journal target is
  exactly the record's target; the path is root-relative, without ``.``/``..``, under the restorable
  trees, through no symlink except the ones the kernel makes (``/sys/block/<dev>``, a CPU's
  ``cpufreq``, a co-mounted v1 hierarchy) and is not itself a link; a cgroup file must be in a
  novatune cgroup (:func:`actuators.ownership.novatune_cgroup`), except a ``rightsize.*`` file: one of that
  family's leaf files of a cgroup directory below a hierarchy's root that holds no process that is never a
  target (pid 1, kernel threads, novatune itself: :func:`actuators.rightsize.target_refusal`, the rule of
  :mod:`collectors.passive.allowed`); a namespace-bound target names a
  per-namespace ``net.*`` sysctl. The raw old bytes must be text a kernel file holds, parse as the
  knob's value and lie within its hard bounds / allowed values (two documented widenings: an IRQ
  mask may name CPUs that are possible but offline, and an empty cpuset, "the parent's", is allowed);
* **cpufreq** (``files``): every file is that knob's file of a CPU, every old word one of the
  driver's choices;
* **threads** (``affinity`` / ``process``): every entry names a thread by id and create time (the
  restorer changes only a thread whose create time still matches), never pid 1, a kernel thread or
  novatune itself, with a CPU list / a non-real-time policy, nice -20..19, I/O class none,
  best-effort or idle and level 0..7;
* **NIC** (``nic``): the target ``<netns>:<iface>:<leaf>`` is the knob's own, the old value within
  the leaf's domain.

When the knob's device, cgroup or namespace is gone (so is its setting), :class:`Vetted` says so
(``gone``) and nothing is written either.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from actuators.base import FileKnob, Knob
from actuators.cgroup import VcpusKnob, WorkloadCgroup
from actuators.cpu import CpufreqKnob
from actuators.errors import ActuatorError, OutOfBounds, UnknownKnob, UnsafePath
from actuators.family import Env, KnobContext, Match, fill
from actuators.irq import IrqAffinityKnob
from actuators.net import NetnsRoot, TcpMemKnob
from actuators.nic import NIC_LEAVES, Ethtool, NicKnob
from actuators.ownership import never_signal
from actuators.records import KnobIntent
from actuators.rightsize import target_refusal
from actuators.sizing import CpusetKnob
from actuators.sysroot import RESTORABLE_PREFIXES, SysRoot
from collectors.kernelfiles import parse_cpu_list, parse_cpu_mask

__all__ = ["Refused", "Skipped", "Vetted", "check_path", "check_root", "vet_intent"]


class Refused(ActuatorError):
    """A journal record names something novatune would not write (the message names the record and why);
    it is reported and skipped, never written (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class Skipped(Exception):
    """The record was made under another root: not restored here (reported as skipped)."""


@dataclass(frozen=True)
class Vetted:
    """A record that passed: its knob and family, and ``gone`` (why nothing is left to put back) or None."""

    knob: str
    family: str
    gone: str | None = None


def check_root(recorded: str | None, root: SysRoot) -> None:
    """Raises:
    Skipped: ``recorded`` (a record's root) names another root than ``root``.
    """
    if recorded and Path(recorded) != root.root:
        raise Skipped(f"recorded under root {recorded}, recovering {root.root}")


_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SELECTOR_WORD = re.compile(r"\[?[A-Za-z0-9_+.-]{1,32}\]?")
#: the words the kernel's selector files hold whatever their current state (the knob's choices are
#: read from the file, and a plain file left at one word offers only that one)
_KERNEL_WORDS: dict[str, tuple[str, ...]] = {
    "enabled": ("always", "madvise", "never"),  # thp.enabled
    "defrag": ("always", "defer", "defer+madvise", "madvise", "never"),  # thp.defrag
    "scheduler": ("none", "mq-deadline", "kyber", "bfq"),  # block.<dev>.scheduler
}
_MAX_RAW = 4096
#: symlinks the kernel itself puts on a knob's path: (link, where it must lead, under the root)
_KERNEL_LINKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sys/block/[^/]+"), "sys/devices/"),
    (re.compile(r"sys/devices/system/cpu/cpu[0-9]+/cpufreq"), "sys/devices/system/cpu/cpufreq/"),
    (re.compile(r"sys/fs/cgroup/[a-z_,]+"), "sys/fs/cgroup/"),
)


def _kernel_link(root: SysRoot, prefix: str) -> bool:
    """Whether the symlink ``prefix`` is one the kernel makes, leading where the kernel's do."""
    base = str(root.root)
    for pattern, leads_to in _KERNEL_LINKS:
        if pattern.fullmatch(prefix):
            real = os.path.realpath(os.path.join(base, prefix))
            want = os.path.join(base, leads_to)
            if not real.startswith(want):
                return False
            # a co-mounted v1 hierarchy is a directory directly under sys/fs/cgroup
            return leads_to != "sys/fs/cgroup/" or "/" not in real[len(want):]
    return False


def check_path(root: SysRoot, rel: Any) -> str:
    """``rel`` if it is a file path a journal record may name under ``root`` (see the module doc).

    Raises:
        Refused: not a root-relative path, ``.``/``..``/empty components, outside the restorable
            trees, resolving outside the root, or a symlink on the way that the kernel does not make.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith("/"):
        raise Refused(f"{rel!r} is not a root-relative path")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise Refused(f"{rel!r} has empty, '.' or '..' components")
    if not rel.startswith(RESTORABLE_PREFIXES):
        raise Refused(f"{rel!r} is outside the trees a knob lives in ({', '.join(RESTORABLE_PREFIXES)})")
    try:
        root.path(rel)
    except UnsafePath as err:
        raise Refused(str(err)) from None
    cur = str(root.root).rstrip("/")
    for i, part in enumerate(parts):
        cur = f"{cur}/{part}"
        try:
            mode = os.lstat(cur).st_mode
        except OSError:
            return rel  # nothing beyond a missing component to follow
        if not stat.S_ISLNK(mode):
            continue
        prefix = "/".join(parts[: i + 1])
        if i == len(parts) - 1:
            raise Refused(f"{rel!r} is a symlink: a knob's file is never reached through a link")
        if not _kernel_link(root, prefix):
            raise Refused(f"{prefix!r} (on the way to {rel!r}) is a symlink where the kernel makes none")
    return rel


# ------------------------------------------------------------------ values
def _text(old: Any) -> str:
    if not isinstance(old, str):
        raise Refused("no raw old content recorded")
    if len(old) > _MAX_RAW or any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in old):
        raise Refused(f"old content {old[:80]!r} is not text a kernel file holds")
    return old


def _possible_cpus(root: SysRoot, knob: IrqAffinityKnob) -> frozenset[int]:
    try:
        return frozenset(parse_cpu_list(root.read("sys/devices/system/cpu/possible"))) | knob.online
    except (ActuatorError, ValueError):
        return knob.online


def check_old_value(knob: Knob, old: Any) -> None:
    """The raw old content of a file knob, as journaled: parsed by the knob, within its hard bounds.

    Raises:
        Refused: not text, does not parse, or is outside the bounds / allowed values (what is allowed in the message).
    """
    raw = _text(old)
    words = raw.split()
    try:
        if isinstance(knob, VcpusKnob):
            knob.check_old(raw)
            return
        if not isinstance(knob, FileKnob):
            raise Refused(f"{knob.name} is not a file knob")
        try:
            value = knob.parse(raw)
        except (ValueError, IndexError, ActuatorError):
            raise Refused(f"old content {raw!r} is not a value of {knob.name}") from None
        if isinstance(knob, IrqAffinityKnob):
            cpus = parse_cpu_mask(raw) if knob.mask else parse_cpu_list(raw, strict=True)
            possible = _possible_cpus(knob.root, knob)
            if len(words) != 1 or not cpus or not set(cpus) <= possible:
                raise Refused(f"old content {raw!r} of {knob.name} is not a non-empty set of this machine's CPUs")
            return
        if isinstance(knob, CpusetKnob):
            if not words:
                return  # an empty cpuset: the parent's CPUs / nodes
            if len(words) != 1:
                raise Refused(f"old content {raw!r} of {knob.name} is not one CPU list")
        elif knob.domain.kind == "categorical":  # a selector: its choices, or the kernel's own words
            allowed = {*knob.domain.choices, *_KERNEL_WORDS.get(knob.name.rsplit(".", 1)[-1], ())}
            if not all(_SELECTOR_WORD.fullmatch(w) for w in words) or value not in allowed:
                raise Refused(f"old content {raw!r} of {knob.name}: {value!r} is not allowed; "
                              f"allowed: {sorted(allowed)}")
            return
        elif len(words) != (3 if isinstance(knob, TcpMemKnob) else 1):
            raise Refused(f"old content {raw!r} of {knob.name} is not one value")
        knob.normalise(value)
    except OutOfBounds as err:
        raise Refused(f"old content {raw!r} is refused: {err}") from None
    except ValueError:
        raise Refused(f"old content {raw!r} is not a value of {knob.name}") from None


# ------------------------------------------------------------------ kinds
def _gone_or_refused(m: Match, rel: str, root: SysRoot, err: UnknownKnob) -> str:
    exp = m.export
    expected = fill(exp.file, m.fields).lstrip("/") if exp is not None and exp.file and not exp.glob else None
    if expected == rel and not root.exists(rel):
        return f"{m.name} is gone here: {err}"
    raise Refused(f"{m.name} does not resolve here: {err}")


def _target_context(m: Match, root: SysRoot, rel: str) -> KnobContext | str:
    """A running target's cgroup (``rightsize.*``): the record's knob writes exactly ``rel``, a leaf file of a
    cgroup below a hierarchy's root, reached through no symlink, holding no process that is never a target;
    a str: the cgroup is gone."""
    try:
        context = m.family.context_of(root, rel)
        knob = m.family.resolve(m.name, Env(root, context or KnobContext()))
    except (UnsafePath, UnknownKnob) as err:
        raise Refused(str(err)) from None
    if context is None or knob.journal_target != rel:
        raise Refused(f"{m.name} writes {knob.journal_target!r}, the record names {rel!r}")
    d = rel.rpartition("/")[0]
    if not root.is_dir(d):
        return f"cgroup of {rel} is gone"
    why = target_refusal(root, d)
    if why is not None:
        raise Refused(f"{m.name} never writes {rel!r}: {why}")
    return context


def _context(m: Match, root: SysRoot, rel: str, ns: str | None) -> KnobContext | str:
    """The context the record's knob is bound in (its namespace, its novatune cgroup or a running target's
    cgroup); a str: gone."""
    if m.family.bound_by_target:
        return _target_context(m, root, rel)
    if m.family.workload:
        try:
            cg = WorkloadCgroup.of_file(root, rel)
        except UnsafePath as err:
            raise Refused(str(err)) from None
        return f"cgroup of {rel} is gone" if cg is None else KnobContext(cgroup=cg)
    return KnobContext(netns=ns)


def _file(intent: KnobIntent, m: Match, root: SysRoot) -> str | None:
    target = intent.target
    if not isinstance(target, str):
        raise Refused(f"target {target!r} is not a path")
    _text(intent.old)
    ns, rel = None, target
    if target.startswith("netns:"):
        _, ns, rel = (target.split(":", 2) + ["", ""])[:3]
        if m.family.name != "net" or not _NETNS.fullmatch(ns) or ns in (".", ".."):
            raise Refused(f"{target!r}: only net.* knobs are bound to a network namespace (a name "
                          f"{_NETNS.pattern})")
    check_path(root, rel)
    context = _context(m, root, rel, ns)
    if isinstance(context, str):
        return context
    try:
        knob = m.family.resolve(m.name, Env(root, context))
    except UnknownKnob as err:
        return _gone_or_refused(m, rel, root, err)
    if knob.journal_target != target:
        raise Refused(f"{m.name} writes {knob.journal_target!r}, the record names {target!r}")
    if ns is not None:
        if not getattr(knob, "per_netns", False):
            raise Refused(f"{m.name} is host-wide: never written inside a network namespace")
        if isinstance(knob, FileKnob) and isinstance(knob.root, NetnsRoot) and knob.root.nsfile is None:
            return f"network namespace {ns} is gone"
    check_old_value(knob, intent.old)
    return None


def _files(intent: KnobIntent, m: Match, root: SysRoot) -> str | None:
    old = intent.old
    if not isinstance(old, dict) or not old:
        raise Refused("no raw old contents recorded")
    if intent.target != "files:" + ",".join(old):
        raise Refused(f"target {intent.target!r} does not list the files whose old contents it records")
    try:
        knob = m.family.resolve(m.name, Env(root, KnobContext()))
    except UnknownKnob as err:
        raise Refused(f"{m.name} does not resolve here: {err}") from None
    if not isinstance(knob, CpufreqKnob):
        raise Refused(f"{m.name} is not a knob of several files")
    pattern = re.compile(r"sys/devices/system/cpu/cpu[0-9]+/cpufreq/" + re.escape(knob.leaf))
    for rel in old:
        if not pattern.fullmatch(rel):
            raise Refused(f"{rel!r} is not the {knob.leaf} file of a CPU")
        check_path(root, rel)
    if not any(root.exists(rel) for rel in old):
        return f"the {knob.leaf} files are gone"
    for rel, raw in old.items():
        words = _text(raw).split()
        if len(words) != 1 or words[0] not in knob.domain.choices:
            raise Refused(f"old content {raw!r} of {rel} is not one of {list(knob.domain.choices)}")
    return None


def _own_threads() -> set[int]:
    try:
        return {int(t) for t in os.listdir(f"/proc/{os.getpid()}/task")}
    except OSError:
        return {os.getpid()}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _threads(intent: KnobIntent, check: Callable[[dict[str, Any]], str | None]) -> None:
    """Each per-thread entry: a thread id novatune may re-tune, a create time, and a value ``check`` accepts."""
    entries = intent.old
    if not isinstance(intent.target, str) or not intent.target.startswith("pids:"):
        raise Refused(f"target {intent.target!r} is not 'pids:<pid>,...'")
    if not isinstance(entries, list):
        raise Refused("no per-thread entries recorded")
    mine = _own_threads()
    for e in entries:
        if not isinstance(e, dict) or not _int(e.get("tid")):
            raise Refused(f"entry {e!r} names no thread id")
        ctime = e.get("ctime")
        if ctime is not None and not (isinstance(ctime, (int, float)) and not isinstance(ctime, bool)):
            raise Refused(f"entry {e!r}: create time {ctime!r} is not a number")
        tid = int(e["tid"])
        why = never_signal(tid) or (f"thread {tid} is novatune's own" if tid in mine else None)
        if why is not None:
            raise Refused(f"entry {e!r}: {why}")
        bad = check(e)
        if bad is not None:
            raise Refused(f"entry {e!r}: {bad}")


def _affinity(intent: KnobIntent, m: Match, root: SysRoot) -> str | None:
    def cpus(e: dict[str, Any]) -> str | None:
        c = e.get("cpus")
        if not isinstance(c, list) or not c or not all(_int(x) and 0 <= x < 8192 for x in c):
            return "not a non-empty list of CPU numbers"
        return None

    _threads(intent, cpus)
    return None


_POLICIES = {os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE}
_IOCLASSES = {psutil.IOPRIO_CLASS_NONE, psutil.IOPRIO_CLASS_BE, psutil.IOPRIO_CLASS_IDLE}


def _process_raw(name: str, raw: Any) -> str | None:
    if name == "sched.policy":
        return None if _int(raw) and raw in _POLICIES else "a policy other than other, batch or idle"
    if name == "sched.nice":
        return None if _int(raw) and -20 <= raw <= 19 else "a nice value outside -20..19"
    ok = (isinstance(raw, list) and len(raw) == 2 and all(_int(x) for x in raw)
          and raw[0] in _IOCLASSES and 0 <= raw[1] <= 7)
    return None if ok else "an I/O priority other than none, best-effort or idle with a level 0..7"


def _process(intent: KnobIntent, m: Match, root: SysRoot) -> str | None:
    _threads(intent, lambda e: _process_raw(m.name, e.get("raw")))
    return None


def _nic(intent: KnobIntent, m: Match, root: SysRoot) -> str | None:
    target = intent.target
    parts = target.split(":") if isinstance(target, str) else []
    if len(parts) != 3:
        raise Refused(f"target {target!r} is not '<netns>:<iface>:<leaf>'")
    ns, iface, leaf = parts
    if f"nic.{iface}.{leaf}" != m.name or leaf not in NIC_LEAVES:
        raise Refused(f"target {target!r} is not the one of {m.name}")
    if ns and (not _NETNS.fullmatch(ns) or ns in (".", "..")):
        raise Refused(f"{ns!r} is not a network namespace name")
    domain = NicKnob(iface, leaf, ethtool=Ethtool(None)).domain
    try:
        domain.validate(m.name, intent.old)
    except OutOfBounds as err:
        raise Refused(f"old value refused: {err}") from None
    return None


#: restore kind -> its check (every kind a family journals has one; the registry checks restorers)
_VETTERS: dict[str, Callable[[KnobIntent, Match, SysRoot], str | None]] = {
    "file": _file, "files": _files, "affinity": _affinity, "process": _process, "nic": _nic,
}


def _label(intent: KnobIntent) -> str:
    target = repr(intent.target)
    target = target if len(target) <= 120 else target[:117] + "..."
    return f"journal record {intent.seq} (run {intent.run}, knob {intent.knob!r}, target {target})"


def vet_intent(intent: KnobIntent, root: SysRoot) -> Vetted:
    """Check a knob intent as a fresh apply would be checked, before anything of it is written under ``root``.

    Returns:
        what passed (``gone`` set when the knob's device, cgroup or namespace went away with its setting).
    Raises:
        Refused: the record names anything else (the message names the record, what is wrong and what is allowed).
        Skipped: recorded under another root.
        ActuatorError: it cannot be checked now (a listing or a read failed); nothing may be written.
    """
    from actuators.registry import REGISTRY

    name = intent.knob
    m = REGISTRY.match(name) if isinstance(name, str) and name else None
    if m is None:
        raise Refused(f"{_label(intent)}: no knob family names {name!r}; allowed: the names of "
                      "`novatune knobs list`")
    kinds = m.family.restore_kinds
    if intent.restore not in kinds or intent.restore not in _VETTERS:
        raise Refused(f"{_label(intent)}: {name} changes are put back as {', '.join(kinds) or 'nothing'}, "
                      f"not {intent.restore!r}")
    check_root(intent.root, root)
    try:
        gone = _VETTERS[intent.restore](intent, m, root)
    except Refused as err:
        raise Refused(f"{_label(intent)}: {err}") from None
    except (ActuatorError, OSError) as err:  # a listing or a read failed: judged later, nothing written now
        raise ActuatorError(f"{_label(intent)}: cannot be checked here (nothing written): {err}") from None
    except (ValueError, TypeError, KeyError, IndexError) as err:  # fields of another shape than the knob's
        raise Refused(f"{_label(intent)}: malformed: {err}") from None
    return Vetted(m.name, m.family.name, gone)
