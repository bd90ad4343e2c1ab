"""Importing from a REAL Prometheus server on 127.0.0.1 that scrapes itself (Debian's prometheus package, unpacked:
PROMETHEUS=/path/to/prometheus, else PATH). Outside CI a missing binary skips; under CI (CI set) it fails."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from collectors.usage.errors import PrometheusError, PrometheusUnreachable, UsageError
from collectors.usage.history import UsageStore
from collectors.usage.promimport import import_prometheus, query_range

from .conftest import CPU_Q, MEM_Q, free_port, run_prometheus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    yield from run_prometheus(tmp_path_factory.mktemp("prom"))


def test_a_cpu_and_a_memory_query_become_one_usage_series_and_are_stored(prometheus, tmp_path):
    end = time.time()
    s = import_prometheus(prometheus, target="prom-self", query_cpu=CPU_Q, query_mem=MEM_Q, start=end - 30,
                          end=end, step=1)
    assert s.target == "prom-self" and len(s) >= 6
    assert (np.diff(s.t) == 1).all()
    assert ((s.cpu_cores >= 0) & (s.cpu_cores < 4)).all()
    # prometheus's own resident memory: tens of MiB, in GiB
    assert (s.mem_gib > 10 / 1024).all() and (s.mem_gib < 2).all()
    _, rss = query_range(prometheus, MEM_Q, start=end - 30, end=end, step=1)
    assert s.mem_gib.max() == pytest.approx(rss.max() / 2**30)
    store = UsageStore(tmp_path / "usage.db")
    assert store.import_series(s, source="prometheus") == len(s)
    [info] = store.targets()
    assert (info.name, info.source, info.samples) == ("prom-self", "prometheus", len(s))
    np.testing.assert_allclose(store.series("prom-self").mem_gib, s.mem_gib)


def test_a_long_range_is_split_into_requests_prometheus_accepts(prometheus, monkeypatch):
    import collectors.usage.promimport as pi

    end = time.time()
    whole = query_range(prometheus, MEM_Q, start=end - 20, end=end, step=1)
    calls = []
    real = pi._one_request
    monkeypatch.setattr(pi, "MAX_POINTS", 3)
    monkeypatch.setattr(pi, "_one_request", lambda *a: calls.append(a) or real(*a))
    t, v = query_range(prometheus, MEM_Q, start=end - 20, end=end, step=1)
    assert len(t) > 3 and len(calls) == 7  # 21 points, 3 per request
    np.testing.assert_array_equal(t, whole[0])
    np.testing.assert_array_equal(v, whole[1])


def test_errors_carry_prometheus_text_or_say_what_is_missing(prometheus):
    end = time.time()
    with pytest.raises(PrometheusError, match=r"refused the query .*bad_data.*parse error") as exc:
        query_range(prometheus, "rate(", start=end - 10, end=end, step=1)
    assert exc.value.http_status == 422
    with pytest.raises(PrometheusError, match="no samples"):
        query_range(prometheus, "nt_rs_c_no_such_metric", start=end - 10, end=end, step=1)
    with pytest.raises(PrometheusError, match="several series"):
        query_range(prometheus, "prometheus_http_requests_total", start=end - 10, end=end, step=1)
    with pytest.raises(PrometheusUnreachable, match="does not answer") as gone:
        query_range(f"http://127.0.0.1:{free_port()}", MEM_Q, start=end - 10, end=end, step=1)
    assert gone.value.http_status == 409
    with pytest.raises(UsageError, match="loopback"):
        query_range("http://192.0.2.1:9090", MEM_Q, start=end - 10, end=end, step=1)
    with pytest.raises(UsageError, match="start < end"):
        query_range(prometheus, MEM_Q, start=end, end=end - 10, step=1)
