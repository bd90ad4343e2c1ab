"""novatune's own configuration: where it keeps its state (one data directory, resolved at call time)
and its settings (pydantic-settings: ``NOVATUNE_*`` variables, then the YAML config file, then the
defaults), with the API token they lead to.

Raises :class:`SettingsError` (exit 2, HTTP 422) naming every bad value and where it came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
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
    allowed_targets: list[str] = Field(default_factory=list, description=(
        "running processes a passive study may observe and tune (strict: none by default), each one of "
        "unit:NAME.service (a systemd unit), cgroup:/PATH (a cgroup, as /proc/PID/cgroup shows it, and "
        "below), exe:/PATH (processes of that executable; pids only); pid 1, kernel threads, novatune "
        "itself and the root cgroup are never targets. Environment: JSON, "
        "NOVATUNE_ALLOWED_TARGETS='[\"unit:nginx.service\"]'"))
    allowed_probe_hosts: list[str] = Field(default_factory=list, description=(
        "hosts besides loopback that a passive probe_url / scrape_url may name (names or addresses; "
        "default: none, loopback only)"))
    protected_interfaces: list[str] = Field(default_factory=lambda: ["default-route"], description=(
        "network interfaces whose nic.* knobs are never offered nor applied; 'default-route' stands for "
        "every interface carrying a default route (IPv4 or IPv6) at the time"))

    @field_validator("allowed_targets")
    @classmethod
    def _allowed_targets(cls, value: list[str]) -> list[str]:
        from collectors.passive.allowed import parse_rules

        parse_rules(value)  # raises ValueError naming the bad entry and the allowed forms
        return value

    @field_validator("allowed_probe_hosts")
    @classmethod
    def _probe_hosts(cls, value: list[str]) -> list[str]:
        label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        for host in value:
            try:
                ipaddress.ip_address(host)
            except ValueError:  # then a DNS name: no scheme, port, path or wildcard
                if not re.fullmatch(rf"(?=.{{1,253}}$){label}(\.{label})*", host):
                    raise ValueError(f"{host!r} is not a host name or an IP address (no scheme, port or "
                                     "wildcard)") from None
        return [h.lower() for h in value]

    @field_validator("protected_interfaces")
    @classmethod
    def _interfaces(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "default-route" and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", name):
                raise ValueError(f"{name!r} is not an interface name; allowed: 'default-route' or a name of "
                                 "up to 15 letters, digits, '_', '.', ':', '-'")
        return value

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
