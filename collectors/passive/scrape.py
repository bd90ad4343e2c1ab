"""Scrape a target's own Prometheus metrics (text exposition) into flat samples.

The request goes through :func:`collectors.passive.http_probe.fetch` (the outbound rule: loopback or
an allowed host, no redirects followed); errors name the status code or the exception class, never
the body's text.
"""

from __future__ import annotations

from collectors.errors import CollectorError
from collectors.passive.http_probe import check_url, fetch

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
    except (ValueError, TypeError) as err:  # the parser's message quotes the offending line: not repeated
        raise CollectorError(f"not Prometheus text exposition ({type(err).__name__} from the parser)") from None
    return out


#: the most of an exposition read (a larger one is cut, and then fails to parse)
MAX_EXPOSITION_BYTES = 32 << 20


def scrape(
    url: str, *, timeout_s: float = 5.0, include: tuple[str, ...] = (), allowed_hosts: tuple[str, ...] = (),
) -> dict[str, float]:
    """GET ``url`` (a /metrics endpoint) and parse it.

    Raises:
        CollectorError: the URL breaks the outbound rule, the endpoint cannot be reached or answers
            other than 2xx (redirects are not followed), or the body is not an exposition.
    """
    check_url(url, allowed_hosts=allowed_hosts, what="scrape URL")
    try:
        status, raw = fetch(url, timeout_s=timeout_s, allowed_hosts=allowed_hosts, max_bytes=MAX_EXPOSITION_BYTES)
    except CollectorError as err:
        raise CollectorError(f"scrape {err}") from None
    if not 200 <= status < 300:
        why = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise CollectorError(f"scrape {url}: HTTP {status}{why}")
    try:
        return parse_exposition(raw.decode("utf-8", errors="replace"), include=include)
    except CollectorError as err:
        raise CollectorError(f"scrape {url}: {err}") from None
