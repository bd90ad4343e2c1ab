"""stress-ng: a bounded stressor run whose ``--yaml`` report gives bogo-ops/s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from collectors.workloads.adapters._base import AdapterError, AdapterResult, check_count, check_duration, to_float

__all__ = ["StressNgAdapter", "parse_stress_ng"]

TOOL = "stress-ng"
_STRESSORS = ("cpu", "vm", "io", "hdd", "matrix", "memcpy", "switch", "pipe", "cache")


@dataclass(frozen=True, kw_only=True)
class StressNgAdapter:
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
        if self.stressor not in _STRESSORS:
            raise AdapterError(TOOL, f"stressor must be one of {list(_STRESSORS)}, got {self.stressor!r}")
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
