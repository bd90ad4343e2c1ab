"""``net.*`` sysctls (TuneD's plugin_net / plugin_sysctl), per network namespace.

Most of these sysctls belong to a network namespace: the value a process sees
under ``/proc/sys/net`` is its own namespace's. With ``KnobContext(netns=NAME)``
the knobs act inside the namespace ``NAME`` made by ``ip netns add`` (the name
must be an entry of ``<root>/run/netns``): every read and write then happens in
a short-lived child process that ``setns()``es into ``/run/netns/NAME`` and
opens the file there (``os.setns`` needs Python 3.12, so the child calls libc
through ctypes). Nothing is pasted into a shell; the value is validated before
it reaches the child. A few sysctls are host-wide (``netdev_max_backlog``,
``busy_poll``, ``busy_read``): their scope is ``"host"`` and, bound to a
namespace, they are unavailable rather than silently changing the host.

A token taken in a namespace has the target ``netns:NAME:<rel>``, which
:func:`actuators.recover` refuses (it never restores such an entry on the
host's own file).

``net.ipv4.tcp_rmem`` / ``tcp_wmem`` are triplets ``min default max``: the
value is a 3-tuple/list or the string ``"4096 131072 6291456"``, each element
within its own hard bounds and ``min <= default <= max``. A single integer (what
a study's integer range gives) sets ``max``, keeping ``min``/``default``
(lowered to ``max`` where they exceed it); an export cannot write such a value
as the file's one line (the family's ``whole_value``). :data:`FAMILY` declares
the ``net`` family.
"""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from actuators.base import Domain, FileKnob, Knob, Risk, Scope, SelectorKnob, Token
from actuators.errors import ActuatorError, OutOfBounds
from actuators.family import Env, Family
from actuators.sysctl import SysctlKnob, sysctl_export
from actuators.sysroot import SysRoot

__all__ = [
    "FAMILY",
    "NET",
    "NET_NAMES",
    "NET_TRIPLETS",
    "CongestionControlKnob",
    "NetFamily",
    "NetIntKnob",
    "NetnsRoot",
    "TcpMemKnob",
    "net_knob",
    "netns_root",
]

_CLONE_NEWNET = 0x40000000
_TIMEOUT_S = 10.0

#: run by ``python -I -c`` with argv ``nsfile op path``; data for ``write`` on stdin
_CHILD = r"""
import ctypes, os, sys
ns, op, path = sys.argv[1], sys.argv[2], sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
try:
    nsfd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
except OSError as e:
    sys.stderr.write("cannot open %s: %s" % (ns, e.strerror)); sys.exit(3)
if libc.setns(nsfd, CLONE_NEWNET) != 0:
    sys.stderr.write("setns(%s): %s" % (ns, os.strerror(ctypes.get_errno()))); sys.exit(3)
os.close(nsfd)
try:
    if op == "exists":
        sys.exit(0 if os.path.isfile(path) else 1)
    if op == "writable":
        sys.exit(0 if os.access(path, os.W_OK) else 1)
    if op == "read":
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
        sys.exit(0)
    if op == "write":
        data = sys.stdin.buffer.read()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
        sys.exit(0 if n == len(data) else 4)
except OSError as e:
    sys.stderr.write(e.strerror or str(e)); sys.exit(2)
sys.exit(5)
""".replace("CLONE_NEWNET", str(_CLONE_NEWNET))


class NetnsRoot(SysRoot):
    """A :class:`SysRoot` whose file I/O happens inside a named network namespace.

    Paths are still checked by :meth:`SysRoot.path`; ``nsfile`` None means the
    namespace does not exist (every operation then fails, nothing touches the host).
    """

    def __init__(self, base: SysRoot, name: str, nsfile: Path | None) -> None:
        super().__init__(base.root)
        self.netns = name
        self.nsfile = nsfile

    def __repr__(self) -> str:
        return f"NetnsRoot({str(self.root)!r}, netns={self.netns!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetnsRoot) and (other.root, other.netns) == (self.root, self.netns)

    def __hash__(self) -> int:
        return hash((self.root, self.netns))

    @property
    def is_host(self) -> bool:
        return False

    def _run(self, op: str, rel: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        path = self.path(rel)
        if self.nsfile is None:
            raise ActuatorError(f"no network namespace {self.netns!r} (ip netns list)")
        try:
            return subprocess.run(
                [sys.executable, "-I", "-c", _CHILD, str(self.nsfile), op, str(path)],
                input=data, capture_output=True, timeout=_TIMEOUT_S, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ActuatorError(f"{op} {path} in netns {self.netns}: {err}") from err

    def exists(self, rel: str) -> bool:
        return self.nsfile is not None and self._run("exists", rel).returncode == 0

    def writable(self, rel: str) -> bool:
        return self.nsfile is not None and self._run("writable", rel).returncode == 0

    def listdir(self, rel: str, *, strict: bool = False) -> list[str]:
        raise ActuatorError("listing directories inside a network namespace is not supported")

    def is_dir(self, rel: str) -> bool:
        raise ActuatorError("directories inside a network namespace are not supported")

    def readlink(self, rel: str) -> str:
        raise ActuatorError("links inside a network namespace are not supported")

    def read_bytes(self, rel: str) -> bytes:
        """The file as read inside the namespace.

        Raises:
            OSError: the child could not read it (its message as ``strerror``).
            ActuatorError: no such namespace, or the child could not run.
        """
        res = self._run("read", rel)
        if res.returncode != 0:
            raise OSError(errno.EIO, res.stderr.decode(errors="replace"))
        return res.stdout

    def read(self, rel: str) -> str:
        res = self._run("read", rel)
        if res.returncode != 0:
            why = res.stderr.decode(errors="replace")
            raise ActuatorError(f"cannot read {self.path(rel)} in netns {self.netns}: {why}")
        return res.stdout.decode("latin-1")

    def write(self, rel: str, data: str) -> None:
        res = self._run("write", rel, data.encode("latin-1"))
        if res.returncode != 0:
            why = res.stderr.decode(errors="replace")
            raise ActuatorError(f"writing {data!r} to {self.path(rel)} in netns {self.netns} failed: {why}")

    def rmdir(self, rel: str, *, busy_timeout_s: float = 5.0) -> None:
        raise ActuatorError("not supported inside a network namespace")


def netns_root(root: SysRoot, name: str) -> NetnsRoot:
    """``root`` bound to the namespace ``name``, matched against ``<root>/run/netns`` (never pasted)."""
    listed = {n: n for n in root.listdir("run/netns")}
    nsfile = root.path(f"run/netns/{listed[name]}") if name in listed else None
    return NetnsRoot(root, name, nsfile)


@dataclass(frozen=True)
class _Spec:
    rel: str
    low: int
    high: int
    per_netns: bool
    risk: Risk
    unit: str
    description: str


_MIB = 1 << 20

#: integer sysctls: name -> fixed relative file, hard bounds, whether per namespace
NET: dict[str, _Spec] = {
    "net.core.somaxconn": _Spec(
        "proc/sys/net/core/somaxconn", 128, 65535, True, "low", "", "Longest accept() backlog a listen() may ask for."
    ),
    "net.core.netdev_max_backlog": _Spec(
        "proc/sys/net/core/netdev_max_backlog", 300, 100_000, False, "low", "",
        "Packets queued per CPU when the interface receives faster than the kernel processes (host-wide).",
    ),
    "net.core.rmem_max": _Spec(
        "proc/sys/net/core/rmem_max", 65536, 256 * _MIB, True, "low", "B", "Largest receive buffer SO_RCVBUF may set."
    ),
    "net.core.wmem_max": _Spec(
        "proc/sys/net/core/wmem_max", 65536, 256 * _MIB, True, "low", "B", "Largest send buffer SO_SNDBUF may set."
    ),
    "net.core.busy_poll": _Spec(
        "proc/sys/net/core/busy_poll", 0, 200, False, "medium", "us",
        "Busy-poll time for poll/select in microseconds, 0 off (host-wide; burns CPU for latency).",
    ),
    "net.core.busy_read": _Spec(
        "proc/sys/net/core/busy_read", 0, 200, False, "medium", "us",
        "Busy-poll time for socket reads in microseconds, 0 off (host-wide; burns CPU for latency).",
    ),
    "net.ipv4.tcp_slow_start_after_idle": _Spec(
        "proc/sys/net/ipv4/tcp_slow_start_after_idle", 0, 1, True, "low", "",
        "1: an idle connection restarts from slow start; 0 keeps its window.",
    ),
    "net.ipv4.tcp_notsent_lowat": _Spec(
        "proc/sys/net/ipv4/tcp_notsent_lowat", 16384, 4294967295, True, "low", "B",
        "Unsent bytes a socket may queue before poll() stops reporting writable (4294967295 = unlimited).",
    ),
    "net.ipv4.tcp_autocorking": _Spec(
        "proc/sys/net/ipv4/tcp_autocorking", 0, 1, True, "low", "",
        "1: coalesce small writes while packets are in flight."
    ),
    "net.ipv4.tcp_fastopen": _Spec(
        "proc/sys/net/ipv4/tcp_fastopen", 0, 3, True, "low", "",
        "TCP Fast Open: bit 1 client, bit 2 server (0-3; the cookie-less modes are refused).",
    ),
}

#: triplet sysctls: name -> file and (low, high) for min, default, max
NET_TRIPLETS: dict[str, tuple[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]], str]] = {
    "net.ipv4.tcp_rmem": (
        "proc/sys/net/ipv4/tcp_rmem",
        ((4096, _MIB), (4096, 64 * _MIB), (4096, 256 * _MIB)),
        "TCP receive buffer per socket: min default max in bytes (min <= default <= max).",
    ),
    "net.ipv4.tcp_wmem": (
        "proc/sys/net/ipv4/tcp_wmem",
        ((4096, _MIB), (4096, 64 * _MIB), (4096, 256 * _MIB)),
        "TCP send buffer per socket: min default max in bytes (min <= default <= max).",
    ),
}

_CC = "net.ipv4.tcp_congestion_control"
_CC_REL = "proc/sys/net/ipv4/tcp_congestion_control"
_CC_ALLOWED = "proc/sys/net/ipv4/tcp_allowed_congestion_control"
_CC_WORD = re.compile(r"[a-z0-9_-]{1,15}")


class _NetnsBound(FileKnob):
    """File I/O through the knob's root (a :class:`NetnsRoot` when bound); targets say so."""

    per_netns: bool = True

    @property
    def netns(self) -> str | None:
        return self.root.netns if isinstance(self.root, NetnsRoot) else None

    @property
    def journal_target(self) -> str | None:
        return self.target

    @property
    def target(self) -> str:
        """What a token records: the file, prefixed with the namespace when bound."""
        return self.rel if self.netns is None else f"netns:{self.netns}:{self.rel}"

    def available(self) -> str | None:
        ns = self.netns
        if ns is None:
            return super().available()
        assert isinstance(self.root, NetnsRoot)
        if not self.per_netns:
            return f"host-wide sysctl, not per network namespace (bound to netns {ns})"
        if self.root.nsfile is None:
            return f"no network namespace {ns!r} (ip netns list)"
        if not self.root.exists(self.rel):
            return f"{self.path} does not exist in netns {ns}"
        if not self.root.writable(self.rel):
            return f"{self.path} is not writable in netns {ns} (needs root)"
        return None

    def prepare(self, value: Any) -> Token:
        new = self.validate(value)
        self.check_available()
        raw = self.root.read(self.rel)
        return Token(knob=self.name, scope=self.scope, target=self.target, old=raw, new=self.format(new), value=new)

    def _check(self, token: Token) -> None:
        if token.target != self.target:
            raise ActuatorError(f"{self.name}: token for {token.target!r}, this knob writes {self.target!r}")

    def commit(self, token: Token) -> None:
        self._check(token)
        self.root.write(self.rel, token.new)

    def restore(self, token: Token) -> None:
        self._check(token)
        self.root.restore(self.rel, token.old)


class NetIntKnob(_NetnsBound, SysctlKnob):
    """An integer ``net.*`` sysctl."""

    def __init__(self, *, per_netns: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.per_netns = per_netns


class CongestionControlKnob(_NetnsBound, SelectorKnob):
    """``net.ipv4.tcp_congestion_control``: choices are the allowed list plus the current one."""


class TcpMemKnob(_NetnsBound):
    """``tcp_rmem`` / ``tcp_wmem``: an ordered triplet ``(min, default, max)``."""

    def __init__(self, *, elements: tuple[tuple[int, int], ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.elements = elements

    def parse(self, raw: str) -> tuple[int, int, int]:
        parts = [int(p) for p in raw.split()]
        if len(parts) != 3:
            raise ValueError(raw)
        return (parts[0], parts[1], parts[2])

    def format(self, value: Any) -> str:
        return "\t".join(str(v) for v in value)

    def _allowed(self) -> str:
        (a, b), (c, d), (e, f) = self.elements
        return (f"allowed: 'min default max' with min in [{a}, {b}], default in [{c}, {d}], max in [{e}, {f}], "
                "min <= default <= max")

    def normalise(self, value: Any) -> tuple[int, int, int]:
        if isinstance(value, str) and len(value.split()) == 3:
            parts: list[Any] = value.split()
        elif isinstance(value, (tuple, list)):
            parts = list(value)
        else:
            # one number: the max, keeping min/default (lowered to it where needed)
            top = self.domain.validate(self.name, value)
            cur_min, cur_def, _ = self.read()
            top = int(top)
            default = min(cur_def, top)
            return (min(cur_min, default, self.elements[0][1]), default, top)
        if len(parts) != 3:
            raise OutOfBounds(f"{self.name}: {value!r} is not a triplet; {self._allowed()}")
        nums: list[int] = []
        for p in parts:
            if isinstance(p, bool) or not isinstance(p, (Integral, str)):
                raise OutOfBounds(f"{self.name}: {value!r} holds a non-integer; {self._allowed()}")
            try:
                nums.append(int(p))
            except ValueError:
                raise OutOfBounds(f"{self.name}: {value!r} holds a non-integer; {self._allowed()}") from None
        for n, (lo, hi) in zip(nums, self.elements):
            if not lo <= n <= hi:
                raise OutOfBounds(f"{self.name}: {value!r} is outside the hard bounds; {self._allowed()}")
        if not nums[0] <= nums[1] <= nums[2]:
            raise OutOfBounds(f"{self.name}: {value!r} is not ordered; {self._allowed()}")
        return (nums[0], nums[1], nums[2])

    def same(self, a: Any, b: Any) -> bool:
        """One value: two triplets element by element; a single number (a study searches a triplet by its
        max) against anything by the max alone."""
        if a is None or b is None:
            return False
        a, b = (v.split() if isinstance(v, str) else v for v in (a, b))
        if isinstance(a, Real) or isinstance(b, Real):
            return _top(a) == _top(b)
        return tuple(map(int, a)) == tuple(map(int, b))


def _top(value: Any) -> int:
    """The max of a triplet, or the number itself."""
    return int(value) if isinstance(value, Real) else int(list(value)[-1])  # type: ignore[call-overload]


def _cc_choices(root: SysRoot) -> tuple[str, ...]:
    words: list[str] = []
    for rel in (_CC_ALLOWED, _CC_REL):
        try:
            words.extend(root.read(rel).split())
        except ActuatorError:
            continue
    return tuple(dict.fromkeys(w for w in words if _CC_WORD.fullmatch(w)))


def net_knob(name: str, root: SysRoot) -> FileKnob:
    """The knob for a ``net.*`` name (KeyError otherwise); ``root`` may be a :class:`NetnsRoot`."""
    if name in NET:
        spec = NET[name]
        scope: Scope = "netns" if spec.per_netns else "host"
        return NetIntKnob(
            per_netns=spec.per_netns,
            root=root,
            rel=spec.rel,
            name=name,
            domain=Domain("int", spec.low, spec.high, step=1),
            risk=spec.risk,
            scope=scope,
            needs_root=True,
            unit=spec.unit,
            description=spec.description,
            sysctl_key=name,
        )
    if name in NET_TRIPLETS:
        rel, elements, description = NET_TRIPLETS[name]
        return TcpMemKnob(
            elements=elements,
            root=root,
            rel=rel,
            name=name,
            domain=Domain("int", elements[2][0], elements[2][1], step=1),
            risk="low",
            scope="netns",
            needs_root=True,
            unit="B",
            description=description + " A single integer sets max.",
            sysctl_key=name,
        )
    if name == _CC:
        choices = () if isinstance(root, NetnsRoot) and root.nsfile is None else _cc_choices(root)
        return CongestionControlKnob(
            root=root,
            rel=_CC_REL,
            name=name,
            domain=Domain("categorical", choices=choices),
            risk="low",
            scope="netns",
            needs_root=True,
            description="TCP congestion control; choices: tcp_allowed_congestion_control plus the current one.",
            sysctl_key=name,
        )
    raise KeyError(name)


#: every net.* name, in listing order
NET_NAMES: tuple[str, ...] = (*NET, *NET_TRIPLETS, _CC)


class NetFamily(Family):
    """``net.*``: network sysctls, per network namespace where the kernel keeps them so."""

    name = "net"
    patterns = NET_NAMES
    exports = {
        **{n: sysctl_export(spec.rel) for n, spec in NET.items()},
        **{n: sysctl_export(rel, whole_value=" (max only; min and default are the host's)")
           for n, (rel, _, _) in NET_TRIPLETS.items()},
        _CC: sysctl_export(_CC_REL),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        ns = env.context.netns
        return net_knob(name, env.root if ns is None else netns_root(env.root, ns))


FAMILY = NetFamily()
