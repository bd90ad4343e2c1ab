"""Passive targets against servers the test starts on 127.0.0.1."""

from __future__ import annotations

import http.server
import math
import threading
import time

import pytest

from collectors.errors import CollectorError
from collectors.passive.http_probe import probe
from collectors.passive.scrape import parse_exposition, scrape

EXPOSITION = """# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200"} 1027
app_requests_total{code="500"} 3
# HELP app_inflight In-flight requests.
# TYPE app_inflight gauge
app_inflight 4
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.02)
        if self.path == "/fail":
            self.send_response(503)
            self.end_headers()
            return
        body = EXPOSITION.encode() if self.path == "/metrics" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_probe_measures_latency_percentiles(server):
    r = probe(f"{server}/slow", count=20, duration_s=10)
    assert r.requests == 20 and r.errors == 0
    assert 20 <= r.latency_p50_ms <= r.latency_p95_ms <= r.latency_p99_ms  # the handler sleeps 20 ms


def test_probe_counts_failures_and_is_bounded_in_time(server):
    r = probe(f"{server}/fail", count=10, duration_s=10)
    assert r.requests == 0 and r.errors == 10 and r.error_rate == 1.0
    assert math.isnan(r.latency_p50_ms) and r.last_error == "HTTP 503"
    t0 = time.monotonic()
    r = probe(f"{server}/slow", count=100_000, duration_s=0.3)
    assert time.monotonic() - t0 < 2 and 0 < r.requests < 100_000


def test_probe_of_nothing_listening_reports_errors():
    r = probe("http://127.0.0.1:9/", count=3, duration_s=5, timeout_s=0.5)
    assert r.requests == 0 and r.errors == 3 and r.last_error


def test_probe_of_a_refused_port_is_paced_not_a_busy_loop():
    t0 = time.monotonic()
    r = probe("http://127.0.0.1:9/", count=100_000, duration_s=0.5, timeout_s=0.5)
    assert r.requests == 0 and 1 <= r.errors <= 15, r.errors  # >= 50 ms between attempts
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:80", "http:///x"])
def test_bad_urls_are_refused(url):
    with pytest.raises(CollectorError, match="URL"):
        probe(url)
    with pytest.raises(CollectorError, match="URL"):
        scrape(url)


def test_scrape_a_targets_own_metrics(server):
    got = scrape(f"{server}/metrics")
    assert got['app_requests_total{code="200"}'] == 1027 and got["app_inflight"] == 4
    assert scrape(f"{server}/metrics", include=("app_inflight",)) == {"app_inflight": 4.0}


def test_scrape_errors_are_clear(server):
    with pytest.raises(CollectorError, match="HTTP 503"):
        scrape(f"{server}/fail")
    with pytest.raises(CollectorError, match="not Prometheus text"):
        parse_exposition("this is { not metrics")
