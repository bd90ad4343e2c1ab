"""perf for non-Python targets (part C): folding ``perf script`` output, and a real perf window."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from collectors.profiler.formats import collapsed
from collectors.profiler.perf import fold_script
from collectors.profiler.sampler import SamplerOptions, record_pid
from collectors.profiler.target import NotAPythonProcess
from tests.collectors.profiler._c_support import pyspy_children

SCRIPT = """\
dash 4242
\t           48d84 __GI_____strtoll_l_internal (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t            ae77 [unknown] (/usr/bin/dash)
\tffffffff81000000 asm_sysvec_apic_timer_interrupt ([kernel.kallsyms])

my worker 4243
\t          172492 evalcmd (/usr/bin/dash)

"""


def test_perf_script_blocks_fold_into_stacks_root_first_with_kinds():
    prof = fold_script(SCRIPT)
    assert prof.total == 2
    stacks = {tuple(f.function for f in s): c for s, c in prof.stacks()}
    assert stacks == {
        ("thread (4242): dash", "asm_sysvec_apic_timer_interrupt", "[unknown]", "__GI_____strtoll_l_internal"): 1,
        ("thread (4243): my worker", "evalcmd"): 1,
    }
    kinds = {f.function: (f.kind, f.file) for f in prof.frames}
    assert kinds["asm_sysvec_apic_timer_interrupt"] == ("kernel", "[kernel.kallsyms]")
    assert kinds["evalcmd"] == ("native", "/usr/bin/dash")
    assert kinds["thread (4243): my worker"][0] == "thread"
    assert fold_script("").total == 0


@pytest.mark.slow
def test_perf_samples_a_busy_non_python_loop():
    if shutil.which("perf") is None:
        pytest.skip("perf is not installed (Debian package linux-perf): engine='perf' cannot be shown here")
    loop = subprocess.Popen(["sh", "-c", "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"])
    try:
        with pytest.raises(NotAPythonProcess, match='engine="perf"'):
            record_pid(loop.pid, 1)
        assert not pyspy_children(loop.pid)
        prof = record_pid(loop.pid, 2, SamplerOptions(engine="perf", rate_hz=99))
    finally:
        loop.kill()
        loop.wait()
    m = prof.meta
    assert (m.engine, m.mode, m.native, m.pid) == ("perf", "cpu", True, loop.pid)
    assert prof.total > 20, prof
    assert all(s[0].kind == "thread" and s[0].function.startswith(f"thread ({loop.pid}): sh") for s, _ in prof.stacks())
    kinds = {f.kind for f in prof.frames}
    assert "native" in kinds
    assert any(f.file.endswith(("dash", "libc.so.6")) for f in prof.frames), prof.frames
    assert collapsed.loads(collapsed.dumps(prof)).total == prof.total
