"""Kept runs (applied to stay): recover leaves them open, but still restores dead ordinary runs."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from actuators import Journal, SysRoot, recover
from actuators.journal import KEPT_EVENT
from tests.actuators.conftest import PYTHON, REPO

# three runs by one process that then exits without restoring anything:
# "kept" (marked kept), "normal" (an ordinary run), "unfinished" (meant to be kept, died before the marker)
SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from actuators import Catalog, ChangeSession, Journal, SysRoot
    from actuators.journal import KEPT_EVENT

    root, journal = SysRoot(sys.argv[1]), Journal(sys.argv[2])
    cat = Catalog(root)
    for run, knob, value, kept in (("kept", "vm.swappiness", 10, True), ("normal", "vm.stat_interval", 5, False),
                                   ("unfinished", "thp.enabled", "never", None)):
        journal.append({"run": run, "kind": "run", "event": "begin"})
        ChangeSession(journal, run_id=run, trial=None).apply(cat.get(knob), value)
        if kept:
            journal.append({"run": run, "kind": "run", "event": KEPT_EVENT})
    """
)


def _run_and_exit(tmp_path: Path, root: SysRoot, journal: Journal) -> None:
    script = tmp_path / "changes.py"
    script.write_text(SCRIPT)
    subprocess.run([PYTHON, str(script), str(root.root), str(journal.path), REPO], check=True, timeout=60)


def test_recover_skips_kept_run_but_restores_dead_runs(tmp_path: Path, fake_root: SysRoot, journal: Journal) -> None:
    _run_and_exit(tmp_path, fake_root, journal)
    assert fake_root.read("proc/sys/vm/swappiness").strip() == "10"
    assert fake_root.read("proc/sys/vm/stat_interval").strip() == "5"
    assert fake_root.read("sys/kernel/mm/transparent_hugepage/enabled").strip() == "never"
    assert Journal.kept_runs(journal.records()) == {"kept"}

    rep = recover(journal, root=fake_root)
    assert rep.ok and rep.kept == ["kept"]
    assert sorted(rep.runs) == ["normal", "unfinished"]
    assert fake_root.read("proc/sys/vm/stat_interval") == "1\n"  # the ordinary dead run: restored
    assert fake_root.read("sys/kernel/mm/transparent_hugepage/enabled") == "always [madvise] never\n"
    assert fake_root.read("proc/sys/vm/swappiness").strip() == "10"  # the kept run: untouched
    (entry,) = Journal.open_entries(journal.records())
    assert entry["run"] == "kept" and entry["old"] == "60\n"

    again = recover(journal, root=fake_root, force=True)  # not even force undoes a kept run
    assert again.kept == ["kept"] and again.runs == [] and again.restored == []
    assert fake_root.read("proc/sys/vm/swappiness").strip() == "10"


def test_kept_marker_is_a_run_record(journal: Journal) -> None:
    journal.append({"run": "a", "kind": "run", "event": KEPT_EVENT})
    journal.append({"run": "b", "kind": "knob", "event": KEPT_EVENT})  # not a run record: ignored
    assert Journal.kept_runs(journal.records()) == {"a"}
