"""The spec's ``profile:`` section and :class:`TrialProfiler` on its own: what a trial's window gives when its
processes can be profiled, and when they cannot (never the trial's failure)."""

import subprocess
import sys
import textwrap

import pytest

from collectors.profiler.store import ProfileStore
from experiments.spec import ProfileSpec, SpecError, parse_spec
from experiments.study.profiling import TrialProfiler, config_hash

BASE = {"name": "p", "knobs": {"vm.swappiness": {"low": 1, "high": 100}},
        "objectives": {"throughput_rps": "maximize"}}


def test_the_profile_section_is_checked_with_its_bounds():
    assert parse_spec({**BASE, "profile": {}}).profile == ProfileSpec()
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "profile": {"rate_hz": 500, "mode": "gpu", "what": 1}})
    text = str(err.value)
    assert "profile.rate_hz" in text and "less than or equal to 100" in text
    assert "profile.mode" in text and "profile.what: unknown field; allowed here: mode, rate_hz, native" in text


def test_config_hash_names_a_configuration_whatever_the_order():
    assert config_hash({"a": 1, "b": "x"}) == config_hash({"b": "x", "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.fixture()
def python_target():
    code = textwrap.dedent("""
        import time
        def hot():
            x = 0
            for i in range(20000): x += i
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline: hot()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_a_window_of_a_python_process_gives_a_stored_profile_a_flamegraph_and_a_diff(tmp_path, python_target):
    store = ProfileStore(tmp_path / "profiles")
    prof = TrialProfiler(ProfileSpec(rate_hz=50), study="s", workdir=tmp_path, store=store)
    for number in (0, 1):
        prof.start_trial(number)
        with prof.window([python_target.pid], warmup_s=0.2, measure_s=3.0):
            import time
            time.sleep(3.2)
        files, tags = prof.finish_trial({"vm.swappiness": 10 + number})
        assert "profile_note" not in tags, tags
        stored = store.get(tags["profile_id"])
        assert stored.meta.labels["trial"] == str(number) and stored.meta.labels["study"] == "s"
        assert any(f.function == "hot" for f in stored.frames)
        names = sorted(f.name for f in files)
        assert f"trial-{number:03d}-flamegraph.svg" in names
        assert (f"trial-{number:03d}-diff-vs-baseline.json" in names) == (number == 1)
    summary = prof.summary(1)
    assert summary["baseline_trial"] == 0 and summary["chosen_trial"] == 1
    assert prof.summary(None) is None


def test_a_process_that_cannot_be_profiled_is_a_note_not_a_failure(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        prof = TrialProfiler(ProfileSpec(), study="s", workdir=tmp_path, store=None)
        prof.start_trial(0)
        with prof.window([sleeper.pid], warmup_s=0.0, measure_s=2.5):
            import time
            time.sleep(2.6)
        files, tags = prof.finish_trial({})
    finally:
        sleeper.kill()
        sleeper.wait()
    assert files == []
    assert "not" in tags["profile_note"] and "Python" in tags["profile_note"], tags
    prof.start_trial(1)
    with prof.window([sleeper.pid], warmup_s=0.0, measure_s=1.5):
        pass
    assert "too short" in prof.finish_trial({})[1]["profile_note"]
