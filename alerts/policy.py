"""Alert policy settings in the organisation config: rule defaults and who is told.

Loaded as part of the config (``rules:`` and ``routing:``); :func:`policy_problems` adds the
checks that need the whole config. Defaults and their sources: docs/config.md.
"""
from __future__ import annotations

from typing import Annotated, Iterator

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleSettings(_Model):
    """Defaults from DESIGN.md §5; each can be changed per deployment."""
    fire_confirm_detectors: Annotated[int, Field(ge=1, le=4)] = 2  # GB 50116 §4.1.6
    heat_static_c: Annotated[float, Field(ge=40, le=100)] = 54.0  # GB 4716
    sensor_stale_s: Annotated[float, Field(gt=0)] = 100.0  # GB 50166 §4.3.2
    night_start: Annotated[str, Field(pattern=r"^\d\d:\d\d$")] = "22:00"
    night_end: Annotated[str, Field(pattern=r"^\d\d:\d\d$")] = "06:00"
    sleeping_room_min_c: float = 18.0  # GB/T 33833 §5.1
    any_room_min_c: float = 5.0
    summer_max_c: float = 32.0


class AlertRouting(_Model):
    """Who is told. Issue-level escalation (levels, deadlines) builds on this."""
    notify: list[str] = []  # contact ids told of every alert at once



def policy_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for every policy reference that points nowhere."""
    contact_ids = {c.id for c in cfg.contacts}
    for j, cid in enumerate(cfg.routing.notify):
        if cid not in contact_ids:
            yield f"routing.notify[{j}]", f"no contact '{cid}' / 联系人不存在"
