"""Which running processes and cgroups a passive study may observe and tune: one rule, one place.

novatune runs as root, and a passive study's process knobs (``sched.*``, ``ioprio.*``,
``affinity.*``) act on every process of its target. :meth:`PassivePolicy.check_pids` and
:meth:`PassivePolicy.check_cgroup` hold the rule; :class:`~collectors.passive.target.PassiveWorkload`
asks them when a passive study is prepared, when it starts, and each time it lists the target's
processes (which is what every knob applied to the target acts on):

* **allowed**: a target is one the operator named in the setting ``allowed_targets`` -- strict by
  default: with the setting empty, nothing is a target. An entry is one of

  - ``unit:NAME.service`` (or ``.scope``): the processes of that systemd unit (its cgroup sits
    directly under system slices: ``/system.slice/NAME.service``; a user's own unit of the same
    name under ``user@UID.service`` is not it);
  - ``cgroup:/PATH``: that cgroup (path inside its hierarchy, as ``/proc/PID/cgroup`` shows it)
    and the cgroups below it;
  - ``exe:/PATH``: processes running that executable (``/proc/PID/exe``; symlinks in PATH are
    resolved). Named pids only: a cgroup target is allowed by ``unit:`` or ``cgroup:``.

* **never**, whatever the setting says (:func:`never_reason`): pid 1, kernel threads (``PF_KTHREAD``
  in ``/proc/PID/stat``, or a child of ``kthreadd``), novatune itself (this process and the processes
  that started it, and any ``novatune`` or ``python -m experiments...`` process: the service, its
  study workers), and the root cgroup or any cgroup that holds one of those.

A refusal is a :class:`TargetRefused` (exit 2, HTTP 422) naming the target, the rule and how to
allow one. Reads go through ``proc`` (``/proc`` by default; a fake tree in tests).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collectors.errors import WorkloadError

__all__ = [
    "ALLOW_HINT",
    "PF_KTHREAD",
    "NEVER",
    "PassivePolicy",
    "ProcInfo",
    "TargetRefused",
    "TargetRule",
    "is_novatune_cmdline",
    "never_reason",
    "never_target",
    "parse_rule",
    "parse_rules",
    "read_proc",
]

#: the kernel-thread bit of the flags field of /proc/PID/stat (include/linux/sched.h)
PF_KTHREAD = 0x00200000
NEVER = "pid 1, kernel threads, novatune itself and the root cgroup are never targets, whatever allowed_targets says"
ALLOW_HINT = (
    "a passive target must be named by the operator in the setting allowed_targets as unit:NAME.service, "
    "cgroup:/PATH or exe:/PATH (config.yaml `allowed_targets: [\"exe:/usr/sbin/nginx\"]`, or "
    "NOVATUNE_ALLOWED_TARGETS='[\"unit:nginx.service\"]')"
)
_UNIT = re.compile(r"[A-Za-z0-9:_.@\\-]{1,200}\.(service|scope)")
_MAX_ANCESTORS = 256  # bound on a walk up the process tree
_MAX_CGROUPS = 4096  # bound on the cgroups below a cgroup target that are checked


class TargetRefused(WorkloadError):
    """A passive target the rules refuse (not allowed by the operator, or never a target); exit 2, HTTP 422."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class TargetRule:
    """One entry of ``allowed_targets``: ``kind`` is ``unit``, ``cgroup`` or ``exe``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    def matches_cgroup(self, rel: str) -> bool:
        """Whether a cgroup (its path inside its hierarchy, ``/a/b``) is this rule's or below it."""
        if self.kind == "cgroup":
            return rel == self.value or rel.startswith(self.value + "/")
        if self.kind == "unit":
            for part in (p for p in rel.split("/") if p):
                if part == self.value:
                    return True
                if not part.endswith(".slice"):  # a unit sits under slices only (not under user@UID.service)
                    return False
        return False


def _clean_path(value: str) -> bool:
    """An absolute, normalised path other than ``/`` (no ``.``/``..``, no doubled or trailing slash, no NUL)."""
    return (value.startswith("/") and value != "/" and "\0" not in value
            and posixpath.normpath(value) == value and not value.startswith("//"))


def parse_rule(entry: object) -> TargetRule:
    """``unit:NAME.service`` / ``unit:NAME.scope``, ``cgroup:/PATH`` or ``exe:/PATH`` as a :class:`TargetRule`.

    Raises:
        ValueError: anything else (the message says what is allowed); ``cgroup:/`` (the root cgroup).
    """
    if isinstance(entry, str):
        kind, _, value = entry.partition(":")
        if kind == "unit" and _UNIT.fullmatch(value):
            return TargetRule(kind, value)
        if kind in ("cgroup", "exe") and _clean_path(value):
            return TargetRule(kind, value)
        if kind == "cgroup" and value == "/":
            raise ValueError("cgroup:/ is the root cgroup: it holds every process and is never a target")
    raise ValueError(
        f"{entry!r} is not an allowed-target entry; allowed: unit:NAME.service or unit:NAME.scope (a systemd "
        "unit), cgroup:/PATH (a cgroup, as /proc/PID/cgroup shows it, not /), exe:/PATH (an executable)"
    )


def parse_rules(entries: Iterable[object]) -> tuple[TargetRule, ...]:
    """Every entry parsed. Raises: ValueError naming the first bad entry."""
    return tuple(parse_rule(e) for e in entries)


# ------------------------------------------------------------------ reading /proc
@dataclass(frozen=True)
class ProcInfo:
    """What the rules read of one process."""

    pid: int
    ppid: int
    flags: int
    comm: str
    cmdline: tuple[str, ...]
    exe: str | None
    cgroups: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"pid {self.pid} ({self.comm})"


def read_proc(proc: Path, pid: int) -> ProcInfo | None:
    """The process ``pid`` as ``proc`` shows it; None when it is not running (exited, a zombie, never was)."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text(encoding="latin-1")
        raw_cmd = (base / "cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    rest = stat[stat.rfind(")") + 2:].split()
    try:
        state, ppid, flags = rest[0], int(rest[1]), int(rest[6])
    except (IndexError, ValueError):
        return None
    if state in ("Z", "X"):
        return None
    try:
        exe: str | None = os.readlink(base / "exe")
    except OSError:
        exe = None  # a kernel thread, a zombie, or not readable
    try:
        lines = (base / "cgroup").read_text(encoding="latin-1").splitlines()
    except OSError:
        lines = []
    cgroups = tuple(line.split(":", 2)[2] for line in lines if line.count(":") >= 2)
    cmdline = tuple(a.decode("utf-8", "surrogateescape") for a in raw_cmd.split(b"\0")[:64])
    return ProcInfo(pid, ppid, flags, comm, cmdline[:-1] if cmdline and not cmdline[-1] else cmdline, exe, cgroups)


def is_novatune_cmdline(argv: Sequence[str]) -> bool:
    """Whether a command line runs novatune: the ``novatune`` program, or ``python ... -m experiments[.X]``."""
    for i, arg in enumerate(argv[:8]):
        if posixpath.basename(arg) == "novatune":
            return True
        module = argv[i + 1] if arg == "-m" and i + 1 < len(argv) else arg[2:] if arg.startswith("-m") else None
        if module is not None:
            return module == "experiments" or module.startswith("experiments.")
    return False


def never_reason(info: ProcInfo, own: frozenset[int]) -> str | None:
    """Why this process is never a target (``own``: novatune's own pid and its ancestors); None if it may be."""
    if info.pid == 1:
        return f"{info.label} is init: every process descends from it"
    if info.flags & PF_KTHREAD or info.pid == 2 or info.ppid == 2:
        return f"{info.label} is a kernel thread"
    if info.pid in own:
        return f"{info.label} is novatune itself or a process that started it"
    if is_novatune_cmdline(info.cmdline):
        return f"{info.label} is a novatune process ({' '.join(info.cmdline[:4])})"
    return None


def never_target(pids: Iterable[int], *, proc: Path = Path("/proc"), self_pid: int | None = None) -> str | None:
    """Why one of ``pids`` is never a target of a process knob (the first found), or None.

    The "never" half of the rule for callers that have no policy (``actuators``' process knobs, whatever
    bound them); pids that are not running are skipped.
    """
    policy = PassivePolicy(proc=proc, self_pid=self_pid)
    own: frozenset[int] | None = None
    for pid in pids:
        info = read_proc(proc, pid)
        if info is None:
            continue
        own = own if own is not None else policy.own()
        reason = never_reason(info, own)
        if reason is not None:
            return reason
    return None


def _unescape(field_: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


# ------------------------------------------------------------------ the policy
@dataclass(frozen=True)
class PassivePolicy:
    """What a passive study may reach: ``targets`` (the operator's ``allowed_targets``) and ``probe_hosts``
    (``allowed_probe_hosts``: hosts besides loopback that a probe or scrape URL may name).

    The default is the strict one: no target allowed, probes and scrapes to loopback only.
    ``proc`` and ``self_pid`` are for tests (a fake ``/proc``; novatune's pid, default: this process's,
    read at each check).
    """

    targets: tuple[TargetRule, ...] = ()
    probe_hosts: tuple[str, ...] = ()
    proc: Path = Path("/proc")
    self_pid: int | None = None

    @classmethod
    def of(cls, allowed_targets: Iterable[str] = (), allowed_probe_hosts: Iterable[str] = ()) -> PassivePolicy:
        """The policy of the settings' lists. Raises: ValueError: a bad ``allowed_targets`` entry."""
        return cls(parse_rules(allowed_targets), tuple(h.lower() for h in allowed_probe_hosts))

    # -------------------------------------------------------------- pieces
    def own(self) -> frozenset[int]:
        """novatune's own pid and every ancestor of it (the processes that started it)."""
        pid = self.self_pid if self.self_pid is not None else os.getpid()
        out = {pid}
        for _ in range(_MAX_ANCESTORS):
            info = read_proc(self.proc, pid)
            if info is None or info.ppid <= 0 or info.ppid in out:
                break
            pid = info.ppid
            out.add(pid)
        return frozenset(out)

    def _allowed_now(self) -> str:
        return ", ".join(str(r) for r in self.targets) or "none"

    def _refuse(self, target: str, reason: str, *, never: bool) -> TargetRefused:
        if never:
            return TargetRefused(f"passive target {target} refused: {reason}; {NEVER}")
        return TargetRefused(f"passive target {target} refused: {reason}; {ALLOW_HINT} (allowed now: "
                             f"{self._allowed_now()}); {NEVER}")

    def _process_rule(self, info: ProcInfo) -> TargetRule | None:
        for rule in self.targets:
            if rule.kind == "exe" and info.exe is not None and info.exe == self._real(rule.value):
                return rule
            if rule.kind != "exe" and any(rule.matches_cgroup(cg) for cg in info.cgroups):
                return rule
        return None

    def _real(self, path: str) -> str:
        return os.path.realpath(path) if self.proc == Path("/proc") else path

    def cgroup_rel(self, path: Path) -> str | None:
        """``path``'s cgroup inside its hierarchy (``/`` for a hierarchy's root), from the cgroup mounts of
        ``<proc>/self/mountinfo``; None when ``path`` is under no cgroup mount."""
        real = os.path.realpath(path)
        try:
            lines = (self.proc / "self" / "mountinfo").read_text(encoding="latin-1").splitlines()
        except OSError:
            return None
        best: tuple[str, str] | None = None
        for line in lines:
            left, sep, right = line.partition(" - ")
            fields = left.split()
            if not sep or len(fields) < 5 or right.split()[:1] not in (["cgroup"], ["cgroup2"]):
                continue
            root, mount = _unescape(fields[3]), _unescape(fields[4])
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and (best is None or len(mount) > len(best[1])):
                best = (root, mount)
        if best is None:
            return None
        parts = [p for p in f"{best[0]}/{real[len(best[1]):]}".split("/") if p]
        return "/" + "/".join(parts)

    def _cgroup_members(self, real: str) -> list[int] | None:
        """Every pid in the cgroup and the cgroups below it; None when there are more than can be checked."""
        pids: set[int] = set()
        for n, (dirpath, dirnames, _) in enumerate(os.walk(real)):
            if n >= _MAX_CGROUPS:
                return None
            dirnames[:] = sorted(dirnames)
            try:
                text = (Path(dirpath) / "cgroup.procs").read_text(encoding="ascii")
            except OSError:
                continue
            pids.update(int(x) for x in text.split() if x.isdigit())
        return sorted(pids)

    # -------------------------------------------------------------- the rule
    def check_pids(self, roots: Sequence[int], members: Sequence[int] = ()) -> None:
        """Refuse named pids ``roots`` unless each is allowed, and refuse if any of them or of ``members``
        (their descendants, what knobs act on) is never a target. Pids that are not running are skipped:
        the caller reports those.

        Raises:
            TargetRefused: naming the pid, the rule and how to allow a target.
        """
        own = self.own()
        for pid in dict.fromkeys([*roots, *members]):
            info = read_proc(self.proc, pid)
            if info is None:
                continue
            reason = never_reason(info, own)
            what = f"pids {list(roots)}"
            if reason is not None:
                sub = "" if pid in roots else " (a descendant of the named pids)"
                raise self._refuse(what, reason + sub, never=True)
            if pid in roots and self._process_rule(info) is None:
                where = ", ".join(dict.fromkeys(info.cgroups)) or "unknown"
                raise self._refuse(what, f"{info.label}, executable {info.exe or 'unknown'}, cgroup {where}, "
                                         "is not an allowed target", never=False)

    def check_cgroup(self, path: Path) -> None:
        """Refuse the cgroup directory ``path`` unless it is allowed, is not a hierarchy's root and holds
        (itself or below) no process that is never a target.

        Raises:
            TargetRefused: naming the cgroup, the rule and how to allow a target.
        """
        what = f"cgroup {path}"
        rel = self.cgroup_rel(path)
        if rel is None:
            raise self._refuse(what, "it is not under a cgroup mount", never=False)
        if rel == "/":
            raise self._refuse(what, "it is the root cgroup, which holds every process", never=True)
        members = self._cgroup_members(os.path.realpath(path))
        if members is None:
            raise self._refuse(what, f"it has more than {_MAX_CGROUPS} cgroups below it to check", never=True)
        own = self.own()
        for pid in members:
            info = read_proc(self.proc, pid)
            reason = never_reason(info, own) if info is not None else None
            if reason is not None:
                raise self._refuse(what, f"it holds a process that is never a target ({reason})", never=True)
        if not any(rule.matches_cgroup(rel) for rule in self.targets if rule.kind != "exe"):
            raise self._refuse(f"{what} ({rel})", "it is not an allowed target", never=False)
