"""novatune's own configuration: where it keeps its state (one data directory, resolved at call time)
and its settings (pydantic-settings: ``NOVATUNE_*`` variables, then the YAML config file, then the
defaults), with the API token they lead to.

Raises :class:`SettingsError` (exit 2, HTTP 422) naming every bad value and where it came from.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from collectors.errors import NovatuneError

__all__ = [
    "RUNTIME_SETTINGS",
    "Paths",
    "Settings",
    "SettingsError",
    "api_token",
    "config_file",
    "data_dir",
    "mlflow_ui_url",
    "token_file",
]


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


def mlflow_ui_url(experiment_id: str | None = None, *, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page of a study's experiment (or of the experiment list) in its model-training view.

    MLflow 3's UI opens in its GenAI view by default (traces and evaluations, no runs); the
    ``workflowType=machine_learning`` parameter opens the runs, charts and artifacts of the study.
    """
    page = f"experiments/{experiment_id}" if experiment_id else "experiments"
    return f"{base.rstrip('/')}/#/{page}?workflowType=machine_learning"


# ------------------------------------------------------------------ settings
#: settings the API may change while the service runs (none of them weakens a safety bound)
RUNTIME_SETTINGS = ("max_running_studies", "stop_timeout_s", "require_token_for_reads", "log_level")


class SettingsError(NovatuneError, ValueError):
    """The settings file or a NOVATUNE_* variable is invalid; the message names it and what is allowed
    (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def config_file() -> Path:
    """``$NOVATUNE_CONFIG`` if set, else ``config.yaml`` in the data directory."""
    env = os.environ.get("NOVATUNE_CONFIG")
    return Path(env).expanduser() if env else data_dir() / "config.yaml"


class Settings(BaseSettings):
    """novatune's settings: ``NOVATUNE_*`` environment variables win over the YAML config file
    (:func:`config_file`), which wins over these defaults."""

    model_config = SettingsConfigDict(env_prefix="NOVATUNE_", extra="forbid", validate_assignment=True)

    api_token: SecretStr | None = Field(default=None, description="bearer token for the API (generated if unset)")
    require_token_for_reads: bool = Field(default=False, description="GET requests need the token too")
    host: str = Field(default="127.0.0.1", description="address `novatune serve` binds")
    port: int = Field(default=8080, ge=1, le=65535)
    mlflow_tracking_uri: str | None = Field(default=None, description="an MLflow server (default: the local store)")
    max_running_studies: int = Field(default=2, ge=1, le=16, description="studies running at once")
    stop_timeout_s: float = Field(default=60.0, ge=1, le=3600, description="a stop waits this long, then kills")
    max_resumes: int = Field(default=3, ge=0, le=100, description="resumes of a study whose worker died")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    workload_allowed_paths: list[str] = Field(
        default_factory=list,
        description="directories besides a run's own scratch directory where a workload may write (fio's "
                    "filename); absolute paths; never novatune's data directory, even if one contains it",
    )

    @field_validator("workload_allowed_paths")
    @classmethod
    def _absolute_paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.startswith("/") or "\0" in p or ".." in p.split("/"):
                raise ValueError(f"{p!r} must be an absolute path without '..'")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file()))

    @classmethod
    def load(cls) -> Settings:
        """The settings now; :class:`SettingsError` names every bad value and where it came from."""
        try:
            return cls()
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors(include_url=False)
            )
            raise SettingsError(
                f"invalid settings (NOVATUNE_* variables or {config_file()}): {problems}"
            ) from None
        except Exception as err:  # noqa: BLE001 - what the YAML source raises (yaml, OS, decoding) is the file's
            raise SettingsError(f"cannot read the settings file {config_file()}: {err}") from None


def token_file(paths: Paths) -> Path:
    """Where a generated API token is kept (mode 0600)."""
    return paths.home / "api-token"


def api_token(settings: Settings, paths: Paths) -> tuple[str, str]:
    """The API's bearer token and where it comes from: the setting, else the token file in the data
    directory, else a new random token written there (mode 0600) -- source ``generated``."""
    if settings.api_token is not None and settings.api_token.get_secret_value():
        return settings.api_token.get_secret_value(), "setting"
    f = token_file(paths)
    if f.exists():
        return f.read_text().strip(), str(f)
    paths.home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, "generated"
