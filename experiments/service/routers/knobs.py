"""``/knobs``: the knob catalog on this machine (CLI twins: ``novatune knobs list|get``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from experiments.service.deps import AppSettings, ReadAccess

__all__ = ["router"]

router = APIRouter(prefix="/knobs", tags=["knobs"])


@router.get("", summary="Every knob on this machine: available or not (and why), current value, bounds, risk")
def knobs(_: ReadAccess, settings: AppSettings) -> list[dict[str, Any]]:
    from actuators import Catalog, KnobContext
    from experiments.deploy.plan import instance_types, knob_info

    context = KnobContext(instance_types=instance_types(), protected_interfaces=tuple(settings.protected_interfaces))
    return [knob_info(k) for k in Catalog(context=context).knobs()]


@router.get("/{name}", responses={404: {"description": "no such knob"}}, summary="One knob")
def knob(name: Annotated[str, Path(max_length=200)], _: ReadAccess, settings: AppSettings) -> dict[str, Any]:
    # an unknown name raises UnknownKnob: 404, a protected interface's ProtectedInterface: 422 (no docstring
    # here: it would become the schema's description)
    from actuators import Catalog, KnobContext
    from experiments.deploy.plan import instance_types, knob_info

    context = KnobContext(instance_types=instance_types(), protected_interfaces=tuple(settings.protected_interfaces))
    return knob_info(Catalog(context=context).get(name))
