"""One dispatch per output format, and a profile named by a stored id or a file.

Formats: ``collapsed`` (with a ``#`` JSON metadata line when asked), ``speedscope`` (its file schema),
``pprof`` (gzipped ``profile.proto``), ``svg`` and ``html`` flamegraphs (self-contained, offline), ``json``
(the canonical document). Diffs: ``svg``, ``html``, ``json``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.store import ID_PATTERN, ProfileStore

__all__ = ["DIFF_FORMATS", "FORMATS", "MEDIA_TYPES", "load", "render", "render_diff"]

FORMATS = ("collapsed", "speedscope", "pprof", "svg", "html", "json")
DIFF_FORMATS = ("svg", "html", "json")
MEDIA_TYPES = {
    "collapsed": "text/plain; charset=utf-8",
    "speedscope": "application/json",
    "pprof": "application/octet-stream",
    "svg": "image/svg+xml",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}
#: a profile file larger than this is refused
MAX_FILE_BYTES = 256 * 1024 * 1024


def _check(fmt: str, allowed: tuple[str, ...], what: str) -> None:
    if fmt not in allowed:
        raise ProfileError(f"unknown {what} format {fmt!r}; allowed: {', '.join(allowed)}")


def render(profile: Profile, fmt: str, *, title: str = "", header: bool = False) -> bytes:
    """``profile`` in format ``fmt`` (see :data:`FORMATS`).

    Raises:
        ProfileError: an unknown format.
    """
    _check(fmt, FORMATS, "profile")
    if fmt == "collapsed":
        from collectors.profiler.formats import collapsed

        return collapsed.dumps(profile, header=header).encode()
    if fmt == "speedscope":
        from collectors.profiler.formats import speedscope

        return speedscope.dumps(profile).encode()
    if fmt == "pprof":
        from collectors.profiler.formats import pprof

        return pprof.dumps(profile)
    if fmt == "json":
        from collectors.profiler.formats import jsonfmt

        return jsonfmt.dumps(profile).encode()
    from collectors.profiler.flamegraph import render_html, render_svg

    return (render_svg if fmt == "svg" else render_html)(profile, title=title or "novatune profile").encode()


def render_diff(base: Profile, target: Profile, fmt: str, *, title: str = "", noise_pct: float = 0.5) -> bytes:
    """The differential flamegraph of ``target`` against ``base`` (shares, so rates and durations compare).

    Raises:
        ProfileError: an unknown diff format, or a noise threshold outside 0..50 %.
    """
    _check(fmt, DIFF_FORMATS, "diff")
    if not 0 <= noise_pct <= 50:
        raise ProfileError(f"noise threshold {noise_pct:g} % is out of range; allowed: 0 to 50 %")
    from collectors.profiler.diff import diff, render_diff_html, render_diff_svg

    d = diff(base, target, noise_pct=noise_pct)  # thread roots merged (their ids differ between runs)
    if fmt == "json":
        return json.dumps(d.to_dict(), indent=1).encode()
    renderer = render_diff_svg if fmt == "svg" else render_diff_html
    return renderer(d, title=title or "novatune differential flamegraph").encode()


def _from_bytes(data: bytes, source: str) -> Profile:
    if data[:2] == b"\x1f\x8b":
        from collectors.profiler.formats import pprof

        return pprof.loads(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{source} is neither text nor a gzipped pprof profile") from None
    if text.lstrip().startswith("{"):
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProfileError(f"{source} looks like JSON but is not: {err}") from None
        if isinstance(doc, dict) and "speedscope" in str(doc.get("$schema", "")):
            from collectors.profiler.formats import speedscope

            return speedscope.loads(text)
        return Profile.from_dict(doc)
    from collectors.profiler.formats import collapsed

    return collapsed.loads(text)


def load(ref: str, store: ProfileStore | None, *, files: bool = True) -> Profile:
    """The profile ``ref`` names: a stored id (20 hex digits), else (when ``files``) a file holding collapsed
    stacks, speedscope JSON, a gzipped pprof profile or novatune's JSON.

    Raises:
        UnknownProfile: an id that is not stored.
        ProfileError: neither an id nor (with ``files``) a readable profile file.
    """
    if ID_PATTERN.match(ref) and store is not None and not (files and Path(ref).exists()):
        return store.get(ref)
    if not files:
        raise ProfileError(f"{ref!r} is not a profile id (20 hex digits, as `novatune profile list` shows)")
    path = Path(ref)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ProfileError(f"{ref}: {size} bytes; a profile file of at most {MAX_FILE_BYTES} bytes is read")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{ref!r} is neither a stored profile id (see `novatune profile list`) nor an existing "
                           "file (collapsed, speedscope, pprof or novatune JSON)") from None
    except (IsADirectoryError, PermissionError, OSError) as err:
        raise ProfileError(f"cannot read profile file {ref}: {err.strerror or err}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            raise ProfileError(f"{ref}: a gzip file that does not decompress") from None
        try:  # a gzipped collapsed or JSON file; else (binary inside) pprof
            inner.decode("utf-8")
            data = inner
        except UnicodeDecodeError:
            pass
    try:
        return _from_bytes(data, ref)
    except ProfileError as err:  # the reader's complaint, with the file it is about (diff reads two)
        if str(err).startswith(ref):
            raise
        raise ProfileError(f"{ref}: not a profile file: {err}") from None
