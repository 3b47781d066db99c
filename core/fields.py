"""The building blocks of every config section: the strict base model and the field types that
several sections share. Defined once here; every section imports them.

>>> class Door(Model):
...     id: Ident
...     pin: Pin
>>> Door(id="door-exit", pin=17).pin
17
"""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """A config section: unknown keys are errors (a misspelt setting must not be ignored silently)."""
    model_config = ConfigDict(extra="forbid")


# ids of bureaus, sites, rooms, gateways, devices and policies: they appear in MQTT topics and URLs
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
# a GPIO of the Pi's 40-pin header, BCM numbering (GPIO17 is 17)
Pin = Annotated[int, Field(ge=0, le=27)]
