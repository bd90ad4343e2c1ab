#!/bin/bash
# What read_ahead_kb changes for a reader that maps its data and faults 4k pages at random with no access
# hint (fio --ioengine=mmap --fadvise_hint=0), in a cgroup limited to 1 GiB of memory (page cache included),
# on a 4 GiB loop device like the one `target: loop` makes (docs/block-target.md, scenario-block-mmap).
# Run as root from a checkout:  bash benchmarks/block-mmap-readahead.sh [DIR]
# It makes a 4 GiB backing file in DIR (default: a new directory under /tmp), fills it with random bytes,
# attaches it with direct I/O, makes a v1 memory cgroup novatune-mmapbench-<pid> limited to 1 GiB, runs fio
# 3 times (4 s each) per read_ahead_kb value, and on exit puts the device's read-ahead back, removes the
# cgroup, detaches the device and deletes the file.
set -eu
DIR=${1:-$(mktemp -d /tmp/novatune-mmapbench-XXXXXX)}
B=$DIR/backing.img
CG=/sys/fs/cgroup/memory/novatune-mmapbench-$$
truncate -s 4G "$B"
dd if=/dev/urandom of="$B" bs=4M count=1024 conv=fsync status=none
DEV=$(losetup --find --show --direct-io=on "$B"); Q=/sys/block/$(basename "$DEV")/queue
RA=$(cat "$Q/read_ahead_kb")
mkdir "$CG"
cleanup() { echo "$RA" > "$Q/read_ahead_kb"; rmdir "$CG" 2>/dev/null || true; losetup -d "$DEV"; rm -f "$B"; }
trap cleanup EXIT
echo $((1 << 30)) > "$CG/memory.limit_in_bytes"
echo "$DEV read_ahead_kb default: $RA; memory limit 1 GiB"
for ra in "$RA" 128 16; do echo "$ra" > "$Q/read_ahead_kb"
  for r in 1 2 3; do
    iops=$(sh -c "echo \$\$ > $CG/cgroup.procs; exec fio --name=m --filename=$DEV --ioengine=mmap --rw=randread \
      --bs=4k --fadvise_hint=0 --time_based --runtime=4 --size=4G --invalidate=1 --output-format=json" |
      python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
    echo "mmap randread 4k, no hint, 1 GiB  read_ahead_kb=$ra: $iops IOPS"
  done
done
