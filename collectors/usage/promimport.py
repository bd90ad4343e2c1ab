"""Import a target's usage history from Prometheus: two range queries, one per resource.

:func:`import_prometheus` runs ``query_cpu`` (its value must be CPU **cores** used, e.g.
``sum(rate(container_cpu_usage_seconds_total{pod="web"}[5m]))`` or ``rate(process_cpu_seconds_total[1m])``) and
``query_mem`` (its value must be memory **bytes**, best the working set: ``container_memory_working_set_bytes``,
``process_resident_memory_bytes``) over the same ``start``/``end``/``step`` and joins them at the sample times
both answered into one :class:`~optimizer.rightsizing.model.UsageSeries` named ``target``. One query per resource
(rather than one query with a label telling the resources apart) keeps each query an ordinary PromQL expression
the user has already graphed. Each query must give exactly one series: several (one per pod, per CPU) are an
error that names them and suggests ``sum(...)``.

:func:`query_range` is one ``GET /api/v1/query_range`` (the HTTP API's JSON, matrix result), split into requests
of at most :data:`MAX_POINTS` steps (Prometheus refuses more than 11 000 points per series). The request follows
the outbound rule of :mod:`collectors.passive.http_probe` (loopback, or a host in ``allowed_probe_hosts``).

Errors: an unreachable server is :class:`PrometheusUnreachable`; a refused query is :class:`PrometheusError`
carrying Prometheus's own ``errorType`` and ``error`` text (cut at 300 characters); an empty result, several
series, or an answer that is not the API's are :class:`PrometheusError` too. NaN and infinite values are dropped.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlencode

import numpy as np

from collectors.errors import CollectorError
from collectors.passive.http_probe import check_url, fetch
from collectors.usage.errors import PrometheusError, PrometheusUnreachable, UsageError
from optimizer.rightsizing.model import UsageSeries

__all__ = ["MAX_POINTS", "MAX_RESPONSE_BYTES", "import_prometheus", "query_range"]

MAX_POINTS = 10_000
MAX_RESPONSE_BYTES = 64 << 20
_GIB = float(1 << 30)


def _check_window(start: float, end: float, step: float) -> None:
    for name, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UsageError(f"Prometheus {name} must be a finite number of Unix seconds, got {v!r}")
    if step <= 0 or end <= start:
        raise UsageError(f"Prometheus range needs start < end and step > 0, got start={start}, end={end}, step={step}")
    if (end - start) / step > 1_000_000:
        raise UsageError(f"Prometheus range of {(end - start) / step:.0f} steps is over 1000000: use a larger step")


def _one_request(url: str, query: str, start: float, end: float, step: float, timeout: float,
                 allowed_hosts: tuple[str, ...]) -> list[dict[str, object]]:
    qs = urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    full = f"{url.rstrip('/')}/api/v1/query_range?{qs}"
    try:
        status, body = fetch(full, timeout_s=timeout, allowed_hosts=allowed_hosts, max_bytes=MAX_RESPONSE_BYTES)
    except CollectorError as err:
        raise PrometheusUnreachable(f"Prometheus at {url} does not answer: {err}") from None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PrometheusError(f"Prometheus at {url}: HTTP {status}, the answer is not the HTTP API's JSON "
                              "(is the URL the server's base, e.g. http://127.0.0.1:9090?)") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        detail = doc if isinstance(doc, dict) else {}
        raise PrometheusError(f"Prometheus refused the query {query!r} (HTTP {status}, "
                              f"{str(detail.get('errorType', 'error'))[:40]}): {str(detail.get('error', ''))[:300]}")
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise PrometheusError(f"Prometheus answered {query!r} with no matrix result (a range query of an instant "
                              "vector expression is what is needed)")
    return list(data["result"])


def _label(metric: object) -> str:
    if not isinstance(metric, dict) or not metric:
        return "{}"
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()))[:200] + "}"


def query_range(url: str, query: str, *, start: float, end: float, step: float, timeout: float = 10.0,
                allowed_hosts: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The one series ``query`` gives over ``[start, end]`` every ``step`` seconds: (times, values), finite values
    only, times increasing.

    Raises:
        UsageError: a bad window, or a URL the outbound rule refuses.
        PrometheusUnreachable: no answer from the server.
        PrometheusError: Prometheus refused the query (its error text), the result is empty or holds several series.
    """
    _check_window(start, end, step)
    try:
        check_url(url, allowed_hosts=allowed_hosts, what="Prometheus URL")
    except CollectorError as err:
        raise UsageError(str(err)) from None
    points: dict[float, float] = {}
    labels: set[str] = set()
    lo = float(start)
    while lo <= end:
        hi = min(float(end), lo + step * (MAX_POINTS - 1))
        for item in _one_request(url, query, lo, hi, step, timeout, allowed_hosts):
            labels.add(_label(item.get("metric") if isinstance(item, dict) else None))
            if len(labels) > 1:
                shown = ", ".join(sorted(labels)[:3])
                raise PrometheusError(f"the query {query!r} gives several series ({shown}, ...): one is needed per "
                                      "resource; aggregate them, e.g. sum(...)")
            values = item.get("values") if isinstance(item, dict) else None
            for pair in values if isinstance(values, list) else []:
                try:
                    t, v = float(pair[0]), float(pair[1])
                except (TypeError, ValueError, IndexError):
                    raise PrometheusError(f"Prometheus answered {query!r} with a bad point {pair!r:.80}") from None
                if math.isfinite(v):
                    points[t] = v
        lo = hi + step
    if not points:
        raise PrometheusError(f"the query {query!r} gives no samples between {start:.0f} and {end:.0f} (a wrong "
                              "metric or label, or a range the server does not hold)")
    ts = np.array(sorted(points))
    return ts, np.array([points[t] for t in ts])


def import_prometheus(url: str, *, target: str, query_cpu: str, query_mem: str, start: float, end: float,
                      step: float, timeout: float = 10.0, allowed_hosts: tuple[str, ...] = ()) -> UsageSeries:
    """``target``'s history from a CPU-cores query and a memory-bytes query (see the module doc).

    Raises:
        UsageError: an empty target name, a bad window or URL.
        PrometheusUnreachable, PrometheusError: see :func:`query_range`; also no sample time both queries
            answered, or negative values.
    """
    if not isinstance(target, str) or not target.strip() or len(target) > 200:
        raise UsageError(f"a Prometheus import needs a target name (1..200 characters), got {target!r}")
    t_cpu, cpu = query_range(url, query_cpu, start=start, end=end, step=step, timeout=timeout,
                             allowed_hosts=allowed_hosts)
    t_mem, mem = query_range(url, query_mem, start=start, end=end, step=step, timeout=timeout,
                             allowed_hosts=allowed_hosts)
    common, i_cpu, i_mem = np.intersect1d(t_cpu, t_mem, assume_unique=True, return_indices=True)
    if len(common) == 0:
        raise PrometheusError("the CPU and memory queries share no sample time; give both the same step")
    for name, v in (("CPU", cpu), ("memory", mem)):
        if (v < 0).any():
            raise PrometheusError(f"the {name} query gives negative values (min {v.min():g}); usage is >= 0")
    return UsageSeries(target=target, t=common, cpu_cores=cpu[i_cpu], mem_gib=mem[i_mem] / _GIB)
