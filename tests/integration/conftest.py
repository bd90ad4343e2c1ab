import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Every kernel file the catalog's global knobs cover, read directly (not through novatune)
GLOBAL_FILES = [
    "/proc/sys/vm/swappiness",
    "/proc/sys/vm/dirty_ratio",
    "/proc/sys/vm/dirty_background_ratio",
    "/proc/sys/vm/vfs_cache_pressure",
    "/proc/sys/vm/dirty_expire_centisecs",
    "/sys/kernel/mm/transparent_hugepage/enabled",
]


def snapshot() -> dict[str, str]:
    out = {}
    for f in GLOBAL_FILES:
        try:
            out[f] = Path(f).read_text()
        except OSError:
            out[f] = "<missing>"
    for ctl in ("cpu", "memory", "cpuset"):
        base = Path("/sys/fs/cgroup") / ctl
        if base.is_dir():
            out[f"cgroups:{ctl}"] = " ".join(sorted(p.name for p in base.iterdir() if p.is_dir()))
    return out


def novatune(*args: str, home: Path, timeout: float = 300, check: bool = False, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"novatune {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """One initialised MLflow store for the whole session: creating one runs MLflow's schema
    migrations (about 2 s); every study test starts from a copy of this one instead."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


def seed_home(home: Path, template: Path) -> Path:
    """A new data directory holding a copy of the session's initialised MLflow store, what the
    first study in a new data directory would create itself (the schema, no experiment of ours)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(template, home / "mlflow.db")
    os.chmod(home / "mlflow.db", 0o600)
    return home


@pytest.fixture()
def home(tmp_path, mlflow_template) -> Path:
    return seed_home(tmp_path / "home", mlflow_template)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes kernel settings: needs root")


def pytest_collection_modifyitems(config, items) -> None:
    """Everything under tests/integration is in the slow tier: it runs the real CLI, the service, real tools
    and studies. The fast tier (``-m "not slow"``) is the unit, contract and security tests."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
