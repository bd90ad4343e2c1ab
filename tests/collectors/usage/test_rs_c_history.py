"""The usage store: round trip, downsampling that keeps the peaks, retention, imports, unknown targets, size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collectors.usage.errors import UnknownTarget, UsageStoreError
from collectors.usage.history import DAY, UsageStore
from collectors.usage.sampler import UsageSample
from optimizer.rightsizing.model import UsageSeries

NOW = 1_800_000_000.0


def sample(t: float, cpu: float = 0.5, mem: float = 1.0, *, oom: int = 0, thr: float = 0.0) -> UsageSample:
    return UsageSample(t=t, cpu_cores=cpu, mem_gib=mem, mem_usage_gib=mem * 1.5, cpu_capacity=2.0, mem_capacity=4.0,
                       throttled_ratio=thr, oom_kills=oom, psi_cpu=1.0, psi_memory=math.nan, psi_io=0.0,
                       psi_source="host")


@pytest.fixture
def store(tmp_path):
    return UsageStore(tmp_path / "usage.db", retention_days=30)


def test_samples_round_trip_into_the_shared_model_with_capacity_and_oom_events(store):
    store.add("cgroup:/a", [sample(NOW + i * 15, cpu=0.1 * i, mem=1 + i, oom=int(i == 2)) for i in range(4)])
    s = store.series("cgroup:/a")
    assert isinstance(s, UsageSeries) and s.target == "cgroup:/a"
    np.testing.assert_allclose(s.cpu_cores, [0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(s.mem_gib, [1, 2, 3, 4])
    assert s.current("cpu") == 2.0 and s.current("memory") == 4.0
    assert s.oom_times == (NOW + 30,)
    assert store.events("cgroup:/a") == [(NOW + 30, 1)]
    [info] = store.targets()
    assert (info.name, info.first_s, info.last_s, info.samples, info.source) == ("cgroup:/a", NOW, NOW + 45, 4,
                                                                                 "observe")
    assert info.psi_source == "host" and info.to_dict()["rows"] == 4
    df = store.frame("cgroup:/a")
    assert df["psi_cpu"].tolist() == [1.0] * 4 and df["psi_memory"].isna().all()
    assert df["mem_usage_gib"].iloc[-1] == pytest.approx(6.0)
    assert store.series("cgroup:/a", since=NOW + 10, until=NOW + 31).t.tolist() == [NOW + 15, NOW + 30]


def test_an_unknown_target_is_a_404_naming_what_is_stored(store):
    store.add("cgroup:/a", [sample(NOW)])
    for call in (store.series, store.frame, store.events, store.delete):
        with pytest.raises(UnknownTarget, match="cgroup:/a") as exc:
            call("cgroup:/nope")
        assert exc.value.http_status == 404
    store.delete("cgroup:/a")
    assert store.targets() == []


def test_downsampling_keeps_the_peak_of_memory_and_the_mean_of_cpu(store):
    start = NOW - 20 * DAY  # 20 days ago: some becomes 1-hour buckets, some 5-minute, the last 2 days stay raw
    ts = np.arange(start, NOW, 60.0)
    cpu = np.where(np.arange(len(ts)) % 2 == 0, 1.0, 0.0)  # mean 0.5 in every bucket
    mem = np.ones(len(ts))
    spike = len(ts) // 10  # a one-minute memory spike 18 days ago
    mem[spike] = 7.5
    store.add("cgroup:/a", [sample(float(t), float(c), float(m)) for t, c, m in zip(ts, cpu, mem, strict=True)])
    folded = store.downsample(NOW)
    assert folded["raw_to_5min"] > 0 and folded["5min_to_1h"] > 0
    df = store.frame("cgroup:/a")
    assert set(df["res_s"]) == {0.0, 300.0, 3600.0}
    assert df[df["res_s"] == 0]["t"].min() >= NOW - 2 * DAY - 300
    assert df[df["res_s"] == 3600]["t"].max() < NOW - 14 * DAY
    s = store.series("cgroup:/a")
    assert s.mem_gib.max() == 7.5  # the peak survived two foldings
    assert s.t[np.argmax(s.mem_gib)] == pytest.approx(ts[spike], abs=3600)
    hourly = df[df["res_s"] == 3600]
    np.testing.assert_allclose(hourly["cpu_cores"], 0.5, atol=0.02)
    assert (hourly["cpu_cores_max"] == 1.0).all() and (hourly["n"] == 60).all()
    assert store.targets()[0].samples == len(ts)  # every raw sample still counted
    before = len(df)
    store.downsample(NOW)  # idempotent: nothing left to fold
    assert len(store.frame("cgroup:/a")) == before


def test_a_late_sample_merges_into_its_existing_bucket(store):
    store.add("cgroup:/a", [sample(NOW - 3 * DAY + i, cpu=1.0, mem=1.0) for i in range(3)])
    store.downsample(NOW)
    store.add("cgroup:/a", [sample(NOW - 3 * DAY + 10, cpu=0.0, mem=9.0)])
    store.downsample(NOW)
    df = store.frame("cgroup:/a")
    assert len(df) == 1 and df["n"].iloc[0] == 4
    assert df["cpu_cores"].iloc[0] == pytest.approx(0.75) and df["mem_gib_max"].iloc[0] == 9.0


def test_retention_prunes_old_history_and_empty_targets(store):
    store.add("cgroup:/old", [sample(NOW - 40 * DAY)])
    store.add("cgroup:/a", [sample(NOW - 40 * DAY, oom=1), sample(NOW - 29 * DAY), sample(NOW)])
    assert store.prune(NOW) == 2
    assert [i.name for i in store.targets()] == ["cgroup:/a"]
    assert store.series("cgroup:/a").t.tolist() == [NOW - 29 * DAY, NOW]
    assert store.events("cgroup:/a") == []


def test_an_import_is_stored_under_its_name_and_source(store):
    s = UsageSeries("vm-1", t=[NOW, NOW + 300], cpu_cores=[1.0, 2.0], mem_gib=[3.0, 4.0], cpu_capacity=[4.0, 4.0],
                    oom_times=(NOW + 300,))
    assert store.import_series(s, source="csv") == 2
    assert store.import_series(s, source="csv") == 2  # again: replaced, not doubled
    back = store.series("vm-1")
    np.testing.assert_allclose(back.mem_gib, [3.0, 4.0])
    assert back.current("cpu") == 4.0 and back.current("memory") is None and back.oom_times == (NOW + 300,)
    assert store.targets()[0].source == "csv" and store.targets()[0].samples == 2


def test_an_imported_trace_keeps_its_age_and_resolution(store):
    """A 2013 trace imported today is not 10 years past retention: only observed history ages."""
    t = NOW - 4000 * DAY + 300.0 * np.arange(600)
    cpu = np.where(np.arange(600) % 50 == 0, 8.0, 1.0)  # 5-minute spikes an hourly mean would flatten
    store.import_series(UsageSeries("vm-2013", t=t, cpu_cores=cpu, mem_gib=np.full(600, 2.0)), source="csv")
    store.add("cgroup:/live", [sample(NOW - 100 * DAY), sample(NOW)])
    store.downsample(NOW)
    assert store.prune(NOW) == 1  # the observed sample past retention, not the import
    back = store.series("vm-2013")
    assert back.t.tolist() == t.tolist() and back.cpu_cores.max() == 8.0
    assert store.series("cgroup:/live").t.tolist() == [NOW]


def test_the_store_file_must_be_a_private_regular_file(tmp_path):
    (tmp_path / "real.db").write_bytes(b"")
    (tmp_path / "usage.db").symlink_to(tmp_path / "real.db")
    with pytest.raises(UsageStoreError, match="symbolic link"):
        UsageStore(tmp_path / "usage.db")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(UsageStoreError, match="not a database"):
        UsageStore(tmp_path / "junk.db")


@pytest.mark.slow
def test_the_store_stays_bounded_at_the_default_retention(tmp_path):
    """90 days of one target at a 15 s interval (518 400 samples) fold into raw 2 days + 12 days of 5 min +
    76 days of 1 h: at most ~14 000 rows, under 3 MB on disk."""
    st = UsageStore(tmp_path / "usage.db", retention_days=90)
    step = 15.0
    for day in range(95):
        t0 = NOW - (95 - day) * DAY
        st.add("cgroup:/a", [sample(t0 + i * step, cpu=(i % 7) / 7, mem=1 + (i % 11) / 11)
                             for i in range(int(DAY / step))])
        st.downsample(t0 + DAY)
        st.prune(t0 + DAY)
    rows = st.targets()[0].rows
    assert rows <= int(2 * DAY / step) + 12 * 288 + 76 * 24 + 3 * 24
    assert st.file_bytes() < 3 * 2**20, st.file_bytes()
    assert st.series("cgroup:/a").mem_gib.max() == pytest.approx(2.0, abs=0.1)


def test_a_held_connection_serves_one_thread_and_batches_write_together(store):
    import threading

    with store.held():
        assert store.add_batch({"cgroup:/a": [sample(NOW)], "cgroup:/b": [sample(NOW), sample(NOW + 1)],
                                "cgroup:/c": []}) == 3
        seen = []
        reader = threading.Thread(target=lambda: seen.append([i.name for i in store.targets()]))
        reader.start()
        reader.join()
        assert seen == [["cgroup:/a", "cgroup:/b"]]  # another thread reads what the held connection committed
    assert [i.samples for i in store.targets()] == [1, 2]
