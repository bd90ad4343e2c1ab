"""``nic.<iface>.*``: NIC offloads, ring sizes and interrupt coalescing, through ethtool.

* ``nic.<iface>.tso`` / ``.gso`` / ``.gro`` — ``on`` | ``off`` (``ethtool -K``);
  a feature the driver fixes is unavailable, with that reason.
* ``nic.<iface>.rx_ring`` / ``.tx_ring`` — ring entries, bounded by the
  driver's pre-set maximum (``ethtool -G``).
* ``nic.<iface>.rx_usecs`` — RX interrupt coalescing in microseconds, 0..1000
  (``ethtool -C``).

Without ethtool, or where the driver does not support an operation (veth has
no rings), the knob is unavailable and says why. With a network namespace
(``netns``) every call runs as ``ip netns exec NETNS ethtool ...``: tests act on
a veth pair in a namespace they create, never on the host's own NICs.
Commands are argument lists (no shell); interface and namespace names are
matched against what exists, never pasted into a path. :data:`FAMILY`
declares the ``nic`` family (TuneD's ``[net]`` plugin takes the same ethtool
words).

**Protected interfaces** (:func:`protected`, the one place of the rule): a ring of 1 or offloads off
on the interface that carries SSH and the API can cut both, for a whole study or, applied to stay,
for good. The knobs of a protected interface are not offered (:meth:`NicFamily.knobs` leaves them
out) and naming one is refused (:func:`nic_knob` raises :class:`ProtectedInterface`): a spec, an
apply, ``GET /knobs/NAME``. The list is the context's ``protected_interfaces`` (the setting of the
same name), by default ``default-route``: every interface carrying a default route, IPv4 or IPv6,
read from ``/proc/net/route`` and ``/proc/net/ipv6_route`` (of the namespace, with ``netns``). When
the route table cannot be read every interface is protected. Restoring a journaled setting
(:func:`restore_nic`) puts back what was there and is not refused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError, KnobUnavailable, OutOfBounds, ProtectedInterface, UnknownKnob
from actuators.family import Env, Family, KnobExport, TunedOption
from actuators.sysroot import SysRoot

__all__ = [
    "DEFAULT_ROUTE", "FAMILY", "NIC_LEAVES", "Ethtool", "NicFamily", "NicKnob", "default_route_interfaces",
    "interfaces", "nic_knob", "protected", "restore_nic",
]

_FEATURES = {"tso": ("tcp-segmentation-offload", "tso"), "gso": ("generic-segmentation-offload", "gso"),
             "gro": ("generic-receive-offload", "gro")}
_RINGS = {"rx_ring": ("RX", "rx"), "tx_ring": ("TX", "tx")}
_COALESCE = {"rx_usecs": "rx-usecs"}
NIC_LEAVES = (*_FEATURES, *_RINGS, *_COALESCE)
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
#: the entry of ``protected_interfaces`` that stands for every interface carrying a default route
DEFAULT_ROUTE = "default-route"
_RTF_UP, _RTF_REJECT = 0x0001, 0x0200
_ALL = "*"  # protected() when the route table cannot be read: every interface


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


class Ethtool:
    """Runs ethtool, in a network namespace when ``netns`` is given."""

    def __init__(self, netns: str | None = None) -> None:
        if netns is not None and netns not in _netns_names():
            raise UnknownKnob(f"no network namespace {netns!r}; namespaces here: {', '.join(_netns_names()) or 'none'}")
        self.netns = netns

    def missing(self) -> str | None:
        if shutil.which("ethtool") is None:
            return "ethtool is not installed (Debian package ethtool)"
        if self.netns is not None and shutil.which("ip") is None:
            return "ip (iproute2) is not installed"
        return None

    def argv(self, *args: str) -> list[str]:
        base = ["ethtool", *args]
        return ["ip", "netns", "exec", self.netns, *base] if self.netns else base

    def run(self, *args: str) -> str:
        """stdout of ``ethtool ARGS``. Raises :class:`ActuatorError` with ethtool's own message."""
        try:
            proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ActuatorError(f"ethtool {' '.join(args)}: {err}") from err
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise ActuatorError(f"ethtool {' '.join(args)}: {msg[-1] if msg else f'exit {proc.returncode}'}")
        return proc.stdout


def interfaces(netns: str | None = None) -> list[str]:
    """Network interfaces (without ``lo``) of the host or of ``netns``."""
    if netns is None:
        try:
            return sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
        except FileNotFoundError:
            return []
    try:
        out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line]
    return sorted(n for n in names if n != "lo")


def default_route_interfaces(route: str, ipv6_route: str) -> set[str]:
    """The interfaces of the default routes (up, not reject) in the texts of ``/proc/net/route`` and
    ``/proc/net/ipv6_route``."""
    out: set[str] = set()

    def usable(flags: str) -> bool:
        try:
            value = int(flags, 16)
        except ValueError:
            return False
        return bool(value & _RTF_UP) and not value & _RTF_REJECT

    for line in route.splitlines()[1:]:  # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and usable(f[3]):
            out.add(f[0])
    for line in ipv6_route.splitlines():  # dest plen src plen next-hop metric refcnt use flags iface
        f = line.split()
        if len(f) >= 10 and f[0].strip("0") == "" and f[1] == "00" and usable(f[8]):
            out.add(f[9])
    return out


def _route_tables(root: SysRoot, netns: str | None) -> tuple[str, str] | None:
    """``/proc/net/route`` and ``/proc/net/ipv6_route`` (empty when IPv6 is off) of the host or of
    ``netns``; None when the IPv4 table cannot be read."""
    texts: list[str] = []
    for name in ("route", "ipv6_route"):
        try:
            if netns is None:
                texts.append(root.read(f"proc/net/{name}"))
                continue
            proc = subprocess.run(["ip", "netns", "exec", netns, "cat", f"/proc/net/{name}"],
                                  capture_output=True, text=True, timeout=10)
            if proc.returncode != 0:
                raise OSError(proc.stderr.strip())
            texts.append(proc.stdout)
        except (ActuatorError, OSError, subprocess.TimeoutExpired):
            if name == "route":
                return None
            texts.append("")
    return texts[0], texts[1]


def protected(entries: tuple[str, ...], *, root: SysRoot | None = None, netns: str | None = None) -> dict[str, str]:
    """The protected interfaces of ``entries`` (the setting ``protected_interfaces``): interface -> why.

    ``default-route`` stands for the interfaces carrying a default route in ``netns`` (or on the host);
    when the route table cannot be read, ``{"*": why}``: every interface is protected.
    """
    out: dict[str, str] = {}
    for entry in entries:
        if entry != DEFAULT_ROUTE:
            out.setdefault(entry, "it is listed in the setting protected_interfaces")
            continue
        tables = _route_tables(root if root is not None else SysRoot(), netns)
        if tables is None:
            return {_ALL: "the route table could not be read, so which interface carries the default route "
                          "is unknown: every interface is protected"}
        for iface in sorted(default_route_interfaces(*tables)):
            out.setdefault(iface, "it carries a default route: SSH and the API most likely use it")
    return out


def _refuse(iface: str, leaf: str, shield: dict[str, str], entries: tuple[str, ...]) -> ProtectedInterface:
    why = shield.get(iface) or shield[_ALL]
    return ProtectedInterface(
        f"nic.{iface}.{leaf} refused: {iface} is a protected interface ({why}); a ring of 1 or an offload "
        f"turned off there can cut SSH and the API. Protected here: {', '.join(sorted(shield))}. The setting "
        f"protected_interfaces (now {list(entries)}; '{DEFAULT_ROUTE}' stands for every interface with a "
        "default route) lists them: tune another interface, or remove the entry from that setting on purpose"
    )


def _section(text: str, title: str) -> dict[str, str]:
    """``key: value`` lines under the header ``title`` of ethtool output, up to the next header."""
    out: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        s = line.strip()
        if s.lower().startswith(title.lower()):
            inside = True
            continue
        if inside:
            if not s or s.endswith(":"):
                if out:
                    break
                continue
            k, _, v = s.partition(":")
            out[k.strip()] = v.strip()
    return out


class NicKnob(Knob):
    """One ethtool setting of one interface."""

    def __init__(self, iface: str, leaf: str, *, ethtool: Ethtool) -> None:
        if leaf in _FEATURES:
            domain, unit = Domain("categorical", choices=("on", "off")), ""
        elif leaf in _RINGS:
            domain, unit = Domain("int", 1, 65536, step=1), "entries"
        else:
            domain, unit = Domain("int", 0, 1000, step=1), "us"
        super().__init__(
            name=f"nic.{iface}.{leaf}", domain=domain, risk="medium", scope="device", needs_root=True, unit=unit,
            description=f"ethtool {leaf} of {iface}" + (f" in netns {ethtool.netns}" if ethtool.netns else ""),
        )
        self.iface, self.leaf, self.ethtool = iface, leaf, ethtool
        self._max: int | None = None

    # -------------------------------------------------------------- reading
    def _read_raw(self) -> str:
        if self.leaf in _FEATURES:
            long, _ = _FEATURES[self.leaf]
            for line in self.ethtool.run("-k", self.iface).splitlines():
                k, _, v = line.strip().partition(":")
                if k == long:
                    return v.strip()
            raise ActuatorError(f"{self.name}: ethtool -k does not list {long}")
        if self.leaf in _RINGS:
            text = self.ethtool.run("-g", self.iface)
            key = _RINGS[self.leaf][0]
            cur = _section(text, "Current hardware settings").get(key)
            mx = _section(text, "Pre-set maximums").get(key)
            if cur is None or mx is None or not cur.isdigit():
                raise ActuatorError(f"{self.name}: ethtool -g shows no {key} ring")
            self._max = int(mx) if mx.isdigit() else None
            return cur
        text = self.ethtool.run("-c", self.iface)
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == _COALESCE[self.leaf]:
                return v.strip()
        raise ActuatorError(f"{self.name}: ethtool -c shows no {_COALESCE[self.leaf]}")

    def available(self) -> str | None:
        missing = self.ethtool.missing()
        if missing:
            return missing
        if os.geteuid() != 0:
            return "changing NIC settings needs root (CAP_NET_ADMIN)"
        try:
            raw = self._read_raw()
        except ActuatorError as err:
            return f"not supported here: {err}"
        if raw.endswith("[fixed]"):
            return f"fixed by the driver of {self.iface} ({raw})"
        return None

    def read(self) -> Any:
        raw = self._read_raw()
        if self.leaf in _FEATURES:
            return raw.split()[0]
        return int(raw)

    def normalise(self, value: Any) -> Any:
        v = super().normalise(value)
        if self.leaf in _RINGS:
            self._read_raw()
            if self._max is not None and int(v) > self._max:
                raise OutOfBounds(f"{self.name}: {value!r} entries is above the driver's maximum {self._max}")
        return v

    # -------------------------------------------------------------- writing
    def _set_args(self, value: Any) -> list[str]:
        if self.leaf in _FEATURES:
            return ["-K", self.iface, _FEATURES[self.leaf][1], str(value)]
        if self.leaf in _RINGS:
            return ["-G", self.iface, _RINGS[self.leaf][1], str(int(value))]
        return ["-C", self.iface, _COALESCE[self.leaf], str(int(value))]

    def prepare(self, value: Any) -> Token:
        v = self.validate(value)
        reason = self.available()
        if reason is not None:
            raise KnobUnavailable(f"{self.name}: {reason}")
        old = self.read()
        target = f"{self.ethtool.netns or ''}:{self.iface}:{self.leaf}"
        return Token(knob=self.name, scope=self.scope, target=target, old=old, new=v, value=v, kind="nic")

    def commit(self, token: Token) -> None:
        self.ethtool.run(*self._set_args(token.new))

    def restore(self, token: Token) -> None:
        self.ethtool.run(*self._set_args(token.old))


def restore_nic(target: str, old: Any) -> None:
    """Put back a journaled NIC setting (``target`` = ``netns:iface:leaf``). Used by recover.

    Raises:
        ActuatorError: malformed target, the namespace or interface is gone, or ethtool refused.
    """
    try:
        netns, iface, leaf = target.split(":")
    except ValueError:
        raise ActuatorError(f"malformed NIC target {target!r}") from None
    try:  # putting back what was there is never refused, protected interface or not
        knob = nic_knob(iface, leaf, netns=netns or None, protect=())
    except UnknownKnob as err:
        raise ActuatorError(f"cannot restore {target}: {err}") from err
    knob.ethtool.run(*knob._set_args(old))


def nic_knob(
    iface: str, leaf: str, *, netns: str | None = None, protect: tuple[str, ...] = (DEFAULT_ROUTE,),
    root: SysRoot | None = None,
) -> NicKnob:
    """``nic.<iface>.<leaf>``; the interface must exist (in ``netns`` when given) and not be protected
    (``protect``: the entries of the setting ``protected_interfaces``; ``root``: where ``/proc/net`` is read).

    Raises:
        UnknownKnob: unknown leaf, bad or unknown interface or namespace.
        ProtectedInterface: the interface is protected (see :func:`protected`).
    """
    if leaf not in NIC_LEAVES:
        raise UnknownKnob(f"nic knobs are {', '.join(NIC_LEAVES)}, not {leaf!r}")
    ethtool = Ethtool(netns)
    if not _NAME.fullmatch(iface) or iface not in interfaces(netns):
        where = f"netns {netns}" if netns else "this host"
        raise UnknownKnob(f"no interface {iface!r} in {where}; interfaces: {', '.join(interfaces(netns)) or 'none'}")
    shield = protected(protect, root=root, netns=netns)
    if iface in shield or _ALL in shield:
        raise _refuse(iface, leaf, shield, protect)
    return NicKnob(iface, leaf, ethtool=ethtool)


#: leaf -> (TuneD [net] option, the ethtool word it takes)
_TUNED_NET: dict[str, tuple[str, str]] = {
    **{leaf: ("features", word) for leaf, (_, word) in _FEATURES.items()},
    **{leaf: ("ring", word) for leaf, (_, word) in _RINGS.items()},
    **{leaf: ("coalesce", word) for leaf, word in _COALESCE.items()},
}


class NicFamily(Family):
    """``nic.<iface>.<leaf>``: ethtool settings of each interface (of the host, or of the context's namespace)."""

    name = "nic"
    prefix = "nic."
    patterns = tuple(f"nic.<iface>.{leaf}" for leaf in NIC_LEAVES)
    fields = {"iface": _NAME.pattern}
    restore_kinds = ("nic",)
    exports = {
        f"nic.<iface>.{leaf}": KnobExport(tuned=TunedOption("net", option, word))
        for leaf, (option, word) in _TUNED_NET.items()
    }

    def resolve(self, name: str, env: Env) -> Knob:
        iface, _, leaf = name[len("nic."):].rpartition(".")
        return nic_knob(iface, leaf, netns=env.context.netns, protect=env.context.protected_interfaces,
                        root=env.root)

    def knobs(self, env: Env) -> list[Knob]:
        """Each leaf of each interface that is not protected; on the real host only (a fake tree has no NICs)."""
        if not env.root.is_host:
            return []
        ns = env.context.netns
        shield = protected(env.context.protected_interfaces, root=env.root, netns=ns)
        if _ALL in shield:
            return []
        return [nic_knob(i, leaf, netns=ns, protect=()) for i in interfaces(ns) if i not in shield
                for leaf in NIC_LEAVES]


FAMILY = NicFamily()
