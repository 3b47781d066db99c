"""Settings of the gateway agent on the Pi: its disk spool, local alarm outputs and health checks.

Example (one gateway in the organisation config)::

    gateways:
      - id: gw-sl-main
        name: 主楼网关
        site: sl-station
        agent:
          spool_path: /var/lib/stationwatch/spool.db
          spool_max_mb: 256
          outputs: {buzzer: 17, relay: 27, led: 22}   # BCM GPIO numbers
          silence_button: 23

:func:`agent_problems` adds the checks that need the whole config.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Iterator, Literal

from pydantic import Field

from stationwatch.sensors.kinds import KINDS

from .fields import Model, Pin
from .wiring import ONEWIRE_PIN, SPI_PINS


class AlarmOutputs(Model):
    """GPIOs that sound and show a local alarm (gateway/alarm.py). Each one is optional."""
    buzzer: Pin | None = None  # silenced by the button or a central ack
    relay: Pin | None = None   # e.g. a siren or strobe; silenced with the buzzer
    led: Pin | None = None     # lit while any detector is in alarm, silenced or not


class AgentSettings(Model):
    spool_path: str = "/var/lib/stationwatch/spool.db"
    spool_max_mb: Annotated[float, Field(gt=0)] = 256.0
    # "full": a commit survives a power cut (WAL fsync per commit); "normal": survives a crash of the
    # agent only — the last commits may be lost on power loss (never corrupted). See gateway/spool.py.
    spool_sync: Literal["full", "normal"] = "full"
    outputs: AlarmOutputs = AlarmOutputs()
    silence_button: Pin | None = None  # a push button to GND (internal pull-up)
    # sensor kinds whose "alarm" sounds the local alarm: every fire detector, analog heat or heat contact
    alarm_kinds: list[str] = ["smoke", "heat", "heat_alarm"]
    send_window: Annotated[int, Field(ge=1, le=10_000)] = 1000  # messages awaiting PUBACK at once
    drain_s: Annotated[float, Field(ge=0, le=60)] = 2.0  # on a clean stop, time to finish sending
    health_interval_s: Annotated[float, Field(ge=5, le=3600)] = 60.0  # the gateway's own health (health/{metric})
    # end to end: a message the broker took this long before the centre's latest receipt, and never
    # confirmed, was lost by the broker and is sent again. Longer than ingest takes to drain a backlog
    # after an outage (else the backlog goes twice), short beside how long a spool keeps readings.
    store_timeout_s: Annotated[float, Field(ge=5, le=86400)] = 600.0
    # one ``readings`` message per poll cycle instead of one message per reading (docs/mqtt-contract.md):
    # a fraction of the broker's and ingest's work per reading. Events and alarms are never batched.
    batch_readings: bool = False
    batch_max_items: Annotated[int, Field(ge=2, le=64)] = 64  # readings per batch (64 keep well within 16 KiB)


def _taken_pins(sensors) -> dict[int, str]:
    """GPIOs the sensor wiring of one gateway (its ``sensors``) takes (core/wiring.py), pin → what takes it."""
    taken: dict[int, str] = {}
    for s in sensors:
        src = getattr(s, "source", None)
        if src is None:
            continue
        for attr in ("pin", "supervision_pin"):
            if isinstance(pin := getattr(src, attr, None), int):
                taken[pin] = f"sensor '{s.id}'"
        spi = SPI_PINS.get((getattr(src, "spi_port", None), getattr(src, "spi_device", None)), ())
        taken |= {pin: f"the SPI bus of sensor '{s.id}'" for pin in spi}
        if src.driver == "onewire":
            taken[ONEWIRE_PIN] = "the 1-Wire bus (w1-gpio)"
    return taken


def agent_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for agent settings that cannot work: a GPIO used twice, an unknown alarm kind."""
    on: dict[str, list] = {}
    for s in cfg.sensors:  # each gateway's sensors, in one pass (not a pass per gateway)
        on.setdefault(s.gateway, []).append(s)
    for i, gw in enumerate(cfg.gateways):
        base = f"gateways[{i}].agent"
        a = gw.agent
        used = [(f"{base}.outputs.{name}", pin) for name, pin in a.outputs.model_dump().items() if pin is not None]
        if a.silence_button is not None:
            used.append((f"{base}.silence_button", a.silence_button))
        twice = {pin for pin, n in Counter(pin for _, pin in used).items() if n > 1}
        taken = _taken_pins(on.get(gw.id, []))
        for path, pin in used:
            if pin in twice:
                yield path, f"GPIO {pin} is used twice in the agent settings / 引脚重复使用"
            if pin in taken:
                yield path, f"GPIO {pin} is already taken by {taken[pin]} / 引脚已被占用"
        for j, kind in enumerate(a.alarm_kinds):
            if kind not in KINDS:
                yield f"{base}.alarm_kinds[{j}]", f"unknown sensor kind '{kind}' (known: {', '.join(KINDS)})"
