"""The profile store: exact round trips, label queries, retention, hourly aggregation (exact, idempotent,
crash-safe), refused ids and paths, corrupted blobs, and a writer beside readers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path

import pytest

from collectors.profiler import rollup
from collectors.profiler.formats import collapsed
from collectors.profiler.model import Frame, Profile, ProfileError, ProfileMeta
from collectors.profiler.store import ProfileStore, StoredProfile, UnknownProfile, UnsafeStore, check_id

#: an hour boundary (UTC), and "now" 3.5 hours after it
T0 = 1_699_999_200.0
NOW = T0 + 3 * 3600 + 1800
REPO = Path(__file__).resolve().parents[3]


def _window(start: float, *, seed: int = 0, labels: dict[str, str] | None = None, pid: int = 4242,
            mode: str = "cpu", rate: float = 100.0, duration: float = 10.0) -> Profile:
    """A window of three threads' stacks whose counts depend on ``seed``."""
    meta = ProfileMeta(mode=mode, engine="py-spy", rate_hz=rate, start=start, duration_s=duration, pid=pid,
                       cmdline="python app.py --serve", cgroup="/novatune/app", labels=dict(labels or {}),
                       overhead={"pyspy_cpu_pct": 0.5 + seed % 3})
    text = "\n".join([
        f"thread (0x10): MainThread;main (app.py:10);work (app.py:20);hot (app.py:30) {10 + seed}",
        f"thread (0x10): MainThread;main (app.py:10);work (app.py:20);cold (app.py:40) {1 + seed % 4}",
        f"thread (0x20): worker;run (worker.py:5);queue.get (queue.py:171);wait (threading.py:331) {5 + 2 * seed}",
        f"thread (0x20): worker;run (worker.py:5);compress (libz.so.1) {seed % 3 + 1}",
    ])
    return collapsed.loads(text, meta=meta)


def _by_stack(profiles: list[Profile]) -> Counter[tuple[Frame, ...]]:
    out: Counter[tuple[Frame, ...]] = Counter()
    for p in profiles:
        for stack, count in p.stacks():
            out[stack] += count
    return out


@pytest.fixture
def store(tmp_path: Path) -> ProfileStore:
    return ProfileStore(tmp_path / "profiles")


def _sql(store: ProfileStore, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(store.path)
    try:
        with conn:
            return conn.execute(query, params).fetchall()
    finally:
        conn.close()


# -- round trip, layout ---------------------------------------------------------------------------------
def test_put_then_get_is_exact_and_the_blob_is_zlib_of_the_canonical_json(store: ProfileStore) -> None:
    prof = _window(T0, seed=3, labels={"study": "s1", "trial": "7", "config_hash": "ab12"})
    prof.meta.threads = {"16": {"cpu_s": 1.5, "run_delay_s": 0.25}}
    prof.meta.memory = [{"t": T0, "rss": 1e6}, {"t": T0 + 5, "rss": 1.2e6}]
    prof.meta.native = True
    pid = store.put(prof)
    assert check_id(pid) == pid
    back = store.get(pid)
    assert back.to_dict() == prof.to_dict()
    assert collapsed.dumps(back) == collapsed.dumps(prof)
    [(data, size, digest)] = _sql(store, "SELECT data, size, sha256 FROM blobs WHERE profile_id = ?", (pid,))
    assert isinstance(data, bytes) and len(data) == size and hashlib.sha256(data).hexdigest() == digest
    assert json.loads(zlib.decompress(data)) == prof.to_dict()
    [row] = store.list()
    assert row == StoredProfile(id=pid, kind="window", start=T0, end=T0 + 10.0, duration_s=10.0, mode="cpu",
                                engine="py-spy", rate_hz=100.0, pid=4242, target="python app.py --serve",
                                cgroup="/novatune/app", samples=prof.total, stored_bytes=size, windows=1,
                                labels={"study": "s1", "trial": "7", "config_hash": "ab12"})
    assert row.to_dict()["labels"]["trial"] == "7" and json.dumps(row.to_dict())


def test_the_directory_is_created_0700_and_the_database_0600(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "data" / "profiles")
    store.put(_window(T0))
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "profiles").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
    for name in ("profiles.db", "profiles.db-wal"):
        path = tmp_path / "data" / "profiles" / name
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
    assert _sql(store, "PRAGMA journal_mode")[0][0] == "wal"
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    os.chmod(wide, 0o755)
    ProfileStore(wide)
    assert stat.S_IMODE(os.stat(wide).st_mode) == 0o700


# -- queries --------------------------------------------------------------------------------------------
def test_labels_are_an_and_and_column_names_match_the_index(store: ProfileStore) -> None:
    a1 = store.put(_window(T0, labels={"study": "a", "trial": "1"}))
    a2 = store.put(_window(T0 + 10, labels={"study": "a", "trial": "2"}, mode="wall"))
    b1 = store.put(_window(T0 + 20, labels={"study": "b", "trial": "1"}, pid=77, rate=20.0))
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(store.list({"study": "a", "trial": "1"})) == [a1]
    assert ids(store.list({"study": "a"})) == [a2, a1]
    assert ids(store.list({"trial": "1"})) == [b1, a1]
    assert ids(store.list({"study": "a", "trial": "3"})) == []
    assert ids(store.list({"study": "b", "trial": "2"})) == []
    assert ids(store.list({"mode": "wall"})) == [a2]
    assert ids(store.list({"pid": "77"})) == [b1]
    assert ids(store.list({"rate": "20"})) == [b1]
    assert ids(store.list({"target": "python app.py --serve", "study": "a", "mode": "cpu"})) == [a1]
    assert ids(store.list({"pid": "not-a-number"})) == []
    plan = " ".join(str(r) for r in _sql(store, "EXPLAIN QUERY PLAN SELECT profile_id FROM labels WHERE key = ? "
                                                "AND value = ?", ("study", "a")))
    assert "labels_key_value" in plan, plan


def test_since_until_kind_and_limit(store: ProfileStore) -> None:
    ids = [store.put(_window(T0 + 100 * i, duration=10.0)) for i in range(5)]  # spans [T0+100i, T0+100i+10]
    got = lambda **kw: [r.id for r in store.list(**kw)]  # noqa: E731
    assert got() == ids[::-1]
    assert got(since=T0 + 205) == ids[:1:-1]  # the window [200, 210] still overlaps 205
    assert got(since=T0 + 211) == [ids[4], ids[3]]
    assert got(until=T0 + 200) == [ids[1], ids[0]]  # [200, 210] starts at until: not before it
    assert got(since=T0 + 100, until=T0 + 300) == [ids[2], ids[1]]
    moment = dt.datetime.fromtimestamp(T0 + 300, tz=dt.UTC)
    assert got(since=moment) == [ids[4], ids[3]]
    assert got(since=moment.replace(tzinfo=None)) == [ids[4], ids[3]]  # naive is UTC
    assert got(limit=2) == [ids[4], ids[3]]
    assert got(kind="window") == ids[::-1] and got(kind="hourly") == []
    for bad in ({"kind": "daily"}, {"limit": 0}, {"limit": 10001}, {"since": "yesterday"},
                {"since": float("nan")}, {"labels": {"bad key": "x"}}, {"labels": {"k": 1}}):
        with pytest.raises(ProfileError):
            store.list(**bad)  # type: ignore[arg-type]


# -- retention ------------------------------------------------------------------------------------------
def test_prune_by_age_removes_what_ended_before_the_retention(store: ProfileStore) -> None:
    day = 86400.0
    old = store.put(_window(NOW - 8 * day))
    edge = store.put(_window(NOW - 7 * day - 5, duration=10.0))  # ended 5 s inside the 7 days
    young = store.put(_window(NOW - 6 * day))
    report = store.prune(now=NOW)
    assert report.deleted_by_age == 1 and report.deleted_by_size == 0
    assert {r.id for r in store.list()} == {edge, young}
    with pytest.raises(UnknownProfile):
        store.get(old)
    assert _sql(store, "SELECT COUNT(*) FROM blobs")[0][0] == 2
    assert _sql(store, "SELECT COUNT(*) FROM labels WHERE profile_id = ?", (old,))[0][0] == 0
    assert store.prune(now=NOW).to_dict() == {"deleted_by_age": 0, "deleted_by_size": 0, "bytes_freed": 0,
                                              "bytes_left": store.stats()["bytes"]}


def test_prune_by_size_removes_the_oldest_until_under_the_limit(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "p")
    ids = [store.put(_window(NOW - 1000 + 10 * i, seed=i, labels={"i": str(i)})) for i in range(10)]
    sizes = {r.id: r.stored_bytes for r in store.list()}
    limit = sum(sizes[i] for i in ids[6:]) + 1  # room for the 4 newest (and 1 byte)
    small = ProfileStore(tmp_path / "p", max_bytes=limit)
    report = small.prune(now=NOW)
    assert report.deleted_by_age == 0 and report.deleted_by_size == 6
    assert [r.id for r in small.list()] == ids[:5:-1]
    assert report.bytes_left == small.stats()["bytes"] <= limit
    assert report.bytes_freed == sum(sizes[i] for i in ids[:6])


def test_aggregates_age_out_like_windows(store: ProfileStore) -> None:
    store.put(_window(T0))
    store.aggregate(now=NOW)
    assert [r.kind for r in store.list()] == ["hourly"]
    assert store.prune(now=T0 + 6 * 86400).deleted_by_age == 0
    assert store.prune(now=T0 + 8 * 86400).deleted_by_age == 1
    assert store.list() == [] and store.stats()["count"] == 0


# -- hourly aggregation ---------------------------------------------------------------------------------
def _fill(store: ProfileStore) -> dict[str, list[Profile]]:
    """Windows in four old buckets and two recent windows; returns the profiles put, by bucket name."""
    groups: dict[str, list[Profile]] = {"h0-trial1": [], "h0-trial2": [], "h0-pid2": [], "h1-trial1": [],
                                        "recent": []}

    def put(name: str, prof: Profile) -> None:
        store.put(prof)
        groups[name].append(prof)

    for i in range(6):
        put("h0-trial1", _window(T0 + 60 * i, seed=i, labels={"study": "s", "trial": "1"}))
    for i in range(3):
        put("h0-trial2", _window(T0 + 30 + 60 * i, seed=10 + i, labels={"study": "s", "trial": "2"}))
    put("h0-pid2", _window(T0 + 50, seed=20, labels={"study": "s", "trial": "1"}, pid=999))
    for i in range(2):
        put("h1-trial1", _window(T0 + 3600 + 600 * i, seed=30 + i, labels={"study": "s", "trial": "1"}, rate=50.0))
    put("recent", _window(NOW - 600, seed=40, labels={"study": "s", "trial": "1"}))
    put("recent", _window(NOW - 100, seed=41, labels={"study": "s", "trial": "1"}))
    return groups


def _aggregates(store: ProfileStore) -> dict[tuple[float, int | None, str], Profile]:
    return {(rollup.hour_of(r.start), r.pid, r.labels["trial"]): store.get(r.id) for r in store.list(kind="hourly")}


def _check_aggregated(store: ProfileStore, groups: dict[str, list[Profile]]) -> None:
    aggs = _aggregates(store)
    expected = {(T0, 4242, "1"): groups["h0-trial1"], (T0, 4242, "2"): groups["h0-trial2"],
                (T0, 999, "1"): groups["h0-pid2"], (T0 + 3600, 4242, "1"): groups["h1-trial1"]}
    assert set(aggs) == set(expected)
    for key, windows in expected.items():
        agg = aggs[key]
        assert _by_stack([agg]) == _by_stack(windows), key
        assert agg.total == sum(w.total for w in windows)
        assert agg.meta.engine == "merged" and agg.meta.mode == "cpu"
        assert agg.meta.labels == {"study": "s", "trial": key[2], "windows": str(len(windows))}
        assert agg.meta.start == min(w.meta.start for w in windows)
        assert agg.meta.duration_s == sum(w.meta.duration_s for w in windows)
    assert aggs[(T0 + 3600, 4242, "1")].meta.rate_hz == 50.0
    recent = store.list(kind="window")
    assert sorted(r.start for r in recent) == [NOW - 600, NOW - 100]
    assert store.stats()["samples"] == sum(p.total for ps in groups.values() for p in ps)


def test_aggregate_merges_old_windows_per_bucket_and_leaves_recent_ones(store: ProfileStore) -> None:
    groups = _fill(store)
    report = store.aggregate(now=NOW)
    assert report.aggregates == 4 and report.windows_merged == 12 and report.unreadable == ()
    _check_aggregated(store, groups)
    [row] = store.list({"trial": "2"})
    assert row.kind == "hourly" and row.windows == 3 and row.engine == "merged"
    assert row.start == T0 + 30 and row.end == T0 + 30 + 120 + 10
    assert store.list({"windows": "6"})[0].labels["trial"] == "1"


def test_aggregate_is_idempotent_and_extends_its_bucket_later(store: ProfileStore) -> None:
    groups = _fill(store)
    store.aggregate(now=NOW)
    before = {r.id: store.get(r.id).to_dict() for r in store.list()}
    assert store.aggregate(now=NOW).to_dict() == {"aggregates": 0, "windows_merged": 0, "unreadable": ()}
    assert {r.id: store.get(r.id).to_dict() for r in store.list()} == before
    # a window of hour 0 that arrives late joins the same aggregate (one per bucket, never two)
    late = _window(T0 + 3000, seed=50, labels={"study": "s", "trial": "1"})
    store.put(late)
    groups["h0-trial1"].append(late)
    agg_id = next(r.id for r in store.list({"trial": "1", "windows": "6"}))
    assert store.aggregate(now=NOW).windows_merged == 1
    assert store.list({"trial": "1", "windows": "7"})[0].id == agg_id
    _check_aggregated(store, groups)
    # and the recent windows merge once they are an hour old
    assert store.aggregate(now=NOW + 3600).windows_merged == 2
    assert store.list(kind="window") == []


def test_a_crash_between_writing_an_aggregate_and_deleting_its_windows_counts_nothing_twice(
        store: ProfileStore) -> None:
    groups = _fill(store)
    samples = store.stats()["samples"]
    calls: list[str] = []

    def crash_on_second(agg_id: str) -> None:
        calls.append(agg_id)
        if len(calls) == 2:
            raise RuntimeError("injected crash after the aggregate was written")

    store._after_aggregate_write = crash_on_second
    with pytest.raises(RuntimeError, match="injected"):
        store.aggregate(now=NOW)
    stats = store.stats()
    assert stats["samples"] == samples  # the first bucket moved, the second rolled back whole
    assert stats["hourly"] == 1 and stats["windows"] == 14 - _aggregated_windows(store)
    assert _sql(store, "SELECT COUNT(*) FROM profiles WHERE id = ?", (calls[1],))[0][0] == 0
    store._after_aggregate_write = None
    report = store.aggregate(now=NOW)
    assert report.aggregates == 3
    _check_aggregated(store, groups)
    assert store.aggregate(now=NOW).windows_merged == 0


def _aggregated_windows(store: ProfileStore) -> int:
    return sum(r.windows for r in store.list(kind="hourly"))


def test_a_process_killed_mid_aggregate_leaves_the_totals_exact(store: ProfileStore) -> None:
    groups = _fill(store)
    samples = store.stats()["samples"]
    script = (
        "import os, sys\n"
        "from collectors.profiler.store import ProfileStore\n"
        "store = ProfileStore(sys.argv[1])\n"
        "store._after_aggregate_write = lambda agg_id: os._exit(9)\n"
        f"store.aggregate(now={NOW!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(store.directory)], cwd=REPO, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert store.stats()["samples"] == samples and store.stats()["hourly"] == 0
    assert store.aggregate(now=NOW).aggregates == 4
    _check_aggregated(store, groups)


# -- refused input --------------------------------------------------------------------------------------
def test_an_unknown_id_is_a_404_that_names_it_and_how_to_list(store: ProfileStore) -> None:
    store.put(_window(T0))
    missing = "0" * 20
    for call in (store.get, store.delete):
        with pytest.raises(UnknownProfile) as info:
            call(missing)
        assert info.value.http_status == 404 and info.value.exit_code == 2
        assert missing in str(info.value) and "novatune profile list" in str(info.value)
    assert isinstance(info.value, ProfileError) and isinstance(info.value, LookupError)


@pytest.mark.parametrize("bad", ["../x", "1; DROP TABLE profiles", "", "A" * 20, "0" * 19, "0" * 21,
                                 "0" * 20 + "\n", "../../etc/passwd", "0" * 10 + "'--" + "0" * 7, None, 12])
def test_a_malformed_id_is_refused_before_it_reaches_sql(store: ProfileStore, bad: object) -> None:
    kept = store.put(_window(T0))
    for call in (store.get, store.delete):
        with pytest.raises(ProfileError) as info:
            call(bad)  # type: ignore[arg-type]
        assert not isinstance(info.value, UnknownProfile)
        assert "malformed" in str(info.value) and "20 lowercase hex digits" in str(info.value)
        assert info.value.http_status == 422
    assert [r.id for r in store.list()] == [kept]


def test_bad_labels_and_options_are_refused(tmp_path: Path, store: ProfileStore) -> None:
    for labels in ({"": "x"}, {"a b": "x"}, {"k": "v" * 1025}, {"k": "a\0b"}, {f"k{i}": "v" for i in range(65)}):
        with pytest.raises(ProfileError):
            store.put(_window(T0, labels=labels))
    with pytest.raises(ProfileError):
        store.put(_window(float("nan")))
    with pytest.raises(ProfileError):
        store.put("not a profile")  # type: ignore[arg-type]
    for options in ({"retention_days": 0}, {"max_bytes": 0}, {"max_bytes": 1.5}, {"aggregate_after_s": -1}):
        with pytest.raises(ProfileError):
            ProfileStore(tmp_path / "o", **options)  # type: ignore[arg-type]
    assert store.list() == []


def test_a_symlinked_database_or_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.write_bytes(b"")
    linked = tmp_path / "linked"
    linked.mkdir(mode=0o700)
    (linked / "profiles.db").symlink_to(elsewhere)
    with pytest.raises(UnsafeStore, match="symbolic link"):
        ProfileStore(linked)
    assert elsewhere.read_bytes() == b""
    real = tmp_path / "real"
    store = ProfileStore(real)
    (tmp_path / "alias").symlink_to(real)
    with pytest.raises(UnsafeStore, match="symbolic link"):
        ProfileStore(tmp_path / "alias")
    os.link(store.path, tmp_path / "hardlink.db")
    with pytest.raises(UnsafeStore, match="one link"):
        store.list()
    os.unlink(tmp_path / "hardlink.db")
    assert store.list() == []
    (real / "profiles.db-shm").unlink(missing_ok=True)
    (real / "profiles.db-shm").symlink_to(elsewhere)
    with pytest.raises(UnsafeStore) as info:
        store.put(_window(T0))
    assert info.value.http_status == 409
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeStore, match="writable by nobody else"):
        ProfileStore(shared)


# -- corrupted blobs ------------------------------------------------------------------------------------
def _set_blob(store: ProfileStore, pid: str, data: bytes, *, fix_checksum: bool) -> None:
    if fix_checksum:
        _sql(store, "UPDATE blobs SET data = ?, size = ?, sha256 = ? WHERE profile_id = ?",
             (data, len(data), hashlib.sha256(data).hexdigest(), pid))
    else:
        _sql(store, "UPDATE blobs SET data = ? WHERE profile_id = ?", (data, pid))


@pytest.mark.parametrize("damage", ["flipped byte", "not zlib", "not json", "not a profile", "truncated"])
def test_a_corrupted_blob_is_a_profile_error_naming_the_id_and_list_still_works(store: ProfileStore,
                                                                               damage: str) -> None:
    good = store.put(_window(T0 + 5, seed=1))
    bad = store.put(_window(T0, seed=2))
    [(data,)] = _sql(store, "SELECT data FROM blobs WHERE profile_id = ?", (bad,))
    assert isinstance(data, bytes)
    if damage == "flipped byte":
        _set_blob(store, bad, data[:10] + bytes([data[10] ^ 0xFF]) + data[11:], fix_checksum=False)
    elif damage == "not zlib":
        _set_blob(store, bad, b"garbage" * 10, fix_checksum=True)
    elif damage == "not json":
        _set_blob(store, bad, zlib.compress(b"{not json"), fix_checksum=True)
    elif damage == "not a profile":
        _set_blob(store, bad, zlib.compress(b'{"version": 1, "frames": [["f", "", 0, "alien"]]}'),
                  fix_checksum=True)
    else:
        _set_blob(store, bad, data[: len(data) // 2], fix_checksum=True)
    with pytest.raises(ProfileError, match=f"stored profile {bad} is corrupted") as info:
        store.get(bad)
    assert not isinstance(info.value, UnknownProfile)
    assert [r.id for r in store.list()] == [good, bad]
    assert store.get(good).total == _window(T0 + 5, seed=1).total
    report = store.aggregate(now=NOW)
    assert report.unreadable == (bad,) and report.windows_merged == 1
    assert {r.kind for r in store.list()} == {"hourly", "window"}  # the bad window stays for retention
    store.delete(bad)
    assert [r.kind for r in store.list()] == ["hourly"]


def test_a_file_that_is_not_a_database_is_a_profile_error(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    directory.mkdir(mode=0o700)
    (directory / "profiles.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(ProfileError, match="not a database"):
        ProfileStore(directory)


# -- concurrency ----------------------------------------------------------------------------------------
def test_a_writer_thread_and_reader_threads_run_side_by_side(store: ProfileStore) -> None:
    n = 150
    errors: list[BaseException] = []
    done = threading.Event()
    written: list[str] = []

    def writer() -> None:
        try:
            for i in range(n):
                written.append(store.put(_window(T0 + i, seed=i, labels={"trial": str(i % 5)})))
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
        finally:
            done.set()

    reads = Counter[str]()

    def reader() -> None:
        try:
            while not done.is_set():
                rows = store.list({"trial": "3"}, limit=20)
                reads["list"] += 1
                if rows:
                    assert store.get(rows[0].id).meta.labels["trial"] == "3"
                    reads["get"] += 1
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert reads["list"] > 0 and reads["get"] > 0
    assert store.stats()["count"] == n and len(set(written)) == n
    assert len(store.list({"trial": "3"}, limit=1000)) == n // 5


def test_a_writer_process_and_a_reader_aggregating_here(store: ProfileStore) -> None:
    script = (
        "import sys\n"
        "from tests.collectors.profiler.test_d_store import _window, T0\n"
        "from collectors.profiler.store import ProfileStore\n"
        "store = ProfileStore(sys.argv[1])\n"
        "for i in range(80):\n"
        "    store.put(_window(T0 + 30 * i, seed=i, labels={'trial': '1'}))\n"
    )
    expected = sum(_window(T0 + 30 * i, seed=i).total for i in range(80))
    child = subprocess.Popen([sys.executable, "-c", script, str(store.directory)], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    try:
        while child.poll() is None:
            store.aggregate(now=NOW)
            store.list({"trial": "1"})
        assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    store.aggregate(now=NOW)
    assert store.stats()["samples"] == expected
    assert [r.windows for r in store.list(kind="hourly")] == [80]  # all in hour 0: one aggregate
    assert store.list(kind="window") == []


# -- rollup ---------------------------------------------------------------------------------------------
def test_merge_windows_weights_by_duration_and_counts_windows() -> None:
    a = _window(T0, seed=1, rate=100.0, duration=30.0)
    b = _window(T0 + 40, seed=2, rate=10.0, duration=10.0)
    a.meta.errors, b.meta.errors = 1, 2
    a.meta.memory, b.meta.memory = [{"t": T0 + 1, "rss": 1.0}], [{"t": T0 + 41, "rss": 2.0}]
    merged = rollup.merge_windows([a, b])
    assert merged.meta.rate_hz == pytest.approx((100 * 30 + 10 * 10) / 40)
    assert merged.meta.overhead["pyspy_cpu_pct"] == pytest.approx((1.5 * 30 + 2.5 * 10) / 40)
    assert merged.meta.errors == 3 and merged.meta.labels["windows"] == "2"
    assert [m["rss"] for m in merged.meta.memory] == [1.0, 2.0]
    again = rollup.merge_windows([merged, _window(T0 + 60, seed=3)])
    assert again.meta.labels["windows"] == "3"
    assert rollup.bucket_key(again.meta, T0 + 5) == rollup.bucket_key(a.meta, T0)
    assert rollup.bucket_key(a.meta, T0) != rollup.bucket_key(a.meta, T0 + 3600)
    with pytest.raises(ValueError):
        rollup.merge_windows([])


def test_stats_count_bytes_oldest_newest(store: ProfileStore) -> None:
    assert store.stats()["count"] == 0 and store.stats()["oldest"] is None
    store.put(_window(T0, duration=10))
    store.put(_window(T0 + 100, duration=20))
    stats = store.stats()
    assert (stats["count"], stats["oldest"], stats["newest"]) == (2, T0, T0 + 120)
    assert stats["bytes"] == sum(r.stored_bytes for r in store.list()) > 0
    assert stats["file_bytes"] >= stats["bytes"]
