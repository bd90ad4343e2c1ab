"""Scrape a target's own Prometheus metrics (text exposition) into flat samples."""

from __future__ import annotations

import urllib.error
import urllib.request

from collectors.errors import CollectorError
from collectors.passive.http_probe import check_http_url

__all__ = ["parse_exposition", "scrape"]


def parse_exposition(text: str, *, include: tuple[str, ...] = ()) -> dict[str, float]:
    """``{'name{label="v",...}': value}`` for every sample (only names starting with ``include``, if given).

    Raises:
        CollectorError: the text is not Prometheus exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if include and not s.name.startswith(include):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    except (ValueError, TypeError) as err:
        raise CollectorError(f"not Prometheus text exposition: {err}") from err
    return out


def scrape(url: str, *, timeout_s: float = 5.0, include: tuple[str, ...] = ()) -> dict[str, float]:
    """GET ``url`` (a /metrics endpoint) and parse it.

    Raises:
        CollectorError: bad URL, the endpoint cannot be reached or answers non-2xx, or the body is not an exposition.
    """
    check_http_url(url, "scrape URL must be http(s)://HOST[:PORT]/metrics")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        raise CollectorError(f"scrape {url}: HTTP {err.code}") from err
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise CollectorError(f"scrape {url}: {getattr(err, 'reason', err)}") from err
    return parse_exposition(body, include=include)
