"""``/settings``: the service's settings, and the safe ones changed while it runs (CLI twins:
``novatune settings show --live|set``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from experiments.service.deps import AppSettings, Manager, ReadAccess, WriteAccess
from experiments.settings import RUNTIME_SETTINGS, Settings

__all__ = ["SettingsPatch", "router"]

router = APIRouter(prefix="/settings", tags=["settings"])


class SettingsPatch(BaseModel):
    """Settings that can change while the service runs; none of them weakens a safety bound."""

    model_config = ConfigDict(extra="forbid")
    max_running_studies: int | None = Field(default=None, ge=1, le=16)
    stop_timeout_s: float | None = Field(default=None, ge=1, le=3600)
    require_token_for_reads: bool | None = None
    log_level: str | None = Field(default=None, pattern="^(debug|info|warning|error)$")


def _settings_view(settings: Settings, token_source: str) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude={"api_token"})
    data["api_token"] = f"set ({token_source})"
    data["runtime_changeable"] = list(RUNTIME_SETTINGS)
    return data


@router.get("", summary="The service's settings (the token is never shown)")
def get_settings(request: Request, settings: AppSettings, _: ReadAccess) -> dict[str, Any]:
    return _settings_view(settings, request.app.state.token_source)


@router.patch("", responses={422: {"description": "a setting that cannot change at runtime, or a bad value"}},
              summary="Change safe settings while the service runs (not persisted)")
def patch_settings(request: Request, patch: SettingsPatch, settings: AppSettings, manager: Manager,
                   _: WriteAccess) -> dict[str, Any]:
    for key, value in patch.model_dump(exclude_none=True).items():
        setattr(settings, key, value)
    manager.max_running = settings.max_running_studies
    manager.stop_timeout_s = settings.stop_timeout_s
    logging.getLogger("experiments").setLevel(settings.log_level.upper())
    return _settings_view(settings, request.app.state.token_source)
