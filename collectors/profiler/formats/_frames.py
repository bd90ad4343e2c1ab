"""What the speedscope and pprof codecs share: a frame's display name (kernel frames keep perf's ``_[k]``
suffix, so a reader that colours by it still can) and the frame a ``(name, file, line)`` triple read back
from a file stands for.
"""

from __future__ import annotations

from collectors.profiler.model import Frame, FrameKind, parse_frame

__all__ = ["frame_name", "frame_of"]

_PYTHON_SUFFIXES = (".py", ".pyx", ">")


def frame_name(frame: Frame) -> str:
    """The name a file format shows for ``frame``: its function, ``_[k]`` appended for a kernel frame."""
    return frame.function + "_[k]" if frame.kind == "kernel" else frame.function


def frame_of(name: str, file: str, line: int) -> Frame:
    """The frame a file's ``(name, file, line)`` stands for; never raises.

    With a file: a Python frame when the file is Python source (``.py``, ``.pyx``, ``<string>``-like), else
    a native one (a C or Go frame in a pprof file has a line too).
    Without one: a ``thread``/``process``/``kernel`` frame when the name has that shape, else ``other``.
    """
    line = max(int(line), 0)
    if file:
        kind: FrameKind = "python" if file.endswith(_PYTHON_SUFFIXES) else "native"
        return Frame(function=name, file=file, line=line, kind=kind)
    shaped = parse_frame(name)
    if shaped.kind in ("thread", "process", "kernel"):
        return shaped
    return Frame(function=name, file="", line=line, kind="other")
