"""Where a tuner's history lives: ``<data dir>/autotune/<id>/`` with ``meta.json`` (options, spec, state,
rewritten atomically) and ``history.jsonl`` (one line per cycle and per step, appended and fsynced), so a
restart (of the CLI or the service) reads back everything that happened, and a torn last line is skipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from experiments.autotune.model import FINAL, AutotuneNotFound
from experiments.safefs import write_file
from experiments.settings import Paths

__all__ = ["TunerStore", "list_tuners", "new_tuner_id"]

_ID = re.compile(r"^at-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
_STEP = re.compile(r"^(at-[0-9]{8}-[0-9]{6}-[0-9a-f]{4})-s[0-9]{1,6}$")


def new_tuner_id() -> str:
    """``at-YYYYmmdd-HHMMSS-xxxx`` (UTC; sorts by start)."""
    return time.strftime("at-%Y%m%d-%H%M%S", time.gmtime()) + f"-{secrets.token_hex(2)}"


def root(paths: Paths) -> Path:
    return paths.home / "autotune"


class TunerStore:
    """One tuner's directory. ``create`` makes it; opening an unknown id raises AutotuneNotFound."""

    def __init__(self, paths: Paths, tuner_id: str, *, create: bool = False) -> None:
        if not _ID.match(tuner_id):
            raise AutotuneNotFound(f"no continuous tuner {tuner_id!r} (ids look like at-20260101-120000-ab12; "
                                   "see `novatune autotune status`)")
        self.id = tuner_id
        self.dir = root(paths) / tuner_id
        if create:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        elif not (self.dir / "meta.json").is_file():
            raise AutotuneNotFound(f"no continuous tuner {tuner_id!r}; see `novatune autotune status`")

    @property
    def history_file(self) -> Path:
        return self.dir / "history.jsonl"

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Replace meta.json atomically (readers see the old or the new one)."""
        write_file(self.dir / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str).encode(),
                   mode=0o600)

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"id": self.id, "state": "failed", "reason": "meta.json unreadable"}
        return data if isinstance(data, dict) else {"id": self.id, "state": "failed"}

    def update(self, **fields: Any) -> dict[str, Any]:
        meta = self.meta() | fields | {"updated": time.time()}
        self.write_meta(meta)
        return meta

    def append(self, record: dict[str, Any]) -> None:
        """One history line, fsynced before returning."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self) -> list[dict[str, Any]]:
        """Every record in order; a torn or corrupt line (a crash mid-write) is skipped."""
        out: list[dict[str, Any]] = []
        try:
            text = self.history_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def steps(self) -> list[dict[str, Any]]:
        return [r for r in self.history() if r.get("record") == "step"]

    def cycles(self) -> list[dict[str, Any]]:
        return [r for r in self.history() if r.get("record") == "cycle"]


def list_tuners(paths: Paths) -> list[dict[str, Any]]:
    """Every tuner's meta, newest first; a tuner whose process died without a final state says so."""
    d = root(paths)
    if not d.is_dir():
        return []
    out = []
    for sub in sorted(d.iterdir(), reverse=True):
        if not _ID.match(sub.name) or not (sub / "meta.json").is_file():
            continue
        meta = TunerStore(paths, sub.name).meta()
        pid = meta.get("pid")
        if meta.get("state") not in FINAL and isinstance(pid, int) and not _alive(pid):
            meta = meta | {"state": "stopped", "reason": f"its process {pid} is gone (killed?)"}
        out.append(meta)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_step(paths: Paths, step_id: str) -> dict[str, Any] | None:
    """The step record ``step_id`` (``<tuner id>-sN``), or None when it is not a step id or unknown."""
    m = _STEP.match(step_id)
    if not m:
        return None
    try:
        store = TunerStore(paths, m.group(1))
    except AutotuneNotFound:
        return None
    return next((s for s in store.steps() if s.get("id") == step_id), None)
