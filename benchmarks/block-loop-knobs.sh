#!/bin/bash
# What the block.@target.* knobs change on a loop device like the one `target: loop` makes (direct I/O to a
# backing file on the root disk). Run as root from a checkout:  bash benchmarks/block-loop-knobs.sh [DIR]
# It makes a 4 GiB backing file in DIR (default: a new directory under /tmp), fills it with random bytes,
# attaches it, runs each fio job 3 times (time_based, 2 s each: a 4 GiB device is never read twice in a
# run, so the loop device's page cache does not serve repeats), and on exit puts the device's queue
# settings back, detaches it and deletes the file.
set -eu
DIR=${1:-$(mktemp -d /tmp/novatune-blockknobs-XXXXXX)}
B=$DIR/backing.img
truncate -s 4G "$B"
dd if=/dev/urandom of="$B" bs=4M count=1024 conv=fsync status=none
DEV=$(losetup --find --show --direct-io=on "$B"); N=$(basename "$DEV"); Q=/sys/block/$N/queue
SAVED=$(for f in scheduler read_ahead_kb nr_requests wbt_lat_usec; do
  v=$(cat $Q/$f); [ $f = scheduler ] && v=$(sed 's/.*\[\(.*\)\].*/\1/' <<<"$v"); echo "$f=$v"; done)
cleanup() { for kv in $SAVED; do echo "${kv#*=}" > "$Q/${kv%%=*}"; done; losetup -d "$DEV"; rm -f "$B"; }
trap cleanup EXIT
echo "$DEV defaults: $SAVED" | tr '\n' ' '; echo
run() { fio --name=m --filename="$DEV" --time_based --runtime=2 --size=4G --output-format=json --invalidate=1 "$@" |
  python3 -c 'import json,sys;j=json.load(sys.stdin)["jobs"][0];r,w=j["read"],j["write"];print(round((r["bw_bytes"]+w["bw_bytes"])/2**20,1),"MiB/s",round(r["iops"]+w["iops"]),"IOPS")'; }
for ra in 0 128 4096; do echo $ra > $Q/read_ahead_kb
  for r in 1 2 3; do echo "seq-read buffered 4k psync  read_ahead_kb=$ra: $(run --rw=read --bs=4k --ioengine=psync)"; done; done
echo 128 > $Q/read_ahead_kb
for nr in 4 32 128; do echo $nr > $Q/nr_requests
  for r in 1 2 3; do echo "randrw direct 4k libaio qd32  nr_requests=$nr: $(run --rw=randrw --bs=4k --ioengine=libaio --iodepth=32 --direct=1)"; done; done
echo 128 > $Q/nr_requests
for s in none mq-deadline; do echo $s > $Q/scheduler
  for r in 1 2 3; do echo "randread direct 4k libaio qd16  scheduler=$s: $(run --rw=randread --bs=4k --ioengine=libaio --iodepth=16 --direct=1)"; done; done
echo none > $Q/scheduler
for w in 0 2000 75000; do echo $w > $Q/wbt_lat_usec
  for r in 1 2 3; do echo "write buffered 64k + fsync  wbt_lat_usec=$w: $(run --rw=write --bs=64k --ioengine=psync --end_fsync=1)"; done; done
