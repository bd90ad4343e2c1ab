"""Two network namespaces joined by a veth pair, made for one benchmark and always deleted.

The pair is ``ntb<hex>a`` / ``ntb<hex>b`` (namespaces) with veth ends ``ntb<hex>a`` / ``ntb<hex>b`` inside
them, addressed ``10.213.<n>.1/30`` and ``.2/30``: the addresses exist only inside those namespaces, the
host's interfaces, routes and sysctls are never touched. Every step runs ``ip`` without a shell, bounded
in time. :func:`netns_pair` deletes what it created on every way out (an error, Ctrl-C): deleting a
namespace deletes the veth end in it (and so its peer); a veth end still in the host namespace (a failure
between creating and moving it) is deleted by name.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from collectors.errors import NovatuneError
from collectors.workloads.process import run_bounded, tail

__all__ = ["NetnsError", "NetnsPair", "netns_pair", "pair_exists"]

_IP_TIMEOUT_S = 10.0


class NetnsError(NovatuneError):
    """The namespace pair could not be made (no ``ip``, not root, ...) (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class NetnsPair:
    """Namespace ``a`` holds the server end (``addr_a``), ``b`` the client end (``addr_b``)."""

    a: str
    b: str
    addr_a: str
    addr_b: str

    def exec_prefix(self, side: str) -> list[str]:
        """``["ip", "netns", "exec", NS]`` for side ``"a"`` or ``"b"`` (argv[0] as a name; resolved by the runner)."""
        return ["ip", "netns", "exec", self.a if side == "a" else self.b]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip")
    if ip is None:
        raise NetnsError("the `ip` command is missing (Debian package: iproute2)")
    try:
        proc = run_bounded([ip, *args], timeout_s=_IP_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {err}") from err
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` exited with {proc.returncode}: {tail(proc.stderr, 300)}")
    return proc


def pair_exists(tag: str) -> dict[str, bool]:
    """Whether namespaces or host-side links whose name starts with ``tag`` exist: ``{"netns": .., "links": ..}``."""
    ns = _ip("netns", "list", check=False).stdout
    links = _ip("-o", "link", "show", check=False).stdout
    return {
        "netns": any(line.split()[0].startswith(tag) for line in ns.splitlines() if line.split()),
        "links": any(f" {tag}" in line for line in links.splitlines()),
    }


def _delete(pair: NetnsPair, created: list[str]) -> None:
    for ns in reversed(created):
        _ip("netns", "delete", ns, check=False)
    for link in (pair.a, pair.b):  # only left in the host namespace when moving it failed
        if _ip("link", "show", "dev", link, check=False).returncode == 0:
            _ip("link", "delete", "dev", link, check=False)


def _nothing(name: str) -> None:
    del name


@contextmanager
def netns_pair(*, own: Callable[[str], Any] = _nothing, disown: Callable[[str], Any] = _nothing
               ) -> Iterator[NetnsPair]:
    """Make the pair (see the module docstring), yield it, delete it on every way out. ``own(name)`` is
    called before each namespace is made (the run's journal records it, so ``novatune recover`` deletes it
    after a kill -9), ``disown(name)`` after it is deleted.

    Raises:
        NetnsError: ``ip`` is missing or a step failed (what was made so far is deleted first).
    """
    tag = f"ntb{secrets.token_hex(3)}"
    n = secrets.randbelow(250) + 1
    pair = NetnsPair(a=f"{tag}a", b=f"{tag}b", addr_a=f"10.213.{n}.1", addr_b=f"10.213.{n}.2")
    created: list[str] = []
    try:
        for ns in (pair.a, pair.b):
            own(ns)
            created.append(ns)  # before the call: a half-made namespace is deleted too
            _ip("netns", "add", ns)
        _ip("link", "add", pair.a, "type", "veth", "peer", "name", pair.b)
        for side, addr in ((pair.a, pair.addr_a), (pair.b, pair.addr_b)):
            _ip("link", "set", "dev", side, "netns", side)
            _ip("-n", side, "addr", "add", f"{addr}/30", "dev", side)
            _ip("-n", side, "link", "set", "dev", side, "up")
            _ip("-n", side, "link", "set", "dev", "lo", "up")
        yield pair
    finally:
        _delete(pair, created)
        for ns in created:
            if not pair_exists(ns)["netns"]:
                disown(ns)
