"""Settings of the gateway agent on the Pi: its disk spool, local alarm outputs and health checks.

:func:`agent_problems` adds the checks that need the whole config.
"""
from __future__ import annotations

from typing import Annotated, Iterator

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSettings(_Model):
    spool_path: str = "/var/lib/stationwatch/spool.db"
    spool_max_mb: Annotated[float, Field(gt=0)] = 256.0


def agent_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for agent settings that cannot work."""
    return iter(())
