"""The process that runs one background study: ``python -P -m experiments.study.worker NAME``.

Started by :class:`experiments.study.manager.StudyManager` in a session of its own, in ``/`` (nothing
in the data directory is importable), with umask 077 (what it writes is private) and a checked name and
data directory.
SIGTERM (a stop, or the service shutting down) raises in the runner, which
restores the trial's knobs in its ``finally`` blocks; only then does this
process record the study's end state in the registry.
"""

from __future__ import annotations

import logging
import os
import sys

from collectors.errors import NovatuneError
from experiments.safefs import PRIVATE_UMASK
from experiments.settings import Paths, check_name
from experiments.study.manager import StudyManager


def main(argv: list[str]) -> int:
    from experiments.spec import parse_spec
    from experiments.study.outcomes import Interrupted
    from experiments.study.prepare import prepare
    from experiments.study.runner import StudyRunner

    os.umask(PRIVATE_UMASK)  # the journal, the databases, the runs and the artifacts are this user's alone
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print("usage: python -P -m experiments.study.worker STUDY", file=sys.stderr)
        return 2
    try:
        name = check_name(argv[0])
        paths = Paths.default()
        mgr = StudyManager(paths)
    except NovatuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rec = mgr.record(name)
    if rec is None:
        print(f"no registered study {name!r}", file=sys.stderr)
        return 2
    state, reason = "failed", None
    try:
        spec = parse_spec(rec.spec, source=f"study {name}")
        plan = prepare(spec, paths=paths, trials=rec.trials, source=f"study {name}")
        resume = paths.has_studies and _exists(paths, name)
        runner = StudyRunner(plan, paths=paths, name=name, resume=resume,
                             tracking_uri=os.environ.get("NOVATUNE_MLFLOW_TRACKING_URI") or None)
        mgr.update(name, state="running")
        report = runner.run()
        state, reason = report.state, report.stop_reason or None
        if report.restore_mismatches:
            state, reason = "failed", "not restored: " + "; ".join(report.restore_mismatches)
    except Interrupted as sig:
        state, reason = "interrupted", f"interrupted by {sig}; the trial's knobs were restored"
    except KeyboardInterrupt:
        state, reason = "interrupted", "interrupted; the trial's knobs were restored"
    except BaseException as err:
        logging.exception("study %s failed", name)
        state, reason = "failed", f"{type(err).__name__}: {err}"
    finally:
        mgr.worker_finished(name, state, reason)
    return 0 if state in ("completed", "interrupted") else 1


def _exists(paths: Paths, name: str) -> bool:
    import optuna

    try:
        optuna.load_study(study_name=name, storage=paths.optuna_url)
    except KeyError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
