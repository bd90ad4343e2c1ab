"""The IO advisor: block device facts and the observed pattern -> scheduler, read-ahead, nr_requests.

Pure: plain data in (:class:`IoFacts`, filled by :func:`collectors.facts.io.read`), :class:`Advice` out.

What it advises, per device (knobs ``block.<dev>.scheduler`` / ``.read_ahead_kb`` / ``.nr_requests``):

* **scheduler**, from the device kind: NVMe fits ``none`` (deep hardware queues; an elevator only
  costs CPU per request); virtio and loop devices (whatever their rotational flag says) and other
  solid-state devices fit ``none`` or ``mq-deadline``;
  a rotational disk fits ``mq-deadline`` or ``bfq`` (seek ordering, reads not starved by writes).
  A scheduler that fits is kept.
* **read_ahead_kb**, from the read pattern: large mean read requests or a high read-merge ratio
  (the sequential proxy) -> a larger window; small unmerged reads on a rotational disk -> a small one;
  a window under 128 KiB on a read-heavy device whose reads never exceed the window -> raised (with
  read-ahead off every buffered read reaches the device as one page, so diskstats cannot tell
  sequential from random; the kernel reads random reads as they are, so a window costs them little).
* **nr_requests**, from the observed queue depth: a queue that stays near full is doubled.

Confidence grows with the number of requests observed (an idle device gets no advice) and is lower for
the since-boot average than for a sampled interval (the boot average mixes every phase).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimizer.advice import Advice, Change, Evidence

__all__ = [
    "IDLE_REQUESTS", "KINDS", "BlockFacts", "IoFacts", "IoPattern", "advise", "advise_device", "confidence",
]

#: device kinds the reader tells apart
KINDS = ("nvme", "virtio", "scsi", "loop", "zram", "md", "mmc", "other")
#: fewer requests than this in the observed interval: the device is idle, no advice
IDLE_REQUESTS = 200
_SECTOR_KB = 0.5
#: schedulers that fit each kind (first: the one advised when the current one does not fit)
_FITS = {"nvme": ("none",), "rotational": ("mq-deadline", "bfq"), "solid": ("none", "mq-deadline")}
#: the read-ahead advised for a sequential reader
_SEQ_TARGET_KB = {"rotational": 2048, "solid": 1024}
_RANDOM_TARGET_KB = {"rotational": 32, "solid": 128}
_DEFAULT_RA_KB = 128
_NR_REQUESTS_MAX = 4096


@dataclass(frozen=True)
class IoPattern:
    """Counters of one device over an interval (``/proc/diskstats`` deltas, or since boot).

    ``interval_s`` is the length of the interval (the uptime for the since-boot pattern); ``source``
    says where the counters come from. Derived figures are properties.
    """

    interval_s: float
    reads: int
    read_merges: int
    read_sectors: int
    writes: int
    write_merges: int
    write_sectors: int
    in_flight: int
    io_ticks_ms: int
    time_in_queue_ms: int
    source: str = "proc/diskstats"
    sampled: bool = False

    @property
    def requests(self) -> int:
        return self.reads + self.writes

    @property
    def iops(self) -> float:
        return self.requests / self.interval_s if self.interval_s > 0 else 0.0

    @property
    def read_share(self) -> float:
        """Reads among completed requests (0..1; 0 with no request)."""
        return self.reads / self.requests if self.requests else 0.0

    @property
    def mean_read_kb(self) -> float:
        return self.read_sectors * _SECTOR_KB / self.reads if self.reads else 0.0

    @property
    def mean_request_kb(self) -> float:
        n = self.requests
        return (self.read_sectors + self.write_sectors) * _SECTOR_KB / n if n else 0.0

    @property
    def read_merge_ratio(self) -> float:
        """Read requests merged into a neighbour, among all submitted reads: the sequential proxy."""
        total = self.reads + self.read_merges
        return self.read_merges / total if total else 0.0

    @property
    def merge_ratio(self) -> float:
        total = self.requests + self.read_merges + self.write_merges
        return (self.read_merges + self.write_merges) / total if total else 0.0

    @property
    def queue_depth(self) -> float:
        """Mean requests in the queue (time in queue / interval, iostat's ``aqu-sz``)."""
        return self.time_in_queue_ms / (self.interval_s * 1000.0) if self.interval_s > 0 else 0.0

    @property
    def utilisation(self) -> float:
        """Share of the interval with at least one request in flight (0..1)."""
        return min(1.0, self.io_ticks_ms / (self.interval_s * 1000.0)) if self.interval_s > 0 else 0.0


@dataclass(frozen=True)
class BlockFacts:
    """One whole block device (``/sys/block/<name>``): what it is, its queue settings, its pattern.

    ``None`` means not readable here (the reader lists why in :attr:`IoFacts.gaps`).
    """

    name: str
    kind: str
    rotational: bool | None = None
    scheduler: str | None = None
    schedulers: tuple[str, ...] = ()
    read_ahead_kb: int | None = None
    nr_requests: int | None = None
    hw_queues: int | None = None
    since_boot: IoPattern | None = None
    sampled: IoPattern | None = None

    @property
    def pattern(self) -> IoPattern | None:
        """The sampled pattern when there is one, else the since-boot one."""
        return self.sampled if self.sampled is not None else self.since_boot

    @property
    def family(self) -> str:
        """``nvme``, ``rotational`` or ``solid``: every other non-rotational device, a loop device (its
        rotational flag is copied from its backing device, whose own queue orders the real I/O) and a
        virtio disk (virtio-blk never clears the flag, so it says nothing about the storage behind)."""
        if self.kind == "nvme":
            return "nvme"
        if self.kind in ("loop", "virtio"):
            return "solid"
        return "rotational" if self.rotational else "solid"


@dataclass(frozen=True)
class IoFacts:
    """Every whole block device under a root, and what could not be read (``gaps``)."""

    root: str
    devices: tuple[BlockFacts, ...] = ()
    sample_s: float = 0.0
    gaps: tuple[str, ...] = field(default=())


def confidence(pattern: IoPattern) -> float:
    """How sure a pattern-based advice is: grows with the requests observed, capped at 0.85 for a sampled
    interval and 0.5 for the since-boot average; 0 for an idle device."""
    n = pattern.requests
    if n < IDLE_REQUESTS:
        return 0.0
    base = n / (n + 5 * IDLE_REQUESTS)
    return round(min(base, 0.85 if pattern.sampled else 0.5), 3)


def advise(facts: IoFacts) -> list[Advice]:
    """Advice for every device of ``facts`` (see the module doc); none for an idle device or a device
    whose queue files could not be read. Never raises on missing facts."""
    out: list[Advice] = []
    for dev in facts.devices:
        out.extend(advise_device(dev))
    return out


def advise_device(dev: BlockFacts) -> list[Advice]:
    """The scheduler, read-ahead and nr_requests advice of one device (possibly none)."""
    pattern = dev.pattern
    if pattern is None or dev.kind in ("zram", "md"):
        return []
    conf = confidence(pattern)
    if conf <= 0.0:
        return []
    evidence = _pattern_evidence(dev, pattern)
    out = [a for a in (_scheduler(dev, pattern, conf, evidence), _read_ahead(dev, pattern, conf, evidence),
                       _nr_requests(dev, pattern, conf, evidence)) if a is not None]
    return out


def _pattern_evidence(dev: BlockFacts, p: IoPattern) -> tuple[Evidence, ...]:
    src = p.source
    q = f"sys/block/{dev.name}/queue"
    return (
        Evidence(f"{dev.name} kind", dev.kind, "", f"sys/block/{dev.name}"),
        Evidence(f"{dev.name} rotational", dev.rotational, "", f"{q}/rotational"),
        Evidence(f"{dev.name} requests observed", p.requests, "requests", src),
        Evidence(f"{dev.name} IOPS", round(p.iops, 1), "1/s", src),
        Evidence(f"{dev.name} read share", round(p.read_share, 3), "", src),
        Evidence(f"{dev.name} mean read size", round(p.mean_read_kb, 1), "KiB", src),
        Evidence(f"{dev.name} read merge ratio", round(p.read_merge_ratio, 3), "", src),
        Evidence(f"{dev.name} mean queue depth", round(p.queue_depth, 2), "requests", src),
    )


def _scheduler(dev: BlockFacts, p: IoPattern, conf: float, evidence: tuple[Evidence, ...]) -> Advice | None:
    if dev.scheduler is None or not dev.schedulers:
        return None
    fits = _FITS[dev.family]
    if dev.scheduler in fits:
        return None
    choice = next((s for s in fits if s in dev.schedulers), None)
    if choice is None:
        return None
    if dev.family == "rotational":
        why = (f"{dev.name} is rotational: {choice} orders requests by position and keeps reads from "
               f"starving behind writes; {dev.scheduler} does neither")
        impact = 0.10 if 0.2 < p.read_share < 0.8 else 0.05
    else:
        why = (f"{dev.name} is {dev.kind} (no seek cost, {dev.hw_queues or '?'} hardware queue(s)): "
               f"{choice} adds the least CPU per request; {dev.scheduler} reorders for nothing")
        impact = 0.05 if p.iops >= 5000 else 0.02
    return Advice(
        advisor="io", title=f"scheduler {choice} on {dev.name}", why=why,
        changes=(Change(f"block.{dev.name}.scheduler", choice, dev.scheduler),),
        metric="throughput", expected_impact=impact, confidence=round(conf * 0.8, 3), risk=1.0,
        evidence=(*evidence, Evidence(f"{dev.name} schedulers", " ".join(dev.schedulers), "",
                                      f"sys/block/{dev.name}/queue/scheduler")),
    )


def _read_ahead(dev: BlockFacts, p: IoPattern, conf: float, evidence: tuple[Evidence, ...]) -> Advice | None:
    ra = dev.read_ahead_kb
    if ra is None or p.reads < IDLE_REQUESTS or p.read_share < 0.3:
        return None
    family = "rotational" if dev.family == "rotational" else "solid"
    sequential = p.mean_read_kb >= 64 or p.read_merge_ratio >= 0.3
    random_small = p.mean_read_kb <= 16 and p.read_merge_ratio < 0.05
    window = max(ra, 4)  # with read-ahead off a buffered read is one page
    clamped = ra < _DEFAULT_RA_KB and 0.75 * window <= p.mean_read_kb <= window + 4
    ev = (*evidence, Evidence(f"{dev.name} read_ahead_kb", ra, "KiB", f"sys/block/{dev.name}/queue/read_ahead_kb"))
    target, impact, c, why = 0, 0.0, conf, ""
    if clamped:
        target, impact, c = _SEQ_TARGET_KB[family], 0.30, conf * 0.7
        why = (f"read-ahead of {dev.name} is {ra} KiB and its reads average {p.mean_read_kb:.1f} KiB: every "
               "buffered read reaches the device at the window's size, so a sequential reader pays one "
               "request per page; the kernel reads random reads as they are, so a window costs them little")
    elif sequential and ra < _SEQ_TARGET_KB[family] // 2:
        target, impact = _SEQ_TARGET_KB[family], 0.10
        why = (f"reads on {dev.name} look sequential (mean {p.mean_read_kb:.0f} KiB, read merge ratio "
               f"{p.read_merge_ratio:.2f}): a larger read-ahead window means fewer, larger requests")
    elif random_small and ra > _RANDOM_TARGET_KB[family]:
        target, impact = _RANDOM_TARGET_KB[family], 0.05 if family == "rotational" else 0.02
        why = (f"reads on {dev.name} are small and unmerged (mean {p.mean_read_kb:.1f} KiB, merge ratio "
               f"{p.read_merge_ratio:.2f}): a {ra} KiB window reads data nobody asked for"
               + (" and costs seeks" if family == "rotational" else ""))
    if not target or target == ra:
        return None
    return Advice(
        advisor="io", title=f"read_ahead_kb {target} on {dev.name}", why=why,
        changes=(Change(f"block.{dev.name}.read_ahead_kb", target, ra),),
        metric="throughput", expected_impact=impact, confidence=round(c, 3), risk=1.0, evidence=ev,
    )


def _nr_requests(dev: BlockFacts, p: IoPattern, conf: float, evidence: tuple[Evidence, ...]) -> Advice | None:
    nr = dev.nr_requests
    if nr is None or nr <= 0 or not p.sampled or nr >= _NR_REQUESTS_MAX:
        return None
    if p.queue_depth < 0.8 * nr:
        return None
    target = min(2 * nr, _NR_REQUESTS_MAX)
    return Advice(
        advisor="io", title=f"nr_requests {target} on {dev.name}",
        why=(f"the queue of {dev.name} held {p.queue_depth:.0f} requests on average against nr_requests {nr}: "
             "submitters wait for a free tag; a deeper queue lets the device and the scheduler see more"),
        changes=(Change(f"block.{dev.name}.nr_requests", target, nr),),
        metric="throughput", expected_impact=0.05, confidence=round(conf * 0.6, 3), risk=1.5,
        evidence=(*evidence, Evidence(f"{dev.name} nr_requests", nr, "requests",
                                      f"sys/block/{dev.name}/queue/nr_requests")),
    )
