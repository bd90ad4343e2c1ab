"""How often ``lstat`` reports a file with no link while another thread unlinks it.

    python3 benchmarks/lstat_unlink_race.py [--seconds 3]

One thread creates and unlinks a file in a loop (what SQLite does to a database's ``-shm`` and ``-wal``
when its last connection closes); this one ``lstat``s the path for ``--seconds``. It prints the stats that
found the file and how many of those said ``st_nlink == 0``: a file being removed, which
:mod:`collectors.sqlitefile` must not take for a hard link. Writes only a file in a new temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path


def measure(seconds: float) -> tuple[int, int]:
    """(stats that found the file, of which with nlink 0)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "churn"
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                os.unlink(path)

        t = threading.Thread(target=churn)
        t.start()
        found = zero = 0
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                found += 1
                zero += st.st_nlink == 0
        finally:
            stop.set()
            t.join(timeout=10)
    return found, zero


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    found, zero = measure(min(max(args.seconds, 0.1), 60.0))
    print(f"lstat found the file {found} times; {zero} of them with st_nlink == 0 ({100 * zero / max(found, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
