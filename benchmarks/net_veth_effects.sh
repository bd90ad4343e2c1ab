#!/bin/bash
# iperf3 TCP throughput (Gbit/s, receiver) across a veth pair between two fresh namespaces, per setting,
# interleaved: 3 rounds, each round measures every setting once (3 s each), settings put back after each.
# usage (root): bash benchmarks/net_veth_effects.sh   -- makes nvfx0a/nvfx0b and deletes them on exit; the host is untouched.
set -u
A=nvfx0a; B=nvfx0b
trap 'ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; true' EXIT
ip netns add $A; ip netns add $B
ip link add $A type veth peer name $B
ip link set $A netns $A; ip link set $B netns $B
ip -n $A addr add 10.213.250.1/30 dev $A; ip -n $B addr add 10.213.250.2/30 dev $B
for n in $A $B; do ip -n $n link set $n up; ip -n $n link set lo up; done
ip netns exec $A timeout 600 iperf3 -s -B 10.213.250.1 -p 5299 >/dev/null 2>&1 &
sleep 1
both() { ip netns exec $A "$@" >/dev/null; ip netns exec $B "$@" >/dev/null; }
eth() { ip netns exec $A ethtool -K $A "$@"; ip netns exec $B ethtool -K $B "$@"; }
RM=$(ip netns exec $A cat /proc/sys/net/ipv4/tcp_rmem); WM=$(ip netns exec $A cat /proc/sys/net/ipv4/tcp_wmem)
CC=$(ip netns exec $A cat /proc/sys/net/ipv4/tcp_congestion_control)
echo "# namespace defaults: tcp_rmem=$RM tcp_wmem=$WM cc=$CC; allowed cc: $(ip netns exec $A cat /proc/sys/net/ipv4/tcp_allowed_congestion_control)"
reset() { eth tso on gso on gro on; both sysctl -w net.ipv4.tcp_congestion_control=$CC
          both sysctl -w net.ipv4.tcp_rmem="$RM"; both sysctl -w net.ipv4.tcp_wmem="$WM"; }
set_cfg() {
  case "$1" in
    default) ;;
    offloads_off) eth tso off gso off gro off ;;
    tso_off) eth tso off ;;
    gro_off) eth gro off ;;
    cc_reno) both sysctl -w net.ipv4.tcp_congestion_control=reno ;;
    buf_64k) both sysctl -w net.ipv4.tcp_rmem="4096 65536 65536"; both sysctl -w net.ipv4.tcp_wmem="4096 16384 65536" ;;
    buf_32m) both sysctl -w net.ipv4.tcp_rmem="4096 131072 33554432"; both sysctl -w net.ipv4.tcp_wmem="4096 16384 33554432" ;;
  esac
}
CFGS="default offloads_off tso_off gro_off cc_reno buf_64k buf_32m"
for round in 1 2 3; do
  for c in $CFGS; do
    set_cfg $c
    v=$(ip netns exec $B timeout 20 iperf3 -c 10.213.250.1 -p 5299 -t 3 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    echo "$c $round $v"
    reset
  done
done
