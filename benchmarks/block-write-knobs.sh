#!/bin/bash
# What the block.@target.* knobs and the dirty ratios change for a write-heavy job on a loop device like the
# one `target: loop` makes (direct I/O to a backing file on the root disk): buffered random 4k writes with an
# fsync every 32 writes (fio psync, as a database's or a log's writer does). Run as root from a checkout:
#   bash benchmarks/block-write-knobs.sh [DIR] [ROUNDS]
# It makes a 1 GiB backing file in DIR (default: a new directory under /tmp), attaches it, and runs each
# setting once per round, the settings interleaved in every round (ROUNDS, default 3; 2 s per run) so a drift
# over the run is not read as an effect. On exit it puts the device's queue settings and the two dirty
# ratios back, detaches the device and deletes the file.
set -eu
DIR=${1:-$(mktemp -d /tmp/novatune-blockwrite-XXXXXX)}
ROUNDS=${2:-3}
B=$DIR/backing.img
truncate -s 1G "$B"
DEV=$(losetup --find --show --direct-io=on "$B"); N=$(basename "$DEV"); Q=/sys/block/$N/queue
SAVED=$(for f in scheduler nr_requests wbt_lat_usec; do
  v=$(cat $Q/$f); [ $f = scheduler ] && v=$(sed 's/.*\[\(.*\)\].*/\1/' <<<"$v"); echo "$f=$v"; done)
DR=$(cat /proc/sys/vm/dirty_ratio); DBR=$(cat /proc/sys/vm/dirty_background_ratio)
cleanup() { echo "$DBR" > /proc/sys/vm/dirty_background_ratio; echo "$DR" > /proc/sys/vm/dirty_ratio
  for kv in $SAVED; do echo "${kv#*=}" > "$Q/${kv%%=*}"; done; losetup -d "$DEV"; rm -f "$B"; }
trap cleanup EXIT
echo "$DEV defaults: $SAVED dirty_ratio=$DR dirty_background_ratio=$DBR" | tr '\n' ' '; echo
fio --name=layout --filename="$DEV" --rw=write --bs=1M --size=1G --direct=1 --output-format=terse >/dev/null
run() { fio --name=m --filename="$DEV" --time_based --runtime=2 --size=1G --output-format=json --rw=randwrite \
  --bs=4k --ioengine=psync --fsync=32 "$@" | python3 -c 'import json,sys;print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))'; }
default() { for kv in $SAVED; do echo "${kv#*=}" > "$Q/${kv%%=*}"; done
  echo "$DR" > /proc/sys/vm/dirty_ratio; echo "$DBR" > /proc/sys/vm/dirty_background_ratio; }
SETTINGS="defaults wbt_lat_usec=0 wbt_lat_usec=75000 scheduler=mq-deadline nr_requests=4 dirty_background_ratio=1 dirty_ratio=40"
declare -A OUT
for r in $(seq "$ROUNDS"); do
  for s in $SETTINGS; do default
    case $s in
      defaults) ;;
      dirty_*) echo "${s#*=}" > "/proc/sys/vm/${s%%=*}" ;;
      *) echo "${s#*=}" > "$Q/${s%%=*}" ;;
    esac
    OUT[$s]="${OUT[$s]:-} $(run)"
  done
done
default
for s in $SETTINGS; do echo "randwrite 4k buffered fsync=32  $s: IOPS${OUT[$s]}"; done
