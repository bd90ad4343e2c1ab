"""What the stock TuneD profiles would do, as a study's first points (the spec's ``warm_start.stock_profiles``).

A study that starts from the machine as found and searches on its own may never try what a stock profile
sets, and then cannot know whether it is better. With ``stock_profiles: true`` each stock profile that
applies here (:mod:`experiments.deploy.tuned_stock`, the same reading as ``novatune bench gain``) becomes one
point right after the baseline: the values found, with the profile's values on the study's own knobs. The
study then measures what TuneD would do on those knobs before it searches on its own, and its choice (and the
justification that follows) can only differ from a profile's because the measurements say so.

Nothing here changes a knob: the points go to ``study.enqueue_trial`` and run as any trial does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actuators import ActuatorError
from collectors.errors import NovatuneError
from experiments.deploy.tuned_stock import STOCK_PROFILES, TunedProfileError, resolve_profile
from experiments.study.resolve import Resolved, clamp_to_space

__all__ = ["stock_points"]


def stock_points(resolved: Resolved, baseline: dict[str, Any], dirs: Sequence[Path],
                 profiles: Sequence[str] = STOCK_PROFILES) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """``([(profile, point), ...], {profile: why it is not tried})``: each profile's point (the baseline with
    the profile's values on the study's knobs), in ``profiles`` order, without repeats or the baseline.

    A profile value outside the spec's range for that knob is not used (the spec's bounds are what the
    operator allowed); a profile left with no value to try, or whose point breaks an ordering of the space
    (``vm.dirty_background_ratio`` below ``vm.dirty_ratio``), is not tried, with the reason.
    """
    by_knob = {knob.name: param for param, knob in resolved.knobs.items()}
    start = clamp_to_space(baseline, resolved.space)
    seen = {json.dumps(start, sort_keys=True, default=str)}
    params = {p.name: p for p in resolved.space.params}
    points: list[tuple[str, dict[str, Any]]] = []
    not_tried: dict[str, str] = {}
    for name in profiles:
        try:
            profile = resolve_profile(name, dirs=dirs, devices=resolved.block_devices(),
                                      current=lambda k: resolved.knobs[by_knob[k]].read() if k in by_knob else None)
        except (TunedProfileError, ActuatorError, NovatuneError, OSError) as err:
            not_tried[name] = str(err)
            continue
        mine = clamp_to_space({by_knob[k]: v for k, v in profile.values.items() if k in by_knob}, resolved.space)
        outside = [f"{p}={v}" for p, v in mine.items() if not params[p].contains(v)]
        used = {p: v for p, v in mine.items() if params[p].contains(v)}
        point = {**start, **used}
        key = json.dumps(point, sort_keys=True, default=str)
        if not used:
            not_tried[name] = ("sets none of the study's knobs" if not outside else
                               "every value it sets is outside the spec's range: " + ", ".join(outside))
        elif not resolved.space.is_valid(point):
            not_tried[name] = f"its values break an ordering of the space: {used}"
        elif key in seen:
            not_tried[name] = "the same point as the values found or an earlier profile"
        else:
            seen.add(key)
            points.append((name, point))
    return points, not_tried
