"""Where novatune keeps its state: one data directory, resolved at call time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Paths", "data_dir"]


def data_dir() -> Path:
    """``$NOVATUNE_HOME`` if set, else ``~/.local/share/novatune`` (not created here)."""
    env = os.environ.get("NOVATUNE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".local" / "share" / "novatune").resolve()


@dataclass(frozen=True)
class Paths:
    """Every file novatune writes, under one home directory."""

    home: Path

    @classmethod
    def default(cls) -> Paths:
        return cls(data_dir())

    def ensure(self) -> Paths:
        self.home.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(exist_ok=True)
        self.runs.mkdir(exist_ok=True)
        return self

    @property
    def journal(self) -> Path:
        return self.home / "journal.jsonl"

    @property
    def optuna_db(self) -> Path:
        return self.home / "optuna.db"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.optuna_db}"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def study_dir(self, study: str) -> Path:
        return self.runs / study

    def mlflow_ui_command(self) -> str:
        return (
            f"mlflow ui --backend-store-uri {self.mlflow_uri} "
            f"--default-artifact-root {self.artifacts.as_uri()} --host 127.0.0.1 --port 5000"
        )
