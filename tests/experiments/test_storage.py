"""The study store's URL (``--storage`` / ``NOVATUNE_STORAGE``): checked, never shown with its password,
used by every reader of the data directory's studies, and never handed to a workload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors.workloads.process import SECRET_ENV, child_env
from experiments.settings import Paths
from experiments.storage import StorageError, check_storage, redact
from tests.integration.conftest import REPO

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:p@db.example:5432/nt", "postgresql+psycopg://u:p@db.example:5432/nt"),
    ("postgres://u:p@10.0.0.5/nt", "postgresql+psycopg://u:p@10.0.0.5/nt"),
    ("postgresql+psycopg://u@h/nt", "postgresql+psycopg://u@h/nt"),
    ("sqlite:////var/lib/novatune/studies.db", "sqlite:////var/lib/novatune/studies.db"),
    ("postgresql://u:p@/nt?host=/run/postgresql", "postgresql+psycopg://u:p@/nt?host=%2Frun%2Fpostgresql"),
])
def test_accepted_urls_get_the_shipped_driver(url: str, expected: str) -> None:
    assert check_storage(url) == expected


@pytest.mark.parametrize(("url", "said"), [
    (f"mysql://u:{SECRET}@h/db", "scheme 'mysql' is not supported"),
    (f"postgresql://u:{SECRET}@/db", "names no host or no database"),
    (f"postgresql://u:{SECRET}@h", "names no host or no database"),
    (f"postgresql://u:{SECRET}@/db?host=run/pg", "socket: postgresql://USER:PASSWORD@/DATABASE?host=/ABSOLUTE"),
    ("sqlite:///relative.db", "needs an absolute file path"),
    ("sqlite://", "needs an absolute file path"),
    (f"not a url {SECRET}", "is not a database URL"),
])
def test_refused_urls_say_what_is_allowed_and_never_show_the_password(url: str, said: str) -> None:
    with pytest.raises(StorageError) as err:
        check_storage(url)
    text = str(err.value)
    assert said in text and "allowed: postgresql://" in text and SECRET not in text, text
    assert err.value.exit_code == 2 and err.value.http_status == 422


def test_redact_hides_the_password() -> None:
    assert redact(f"postgresql://u:{SECRET}@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_the_cli_refuses_a_bad_storage_with_exit_2_before_any_command_runs(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "NOVATUNE_HOME": str(tmp_path / "home")}
    for args, extra in ((["--storage", f"mysql://u:{SECRET}@h/db"], {}),
                        ([], {"NOVATUNE_STORAGE": f"redis://u:{SECRET}@h/0"})):
        proc = subprocess.run([sys.executable, "-m", "experiments", *args, "study", "list"], cwd=REPO,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "is not supported" in proc.stderr and SECRET not in proc.stderr + proc.stdout, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "home").exists(), "the refused command made the data directory"


def test_paths_use_the_storage_for_studies_and_the_data_directory_for_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOVATUNE_STORAGE", raising=False)
    local = Paths(tmp_path)
    assert local.storage is None and local.optuna_url == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert not local.has_studies  # no file yet: nothing to read (reading would create it)
    monkeypatch.setenv("NOVATUNE_STORAGE", "postgresql://u:p@h/nt")
    shared = Paths(tmp_path)
    assert shared.optuna_url == "postgresql+psycopg://u:p@h/nt" and shared.has_studies
    assert shared.journal == local.journal and shared.mlflow_db == local.mlflow_db  # the host's own files
    assert shared.ensure().storage == shared.storage


def test_workloads_never_get_a_secret_but_novatunes_own_workers_do(monkeypatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.setenv(name, SECRET)
    monkeypatch.setenv("NOVATUNE_HOME", "/x")
    plain = child_env()
    assert not SECRET_ENV & plain.keys() and plain["NOVATUNE_HOME"] == "/x"
    assert {"NOVATUNE_API_TOKEN", "NOVATUNE_STORAGE", "NOVATUNE_MLFLOW_TRACKING_URI"} == SECRET_ENV
    assert all(child_env(secrets=True)[k] == SECRET for k in SECRET_ENV)
