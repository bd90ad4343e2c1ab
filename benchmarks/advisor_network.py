"""The network advisor on a real path: two network namespaces joined by a veth pair, iperf3 across it, and a
deliberately small ``tcp_rmem`` / ``tcp_wmem`` in both namespaces.

This command creates the namespaces and the veth pair (never touching the host's interfaces or its own
namespace's knobs), sets the small buffers through novatune's journal (side A), runs iperf3 while the
network advisor reads the facts inside the client's namespace (``ss -tin``: RTT, delivery rate,
rwnd/sndbuf-limited time; the veth's link speed) and advises, then measures iperf3 throughput with the
poor buffers (A) and with the advice (B, applied in both namespaces: both ends of the path) in interleaved
repeats, each side applied through the journal and rolled back after its run. Prints the advice, the
before/after medians with 95 % intervals, and the advice with the measured effect. Namespaces, veths and
every change are removed in ``finally`` blocks. There is no qdisc (netem) here: the RTT is the veth's own.

Run (root): ``python -m benchmarks.advisor_network [--repeats 6] [--seconds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from contextlib import ExitStack

from actuators.catalog import Catalog, KnobContext
from actuators.sysroot import SysRoot
from benchmarks._advisor_common import Journaled, measured_advice, private_paths, run_bounded, summary
from collectors.facts import network as net_facts
from optimizer.advice import Advice
from optimizer.advisors import network as net_advisor

_POOR = [4096, 4096, 8192]
_BUF_KNOBS = ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")


def _ns(*argv: str, ns: str, timeout_s: float = 30) -> str:
    return run_bounded(["ip", "netns", "exec", ns, *argv], timeout_s=timeout_s)


def _setup(srv: str, cli: str, va: str, vb: str, net: str) -> None:
    run_bounded(["ip", "netns", "add", srv], timeout_s=10)
    run_bounded(["ip", "netns", "add", cli], timeout_s=10)
    run_bounded(["ip", "link", "add", va, "netns", srv, "type", "veth", "peer", "name", vb, "netns", cli], timeout_s=10)
    for ns, dev, addr in ((srv, va, f"{net}.1/24"), (cli, vb, f"{net}.2/24")):
        run_bounded(["ip", "-n", ns, "addr", "add", addr, "dev", dev], timeout_s=10)
        run_bounded(["ip", "-n", ns, "link", "set", dev, "up"], timeout_s=10)
        run_bounded(["ip", "-n", ns, "link", "set", "lo", "up"], timeout_s=10)


def _iperf(srv: str, cli: str, addr: str, seconds: int) -> float:
    """Gbit/s received over one bounded iperf3 run (a one-off server in ``srv``)."""
    server = subprocess.Popen(["ip", "netns", "exec", srv, "iperf3", "-s", "-1", "-B", addr],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = _ns("iperf3", "-c", addr, "-t", str(seconds), "-J", ns=cli, timeout_s=seconds + 20)
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _advise_while_running(srv: str, cli: str, addr: str) -> tuple[list[Advice], net_facts.NetFacts]:
    server = subprocess.Popen(["ip", "netns", "exec", srv, "iperf3", "-s", "-1", "-B", addr],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        time.sleep(0.3)
        client = subprocess.Popen(["ip", "netns", "exec", cli, "iperf3", "-c", addr, "-t", "4"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        facts = net_facts.read(root="/", netns=cli, sample_s=1.0)
    finally:
        for p in (client, server):
            if p is not None:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return net_advisor.advise(facts), facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6, help="measurements per side (2..20)")
    ap.add_argument("--seconds", type=int, default=2, help="iperf3 seconds per run (1..10)")
    args = ap.parse_args(argv)
    repeats, seconds = max(2, min(args.repeats, 20)), max(1, min(args.seconds, 10))
    tag = f"{os.getpid() % 100000}"
    srv, cli, va, vb = f"ntadv-s{tag}", f"ntadv-c{tag}", f"ntav{tag}a", f"ntav{tag}b"
    net = f"10.231.{os.getpid() % 250}"
    addr = f"{net}.1"
    with ExitStack() as stack:
        stack.callback(run_bounded, ["ip", "netns", "del", cli], timeout_s=10)
        stack.callback(run_bounded, ["ip", "netns", "del", srv], timeout_s=10)
        _setup(srv, cli, va, vb, net)
        journals = []
        for ns in (srv, cli):
            j = Journaled(stack.enter_context(private_paths()), Catalog(SysRoot("/"), KnobContext(netns=ns)))
            stack.callback(j.close)
            journals.append(j)
        poor = dict.fromkeys(_BUF_KNOBS, _POOR)

        def apply(values: dict[str, object], why: str) -> None:
            for j in journals:
                j.apply(values, f"advisor_network: {why}")

        def undo() -> None:
            for j in journals:
                j.undo_last()

        apply(poor, "the poor starting point")
        advice, facts = _advise_while_running(srv, cli, addr)
        undo()
        print("interfaces:", [(i.name, i.speed_mbps, i.management) for i in facts.interfaces])
        print("tcp:", facts.tcp)
        busiest = max(facts.connections, key=lambda c: c.bytes, default=None)
        print("busiest connection:", busiest)
        if not advice:
            print("the advisor advised nothing: nothing to measure")
            return 1
        print("advice:", json.dumps([a.as_dict() for a in advice], default=str, indent=1))
        values = {c.knob: c.value for a in advice for c in a.changes}
        before: list[float] = []
        after: list[float] = []
        for i in range(repeats):
            for side in ("AB" if i % 2 == 0 else "BA"):
                apply(values if side == "B" else poor, f"side {side} (A poor, B advised)")
                (after if side == "B" else before).append(_iperf(srv, cli, addr, seconds))
                undo()
        change, text = summary("throughput", before, after, "Gbit/s")
        print(f"iperf3 over a veth pair between two namespaces, {seconds} s per run, interleaved A/B x {repeats}")
        print(text)
        for a in advice:
            print("measured advice:", json.dumps(measured_advice(a, change).as_dict(), default=str))
        apply(values, "the advice, read again")
        again, _ = _advise_while_running(srv, cli, addr)
        undo()
        print("advice with the advice applied (should be none: no oscillation):", [a.title for a in again])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
