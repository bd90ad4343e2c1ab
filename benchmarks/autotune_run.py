"""The continuous tuner against a load that changes half-way (issue 16's acceptance run).

    python benchmarks/autotune_run.py --minutes 30 [--before 1 --after 12] [--out FILE]

Runs :class:`experiments.autotune.loop.Autotuner` on ``experiments/specs/autotune-oltp.yaml`` for
``--minutes``; the OLTP load generator's clients go from ``--before`` to ``--after`` at half time (the
tuner is not told: it must see the change as drift). Prints one line per cycle and step, then the
history's summary, and writes the whole history as JSON to ``--out``. Knobs: journaled, restored or kept as
applications (listed at the end with the command that undoes each; ``--keep`` leaves them, the default rolls
them back at the end so the host ends as it began).

The validated apply is :func:`experiments.validate.engine.validated_apply` when it is installed; without
it (``--validator interim``) a small stand-in measures before and after windows, applies with
``apply_config``, decides with :func:`optimizer.decision.decide` and rolls back what is not kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def interim_validator(paths: Any, stop: threading.Event, *, windows: int) -> Any:
    """A stand-in validated apply: before windows, apply_config, after windows, decide, roll back unless kept."""
    from experiments.autotune import probe
    from experiments.deploy.apply import apply_config
    from experiments.deploy.rollback import rollback
    from experiments.spec import load_spec
    from experiments.study.prepare import prepare
    from experiments.validate.model import ValidationReport, ValidationRequest
    from optimizer.decision import Guard, decide

    def validate(req: ValidationRequest) -> ValidationReport:
        spec = load_spec(req.spec_path)
        plan = prepare(spec, paths=paths, trials=1, source=req.spec_path)
        t0 = time.time()
        rid = f"v{int(t0)}"
        before = probe.measure(plan, paths=paths, name=f"{rid}-before", windows=windows, stop=stop)
        app = apply_config(req.values, paths=paths, source=req.source)
        try:
            after = probe.measure(plan, paths=paths, name=f"{rid}-after", windows=windows, stop=stop)
        except BaseException:
            rollback(app.id, paths=paths)
            raise
        guards = [Guard(m, spec.objectives[m], lim) for m, lim in req.guards]
        d = decide(before.windows, after.windows, guards)
        decision = {"keep": "kept", "roll_back": "rolled_back"}.get(d.decision, "inconclusive")
        if decision != "kept":
            rollback(app.id, paths=paths)
        return ValidationReport(id=rid, decision=decision, reason=d.reason, source=req.source, values=req.values,
                                metrics=[dict(m.__dict__) for m in d.metrics],
                                application=app.id if decision == "kept" else None, started=t0, ended=time.time())
    return validate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--before", type=int, default=1, help="load generator clients in the first half")
    ap.add_argument("--after", type=int, default=12, help="load generator clients in the second half")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between cycle starts (0: back to back)")
    ap.add_argument("--study-trials", type=int, default=4)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--window", type=float, default=None, help="seconds of a window (default: the spec's)")
    ap.add_argument("--validator", choices=("auto", "engine", "interim"), default="auto")
    ap.add_argument("--spec", default=str(REPO / "experiments/specs/autotune-oltp.yaml"))
    ap.add_argument("--out", default="autotune-history.json")
    ap.add_argument("--keep", action="store_true", help="leave kept steps applied at the end")
    a = ap.parse_args()

    from experiments.autotune.loop import Autotuner
    from experiments.autotune.model import AutotuneOptions
    from experiments.autotune.service import history, rollback_step
    from experiments.settings import Paths
    from experiments.spec import load_spec

    paths = Paths.default().ensure()
    seconds = a.minutes * 60
    t0 = time.monotonic()

    def load() -> dict[str, Any]:
        return {"clients": a.before if time.monotonic() - t0 < seconds / 2 else a.after}

    opts = AutotuneOptions(duration_s=seconds, interval_s=a.interval, study_trials=a.study_trials,
                           windows=a.windows, window_s=a.window, validation_s=60, converge_after=3)

    def show(kind: str, f: dict[str, Any]) -> None:
        at = f"[{time.monotonic() - t0:6.0f} s, clients {load()['clients']}]"
        if kind == "cycle":
            tp = f.get("summary", {}).get("throughput_rps", {})
            print(f"{at} cycle {f['cycle']}: throughput {tp.get('median', float('nan')):.1f} "
                  f"[{tp.get('ci_low', float('nan')):.1f}, {tp.get('ci_high', float('nan')):.1f}] req/s; "
                  f"drift: {f['drift'].get('reason')}; {f['decision']}: {f['reason']} {f.get('error') or ''}",
                  flush=True)
        elif kind == "step":
            print(f"{at} step {f['id']} {f['kind']}: {f['decision']} {f['values']} ({f['reason']})", flush=True)

    engine = a.validator == "engine" or (a.validator == "auto" and importlib.util.find_spec(
        "experiments.validate.engine") is not None)
    tuner = Autotuner(load_spec(a.spec), paths=paths, options=opts, source=a.spec, workload=load, on_event=show)
    if not engine:
        tuner._validate = interim_validator(paths, tuner.stop_event, windows=a.windows)
    print(f"autotune {tuner.id}: {a.minutes:g} min, clients {a.before} -> {a.after} at half time, validator "
          f"{'engine' if engine else 'interim'}", flush=True)
    try:
        meta = tuner.run()
    except KeyboardInterrupt:
        tuner.stop()
        meta = tuner.store.meta()
    h = history(paths, tuner.id)
    Path(a.out).write_text(json.dumps(h, indent=1, default=str))
    kept = tuner.steps.kept()
    drifts = [c["cycle"] for c in h["cycles"] if c.get("drift", {}).get("drifted")]
    print(f"{meta['state']}: {meta.get('cycle')} cycles, converged={meta.get('converged')}, drift at cycles "
          f"{drifts or 'none'}, steps {len(h['steps'])}, kept {[s['id'] for s in kept]}; history in {a.out}")
    for s in reversed(kept):
        if a.keep:
            print(f"kept {s['id']}: undo with `novatune rollback {s['application']}`")
        else:
            rollback_step(paths, s["id"])
            print(f"rolled back {s['id']} ({s['application']}) to leave the host as it was")
    return 0


if __name__ == "__main__":
    sys.exit(main())
