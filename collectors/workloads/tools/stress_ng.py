"""stress-ng: the adapter (a bounded stressor run whose ``--yaml`` report gives bogo-ops/s) and
:class:`StressNgWorkload` (the holder process is tuned, stress-ng runs copy its attributes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import yaml

from collectors.workloads.tools.adapter import (
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
    to_float,
)
from collectors.workloads.tools.workload import HolderWorkload, check_int, make_adapter, whole_seconds

__all__ = ["STRESSORS", "StressNgAdapter", "StressNgWorkload", "parse_stress_ng"]

TOOL = "stress-ng"
#: stressors a study may run (each bounded by --timeout; hdd writes in the workdir only)
STRESSORS: tuple[str, ...] = ("cpu", "vm", "matrix", "memcpy", "hdd", "io", "switch", "pipe", "cache")
_HDD_BYTES = "64M"  # per worker; stress-ng's own default is 1G


@dataclass(frozen=True, kw_only=True)
class StressNgAdapter(AdapterBase):
    """``stress-ng --<stressor> N --timeout Ts --metrics-brief --yaml yaml_path``.

    stress-ng writes its report to ``yaml_path``; :meth:`collect` reads it.
    """

    yaml_path: str
    stressor: str = "cpu"
    workers: int = 1
    timeout_s: float = 2.0
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "timeout_s", self.timeout_s) + 15.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range."""
        t = check_duration(TOOL, "timeout_s", self.timeout_s)
        check_count(TOOL, "workers", self.workers, high=256)
        if self.stressor not in STRESSORS:
            raise AdapterError(TOOL, f"stressor must be one of {list(STRESSORS)}, got {self.stressor!r}")
        return [
            "stress-ng", f"--{self.stressor}", str(self.workers),
            "--timeout", f"{t:g}s", "--metrics-brief", "--yaml", self.yaml_path,
        ]

    def collect(self, stdout: str) -> str:
        """The YAML report written by the run. Raises: AdapterError: it is missing."""
        try:
            return Path(self.yaml_path).read_text()
        except OSError as err:
            raise AdapterError(TOOL, f"cannot read YAML report {self.yaml_path}: {err}") from err

    def parse(self, text: str) -> AdapterResult:
        return parse_stress_ng(text)


def parse_stress_ng(text: str) -> AdapterResult:
    """Parse a ``stress-ng --yaml`` report.

    Throughput is the sum over stressors of ``bogo-ops-per-second-real-time``
    (``bogo-ops/s``); ``extra`` has ``bogo_ops`` (total). No latency.

    Raises:
        AdapterError: not YAML, or no ``metrics`` list with that field.
    """
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise AdapterError(TOOL, f"report is not YAML ({err})") from err
    metrics = obj.get("metrics") if isinstance(obj, dict) else None
    if not isinstance(metrics, list) or not metrics:
        raise AdapterError(TOOL, "report has no 'metrics' list (was --metrics-brief given?)")
    rate = ops = 0.0
    for i, m in enumerate(metrics):
        if not isinstance(m, dict) or "bogo-ops-per-second-real-time" not in m:
            raise AdapterError(TOOL, f"metrics entry {i} lacks bogo-ops-per-second-real-time")
        rate += to_float(TOOL, f"metrics[{i}].bogo-ops-per-second-real-time", m["bogo-ops-per-second-real-time"])
        ops += to_float(TOOL, f"metrics[{i}].bogo-ops", m.get("bogo-ops", 0))
    return AdapterResult(tool=TOOL, throughput=rate, throughput_unit="bogo-ops/s", extra={"bogo_ops": ops}, raw=obj)


class StressNgWorkload(HolderWorkload):
    """stress-ng: one stressor for the window; the holder process is tuned and the runs copy its attributes.

    Options (defaults):

    * ``stressor`` ("cpu"): one of cpu, vm, matrix, memcpy, hdd, io, switch,
      pipe, cache (``hdd`` writes at most 64M per worker, in the workdir).
    * ``workers`` (1): 1..256 stressor instances.

    A warm-up run of ``warmup_s`` (when > 0, discarded), then a run of
    ``measure_s`` (stress-ng takes fractional seconds as whole: rounded, >= 1).

    Metrics: ``throughput`` (``bogo-ops/s``, real time), ``errors`` (always 0:
    a failing stressor fails the run), ``bogo_ops``. No timeline.
    """

    kind = "stress-ng"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"stressor": "cpu", "workers": 1}
    METRICS = ("throughput", "errors", "bogo_ops")
    BINARIES = ("stress-ng",)

    def _validate(self) -> None:
        if self.options["stressor"] not in STRESSORS:
            raise AdapterError(
                "stress-ng", f"stressor must be one of {list(STRESSORS)}, got {self.options['stressor']!r}"
            )
        check_int("stress-ng", "workers", self.options["workers"], 1, 256)
        self._report_adapter(1.0, "x.yaml").command()

    def _report_adapter(self, seconds: float, yaml_path: str) -> StressNgAdapter:
        return make_adapter(
            "stress-ng", StressNgAdapter, yaml_path=yaml_path, stressor=self.options["stressor"],
            workers=self.options["workers"], timeout_s=seconds,
        )

    def _once(self, seconds: float, label: str) -> AdapterResult:
        report = self.workdir / f"stress-ng-{label}.yaml"
        report.unlink(missing_ok=True)  # never parse a stale report
        extra: tuple[str, ...] = ("--temp-path", str(self.workdir / "tmp"))
        if self.options["stressor"] == "hdd":
            extra += ("--hdd-bytes", _HDD_BYTES)
        try:
            return self._run(self._report_adapter(float(whole_seconds(seconds)), str(report)), extra_args=extra)
        finally:
            report.unlink(missing_ok=True)

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        notes = []
        if warmup_s > 0:
            self._once(warmup_s, "warmup")
        secs = whole_seconds(measure_s)
        if secs != measure_s:
            notes.append(f"stress-ng runs whole seconds: measure_s={measure_s:g} ran {secs} s")
        return self._once(measure_s, "measure"), None, notes
