"""novatune's own configuration: where it keeps its state (one data directory, resolved at call time)
and its settings (pydantic-settings: ``NOVATUNE_*`` variables, then the YAML config file, then the
defaults), with the API token they lead to.

The data directory, the config file and the token file are trusted only when no other user could have
written them (:mod:`experiments.safefs`: owner and mode checked, no link followed); study names are one
safe path component (:func:`check_name`).

Raises :class:`SettingsError` (exit 2, HTTP 422) naming every bad value and where it came from,
:class:`~experiments.safefs.UnsafeLocation` (exit 2) for a directory or file another user could have
written, :class:`InvalidName` (exit 2, HTTP 422) for a study name that is not one path component.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from collectors.errors import NovatuneError
from experiments.safefs import UnsafeLocation, private_dir, read_trusted

__all__ = [
    "MIN_TOKEN_CHARS",
    "NAME_RE",
    "RUNTIME_SETTINGS",
    "InvalidName",
    "Paths",
    "Settings",
    "SettingsError",
    "api_token",
    "check_name",
    "config_file",
    "data_dir",
    "mlflow_ui_url",
    "token_file",
]


#: a study's (or an application's) name: one path component under ``runs/`` (no ``/``, never ``.`` or
#: ``..``, no leading dot), what the spec, the CLI, the API and the manager all accept
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_RE)


class InvalidName(NovatuneError, ValueError):
    """A study name that is not one plain path component (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def check_name(name: object, *, what: str = "study name") -> str:
    """``name`` when it is a valid study name (:data:`NAME_RE`): 1 to 64 letters, digits, ``.``, ``_``
    or ``-``, starting with a letter or a digit, so it names one directory directly under ``runs/``.

    Raises:
        InvalidName: anything else (``../../x``, ``a/b``, ``.hidden``, an empty or a 65-character name).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidName(
            f"{what} {name!r} is not allowed: a name is 1 to 64 letters, digits, '.', '_' or '-', starting with "
            "a letter or a digit (it names one directory under the data directory's runs/)"
        )
    return name


def data_dir() -> Path:
    """``$NOVATUNE_HOME`` if set, else ``~/.local/share/novatune`` (neither created nor checked here:
    :meth:`Paths.default` checks it, :meth:`Paths.ensure` creates it)."""
    env = os.environ.get("NOVATUNE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".local" / "share" / "novatune").resolve()


_HOME_HINT = "or set NOVATUNE_HOME to a directory of your own"


def _storage() -> str | None:
    from experiments.storage import storage_from_env

    return storage_from_env()


@dataclass(frozen=True)
class Paths:
    """Every file novatune writes, under one home directory, which must be the running user's and not
    writable by others (:func:`experiments.safefs.private_dir`); the studies there too, or in ``storage``
    (``$NOVATUNE_STORAGE``: a shared database, :mod:`experiments.storage`)."""

    home: Path
    storage: str | None = field(default_factory=_storage)

    @classmethod
    def default(cls) -> Paths:
        """The data directory (:func:`data_dir`), checked when it exists (and the directories on the way).

        Raises:
            UnsafeLocation: it, or a directory on the way, is another user's or writable by others.
        """
        return cls(private_dir(data_dir(), what="the data directory", hint=_HOME_HINT))

    def ensure(self) -> Paths:
        """The data directory and its ``mlartifacts/`` and ``runs/``, created 0700 when missing and
        checked; returns the paths at the checked (physical) location.

        Raises:
            UnsafeLocation: one of them, or a directory on the way, is another user's or writable by others.
            OSError: it cannot be created.
        """
        home = private_dir(self.home, what="the data directory", hint=_HOME_HINT, create=True)
        for sub in (home / self.artifacts.name, home / self.runs.name):
            private_dir(sub, what="a directory of the data directory", hint=_HOME_HINT, create=True)
        return self if home == self.home else Paths(home, self.storage)

    @property
    def journal(self) -> Path:
        return self.home / "journal.jsonl"

    @property
    def optuna_db(self) -> Path:
        return self.home / "optuna.db"

    @property
    def optuna_url(self) -> str:
        """Optuna's storage: ``storage`` when set, else ``optuna.db`` of the data directory."""
        return self.storage or f"sqlite:///{self.optuna_db}"

    @property
    def has_studies(self) -> bool:
        """Whether the study store may hold a study: a shared storage always may; the data directory's
        file once a study made it (reading a missing file would create it)."""
        return self.storage is not None or self.optuna_db.exists()

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

    @property
    def profiles(self) -> Path:
        """The profile store (``collectors.profiler.store.ProfileStore``): its index and compressed windows."""
        return self.home / "profiles"

    @property
    def usage_db(self) -> Path:
        """The usage history of observed targets (``collectors.usage.history.UsageStore``)."""
        return self.home / "usage.db"

    @property
    def rightsizing_db(self) -> Path:
        """Right-sizing proposals and their approval history (``experiments.rightsizing``)."""
        return self.home / "rightsizing.db"

    def study_dir(self, study: str) -> Path:
        """``runs/<study>``: only for a valid name (:func:`check_name`), never through a symbolic link.

        Raises:
            InvalidName: ``study`` is not one plain path component.
            UnsafeLocation: ``runs/<study>`` is a symbolic link.
        """
        path = self.runs / check_name(study)
        if path.is_symlink():
            raise UnsafeLocation(f"{path} is a symbolic link; a study's directory is a directory of its own "
                                 "directly under runs/: remove the link")
        return path


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


#: the shortest API token accepted (a generated one has 43 characters)
MIN_TOKEN_CHARS = 16


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


class SettingsError(NovatuneError, ValueError):
    """The settings file or a NOVATUNE_* variable is invalid; the message names it and what is allowed
    (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def config_file() -> Path:
    """``$NOVATUNE_CONFIG`` if set, else ``config.yaml`` in the data directory (read by
    :class:`ConfigFileSource`: trusted only when root or the running user owns it and no one else may write it)."""
    env = os.environ.get("NOVATUNE_CONFIG")
    return Path(env).expanduser() if env else data_dir() / "config.yaml"


class ConfigFileSource(InitSettingsSource):
    """The YAML config file (:func:`config_file`), read through :func:`experiments.safefs.read_trusted`
    (``O_NOFOLLOW``, a regular file owned by root or the running user, not writable by others); a missing
    file is no setting.

    Raises:
        UnsafeLocation: the file, or a directory on the way to it, fails the rule.
        SettingsError: it is not YAML, or not a mapping.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        if not os.environ.get("NOVATUNE_CONFIG"):
            Paths.default()  # the config file lives in the data directory: it passes the data directory's rule first
        path = config_file()
        raw = read_trusted(path, what="the config file", hint="or point NOVATUNE_CONFIG at another file")
        data = yaml.safe_load(raw.decode("utf-8")) if raw else None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SettingsError(f"the settings file {path} must be a mapping of settings, not {type(data).__name__}")
        super().__init__(settings_cls, data)


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
    study_plots: bool = Field(default=True, description="draw a study's end plots (Pareto front, convergence, "
                              "importance, parallel coordinates) into MLflow; off saves about 4 s of CPU per "
                              "study on hosts where nobody opens them (the choice and the exports stay)")
    tuned_profile_dirs: list[Path] = Field(
        default_factory=lambda: [Path("/etc/tuned"), Path("/usr/lib/tuned")],
        description="where `novatune bench gain` reads the stock TuneD profiles, searched in this order")
    study_justify: bool = Field(default=True, description="before a study exports, re-measure its choice with "
                                "each changed knob put back and keep only the knobs with a measured effect "
                                "(the spec's `justify` section); off ships the choice unchecked")
    # ---- the API's exposure and request limits (experiments.service.guard, experiments.service.serving)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header names the API answers besides 127.0.0.1, localhost, ::1 "
                                          "and the bind address (a DNS-rebinding page sends its own name)")
    tls_certfile: Path | None = Field(default=None, description="PEM certificate: `novatune serve` speaks HTTPS")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")
    allow_insecure_bind: bool = Field(default=False, description="allow a non-loopback host without TLS (plain "
                                                                 "HTTP: the token crosses the network readable)")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20, description="largest request body")
    max_header_bytes: int = Field(default=16 << 10, ge=1024, le=1 << 20, description="largest request head")
    read_timeout_s: float = Field(default=10.0, ge=1, le=300, description="a request's head, then its body, must "
                                                                         "arrive within this long")
    max_connections: int = Field(default=2048, ge=16, le=65536, description="open connections; more are refused")
    auth_failure_limit: int = Field(default=10, ge=1, le=10_000, description="failed authentications from one "
                                                                            "address within a minute before 429")
    auth_lockout_s: float = Field(default=60.0, ge=1, le=3600, description="how long such an address gets 429")
    # ---- the profiler (collectors.profiler; `novatune profile`, /profiling)
    profiling_budget_pct: float = Field(default=1.0, ge=0.1, le=10, description="continuous profiling keeps its "
                                        "estimated slowdown of the target under this share of its throughput")
    profiling_window_s: float = Field(default=30.0, ge=10, le=60, description="length of one continuous-profiling "
                                                                              "window (each stored as it completes)")
    profiling_retention_days: float = Field(default=7.0, ge=0.01, le=365, description="stored profiles older "
                                            "than this are deleted (older than an hour: merged hourly)")
    profiling_max_bytes: int = Field(default=512 << 20, ge=1 << 20, le=1 << 40, description="stored profiles "
                                     "beyond this total size are deleted, oldest first")
    profiling_max_sessions: int = Field(default=4, ge=1, le=64, description="profiling sessions the service "
                                                                            "runs at once")
    # ---- right-sizing and cost (collectors.usage, optimizer.rightsizing; `novatune observe|rightsize|cost`)
    observe_targets: list[str] = Field(default_factory=list, description="running targets `novatune serve` "
                                       "observes continuously for right-sizing, each cgroup:/PATH, unit:NAME.service "
                                       "or pid:N (each must also be allowed by allowed_targets)")
    observe_interval_s: float = Field(default=15.0, ge=1, le=3600, description="seconds between two usage "
                                                                              "samples of an observed target")
    usage_retention_days: float = Field(default=90.0, ge=1, le=3650, description="usage history older than this "
                                        "is deleted (older samples are kept at coarser resolution)")
    rightsizing_profile: Literal["savings", "balanced", "reliability"] = Field(
        default="balanced", description="default right-sizing profile: savings, balanced or reliability")
    rightsizing_min_history_h: float = Field(default=30.0, ge=0.001, le=24 * 365, description="hours of history a "
                                             "target needs before it gets a recommendation (AWS Compute Optimizer: "
                                             "30); shorter gives insufficient-data")
    rightsizing_validation_s: float = Field(default=300.0, ge=10, le=7 * 86400, description="after a "
                                            "right-sizing change is applied, it is watched this long and rolled "
                                            "back if the target degrades (throttling, OOM kills, memory pressure)")
    trace_max_bytes: int = Field(default=1 << 30, ge=1 << 20, le=1 << 40, description="largest usage trace "
                                 "(CSV) `rightsize replay` and `observe --import` read")
    # ---- the fleet (experiments.fleet; `novatune fleet hosts`, /hosts, the novatune_agent_* metrics)
    fleet_dead_after_s: float = Field(default=60.0, ge=1, le=86400, description="an agent whose last heartbeat "
                                      "is older than this is shown dead (alive false, novatune_agent_up 0)")

    @field_validator("api_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"the API token must be at least {MIN_TOKEN_CHARS} characters (it has "
                             f"{len(value.get_secret_value())}); unset it to have one generated")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _bare_host_names(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        bad = [v for v in names if not v or (any(c in v for c in "/@:* \t[]") and not _is_ipv6(v))]
        if bad:
            raise ValueError(f"allowed_hosts takes bare host names or addresses (no scheme, port or wildcard): "
                             f"{', '.join(map(repr, bad))}")
        return names
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
        return (init_settings, env_settings, ConfigFileSource(settings_cls))

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
        except NovatuneError:
            raise
        except Exception as err:  # noqa: BLE001 - what the YAML source raises (yaml, OS, decoding) is the file's
            raise SettingsError(f"cannot read the settings file {config_file()}: {err}") from None


def token_file(paths: Paths) -> Path:
    """Where a generated API token is kept (mode 0600)."""
    return paths.home / "api-token"


def api_token(settings: Settings, paths: Paths) -> tuple[str, str]:
    """The API's bearer token and where it comes from: the setting, else the token file in the data
    directory, else a new random token written there (mode 0600) -- source ``generated``.

    The token file is trusted only when it is a regular file (``O_NOFOLLOW``) owned by root or the running
    user that no one else may read or write, in a data directory that passes :meth:`Paths.ensure`.

    Raises:
        UnsafeLocation: the data directory or the token file fails its rule.
        SettingsError: the token file holds fewer than :data:`MIN_TOKEN_CHARS` characters.
    """
    if settings.api_token is not None and settings.api_token.get_secret_value():
        return settings.api_token.get_secret_value(), "setting"
    paths = paths.ensure()
    f = token_file(paths)
    raw = read_trusted(f, what="the API token file", secret=True,
                       hint="or remove it (a new one is generated), or set NOVATUNE_API_TOKEN")
    if raw is not None:
        token = raw.decode("utf-8", errors="replace").strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise SettingsError(f"the API token file {f} holds {len(token)} characters; at least {MIN_TOKEN_CHARS} "
                                "are needed: delete it to have a new token generated, or write a longer one")
        return token, str(f)
    token = secrets.token_urlsafe(32)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, "generated"
