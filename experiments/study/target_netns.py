"""``target: {netns: {}}``: a study that owns two network namespaces joined by a veth pair and tunes inside them.

The pair is the benchmark suite's (:func:`experiments.bench.netns.netns_pair`): namespaces ``ntb<hex>a`` and
``ntb<hex>b``, each journaled (``record_netns``) before ``ip netns add`` so that ``novatune recover`` deletes
them after a kill -9, deleted on every way out of the run (and released in the journal). The workload's server
runs in namespace ``a`` bound to the veth address there, its client in ``b``: the traffic crosses the veth pair,
never loopback, never the host's own interfaces.

Knobs:

* per-namespace ``net.*`` knobs act inside BOTH namespaces with the same value (receiver ``tcp_rmem`` in ``a``,
  sender ``tcp_wmem`` in ``b`` both count): the study binds each to namespace ``a`` and adds its twin in ``b``
  as a mirror (:attr:`experiments.study.resolve.Resolved.mirrors`), journaled and restored like any knob;
  host-wide ``net.*`` knobs (``busy_poll``, ``netdev_max_backlog``) are skipped with the reason, never written;
* ``nic.@target.<leaf>`` (``tso``, ``gso``, ``gro``, ...) is the ethtool setting of the veth end in each
  namespace. Without a netns target it is a :class:`~experiments.spec.SpecError`.

Workloads that can use the pair: :data:`NETNS_WORKLOADS` (iperf3).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from actuators import Catalog, Knob, KnobContext, UnknownKnob
from actuators.journal import Journal
from actuators.nic import NIC_LEAVES, Ethtool, NicKnob, nic_knob
from collectors.errors import WorkloadError
from collectors.workloads.tools.iperf3 import Iperf3Adapter, Iperf3Workload
from collectors.workloads.tools.workload import free_port, make_adapter, which_or_error
from collectors.workloads.tools.wrk import WrkWorkload
from collectors.workloads.tools.wrk import _interpreter as wrk_interpreter
from experiments.bench.netns import NetnsError, NetnsPair, _ip, netns_pair

if TYPE_CHECKING:
    from experiments.spec import StudySpec

__all__ = [
    "NETNS_WORKLOADS", "TARGET_NIC", "NetnsIperf3Workload", "NetnsTarget", "NetnsTargetSpec", "NetnsWrkWorkload",
    "TargetCatalog", "check_netns_target", "mirror_knobs",
]

#: the name prefix of the veth ends' ethtool knobs
TARGET_NIC = "nic.@target."
#: workload kinds that run server in namespace a, client in namespace b
NETNS_WORKLOADS = ("iperf3", "wrk")
_CLONE_NEWNET = 0x40000000
_MTU_LOW, _MTU_HIGH = 1280, 65535


class NetnsTargetSpec(BaseModel):
    """``target.netns``: the veth pair the study makes; ``mtu`` of both ends (default: the kernel's, 1500)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mtu: int | None = Field(default=None, ge=_MTU_LOW, le=_MTU_HIGH)


def _is_net(name: str) -> bool:
    return name.startswith(("net.", TARGET_NIC))


def check_netns_target(spec: StudySpec) -> list[str]:
    """The problems of ``spec``'s netns target (empty: none): ``nic.@target.*`` without one, an unknown leaf,
    a workload that cannot run across the pair."""
    has = spec.target is not None and spec.target.netns is not None
    problems = []
    for name in spec.knobs:
        if has and name.startswith("nic.") and not name.startswith(TARGET_NIC):
            problems.append(f"knobs.{name}: with target.netns the nic knobs act on the study's veth ends, not "
                            "a host interface; name them nic.@target.<leaf> (" + ", ".join(NIC_LEAVES) + ")")
        if not name.startswith(TARGET_NIC):
            continue
        leaf = name[len(TARGET_NIC):]
        if not has:
            problems.append(f"knobs.{name}: nic.@target.<leaf> acts on the veth ends of a `target: {{netns: {{}}}}` "
                            "section, which this spec does not have; add one, or name a host interface "
                            "(nic.<iface>.<leaf>)")
        elif leaf not in NIC_LEAVES:
            problems.append(f"knobs.{name}: unknown leaf {leaf!r}; allowed: "
                            + ", ".join(TARGET_NIC + x for x in NIC_LEAVES))
    if has and spec.workload.kind not in NETNS_WORKLOADS:
        problems.append(f"target.netns: the {spec.workload.kind} workload cannot run across the namespace pair; "
                        f"workload kinds allowed with target.netns: {', '.join(NETNS_WORKLOADS)}")
    if has and getattr(spec.workload, "url", None) is not None:
        problems.append("workload.url: not with target.netns (the study starts the server in its namespace); "
                        "leave url out")
    return problems


class TargetCatalog(Catalog):
    """The catalog with ``nic.@target.<leaf>`` resolved: to the veth end of the context's namespace when the
    pair exists (``ends`` maps namespace -> interface), else to a stand-in with the leaf's domain (a spec is
    checked before the pair is made; the stand-in is never applied)."""

    def __init__(self, context: KnobContext, ends: dict[str, str] | None = None) -> None:
        super().__init__(context=context)
        self.ends = ends or {}

    def get(self, name: str) -> Knob:
        if not isinstance(name, str) or not name.startswith(TARGET_NIC):
            return super().get(name)
        leaf = name[len(TARGET_NIC):]
        if leaf not in NIC_LEAVES:
            raise UnknownKnob(f"{name}: unknown leaf {leaf!r}; allowed: {', '.join(NIC_LEAVES)}")
        ns = self.context.netns
        if ns is None or ns not in self.ends:
            return NicKnob("@target", leaf, ethtool=Ethtool(None))
        return nic_knob(self.ends[ns], leaf, netns=ns, protect=self.context.protected_interfaces, root=self.root)


def mirror_knobs(names: list[str], context: KnobContext, pair: NetnsPair) -> dict[str, tuple[Knob, ...]]:
    """For each ``net.*`` / ``nic.@target.*`` name, its twin in namespace ``b`` (same value, own journal entry)."""
    catalog = TargetCatalog(KnobContext(netns=pair.b, protected_interfaces=context.protected_interfaces),
                            {pair.a: pair.a, pair.b: pair.b})
    return {n: (catalog.get(n),) for n in names if _is_net(n)}


def _setns_preexec(nsfile: str, inner: Callable[[], None] | None) -> Callable[[], None]:
    """A preexec: ``inner`` (cgroup placement, as root), then join the network namespace of ``nsfile``."""
    libc = ctypes.CDLL(None, use_errno=True)

    def _pre() -> None:
        if inner is not None:
            inner()
        fd = os.open(nsfile, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({nsfile})")
        finally:
            os.close(fd)

    return _pre


class _AcrossPair:
    """What the netns workloads share: the pair, and each client run (the tool) in namespace ``b``."""

    pair: NetnsPair

    def _tool_preexec(self, run_as: Any = None) -> Callable[[], None]:
        return _setns_preexec(f"/run/netns/{self.pair.b}", super()._tool_preexec(run_as))  # type: ignore[misc]


class NetnsIperf3Workload(_AcrossPair, Iperf3Workload):
    """iperf3 across the pair: ``iperf3 -s`` (user ``nobody``) in namespace ``a`` on the veth address there,
    each client run in namespace ``b`` against it. Everything else is :class:`Iperf3Workload`'s."""

    def __init__(self, workdir: str | os.PathLike[str], *, pair: NetnsPair, **options: Any) -> None:
        self.pair = pair
        super().__init__(workdir, **options)

    def _adapter(self, seconds: float, port: int | None = None) -> Iperf3Adapter:
        return make_adapter(
            "iperf3", Iperf3Adapter, port=port if port is not None else self.port, duration_s=seconds,
            streams=self.options["streams"], host=self.pair.addr_a,
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        private = self._server_dir()
        private.open_to()
        self.port = free_port()  # a fresh namespace has every port free; this one is free on the host too
        argv = [which_or_error(self.kind, "iperf3"), "-s", "-B", self.pair.addr_a, "-p", str(self.port)]
        self._spawn_tuned(argv, _setns_preexec(f"/run/netns/{self.pair.a}", preexec_fn), private=private)
        port = self.port
        self._wait(lambda: self._listening(port), "iperf3 server")  # no connect: it would count as a test

    def _listening(self, port: int) -> bool:
        """A TCP socket listening on ``port`` in the server's namespace (``/proc/PID/net/tcp`` is that
        namespace's table; psutil reads this process's)."""
        pids = self.pids()
        if not pids:
            return False
        with open(f"/proc/{pids[0]}/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        return any(len(r) > 3 and r[3] == "0A" and int(r[1].rpartition(":")[2], 16) == port for r in rows)


def _listen_in(nsfile: str, addr: str) -> socket.socket:
    """A TCP socket listening on ``addr``:<free port> inside the namespace of ``nsfile``, bound from a
    short-lived thread that joined it (a socket stays in the namespace it was made in)."""
    out: dict[str, Any] = {}

    def _bind() -> None:
        try:
            _setns_preexec(nsfile, None)()  # this thread only
            sock = socket.socket()
            sock.bind((addr, 0))
            sock.listen(4096)  # capped by the namespace's somaxconn
            out["sock"] = sock
        except OSError as err:
            out["err"] = err

    t = threading.Thread(target=_bind, name="netns-listen", daemon=True)
    t.start()
    t.join(timeout=10)
    if "sock" not in out:
        raise WorkloadError(f"wrk: cannot listen on {addr} in {nsfile}: {out.get('err', 'timed out')}")
    return out["sock"]


class NetnsWrkWorkload(_AcrossPair, WrkWorkload):
    """wrk across the pair: the built-in HTTP server (user ``nobody``) in namespace ``a`` on a socket novatune
    bound to the veth address there, each wrk run in namespace ``b``."""

    def __init__(self, workdir: str | os.PathLike[str], *, pair: NetnsPair, **options: Any) -> None:
        self.pair = pair
        super().__init__(workdir, **options)

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        private = self._server_dir()
        www = private.top / "www"
        private.open_to()
        python = wrk_interpreter(private.account)
        listener = _listen_in(f"/run/netns/{self.pair.a}", self.pair.addr_a)
        try:
            fd = listener.fileno()
            argv = [python, "-I", str(private.top / "http_server.py"), "http", "--root", str(www), "--fd", str(fd)]
            proc = self._spawn_tuned(argv, _setns_preexec(f"/run/netns/{self.pair.a}", preexec_fn),
                                     stdout_pipe=True, private=private, pass_fds=(fd,))
            port = listener.getsockname()[1]
        finally:
            listener.close()
        if self._read_ready(proc) != port:
            raise WorkloadError("wrk: the HTTP server reported another port than the one it was given")
        self.url = f"http://{self.pair.addr_a}:{port}/index.html"


class NetnsTarget:
    """The run's pair (a context manager): made and journaled on entry, deleted and released on exit."""

    def __init__(self, spec: NetnsTargetSpec, *, journal: Journal, run_id: str) -> None:
        self.spec = spec
        self.journal = journal
        self.run_id = run_id
        self.pair: NetnsPair | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> NetnsTarget:
        try:
            self.pair = self._stack.enter_context(netns_pair(
                own=lambda n: self.journal.record_netns(self.run_id, n),
                disown=lambda n: self.journal.release_netns(self.run_id, n, note="deleted with the run")))
            if self.spec.mtu is not None:
                for side in (self.pair.a, self.pair.b):
                    _ip("-n", side, "link", "set", "dev", side, "mtu", str(self.spec.mtu))
        except NetnsError as err:
            self.close()
            raise WorkloadError(f"target.netns: the namespace pair could not be made: {err}") from err
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the pair (idempotent)."""
        self.pair = None
        self._stack.close()

    def context(self, base: KnobContext) -> KnobContext:
        """``base`` bound to namespace ``a`` (the mirrors bind ``b``)."""
        assert self.pair is not None
        return dataclasses.replace(base, netns=self.pair.a)

    def catalog(self, base: KnobContext) -> TargetCatalog:
        assert self.pair is not None
        return TargetCatalog(self.context(base), {self.pair.a: self.pair.a, self.pair.b: self.pair.b})

    def workload(self, spec: StudySpec, workdir: Path, *, allowed_roots: tuple[str, ...],
                 protected: tuple[Any, ...]) -> NetnsIperf3Workload | NetnsWrkWorkload:
        assert self.pair is not None
        opts = spec.workload.model_dump()
        if opts.pop("kind") == "wrk":
            return NetnsWrkWorkload(workdir, pair=self.pair, allowed_roots=allowed_roots, protected=protected,
                                    **opts)
        return NetnsIperf3Workload(workdir, pair=self.pair, allowed_roots=allowed_roots, protected=protected,
                                   **opts)
