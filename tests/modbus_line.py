"""A Modbus RTU line for tests and benchmarks: two pseudo-terminal pairs joined by a relay thread,
with a REAL pymodbus RTU server on one end (:class:`Server`) and the port the driver opens on the
other (:attr:`Line.client_port`). The relay can corrupt a reply (a CRC error) or put noise in front
of it. A unit that is not on the line never answers: the server serves only its own units
(pymodbus 3.16's ``ignore_missing_devices`` does not work with ``SimDevice`` lists, so the server's
public ``trace_packet`` hook silences answers for absent units).
"""
from __future__ import annotations

import asyncio
import os
import pty
import select
import threading
import tty

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

TH, HEATING = 1, 3  # units on the line: a temperature/humidity transmitter and a heating controller


class Line:
    """Two pty pairs and a relay: the wire between the server and the driver."""

    def __init__(self):
        self.server_master, self.server_slave = pty.openpty()
        self.client_master, self.client_slave = pty.openpty()
        for fd in (self.server_slave, self.client_slave):
            tty.setraw(fd)
        self.server_port = os.ttyname(self.server_slave)
        self.client_port = os.ttyname(self.client_slave)
        self.corrupt_replies = 0
        self.noise_before_reply = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self):
        ends = {self.server_master: self.client_master, self.client_master: self.server_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(ends), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == self.server_master:  # a reply on its way to the driver
                    if self.corrupt_replies:
                        self.corrupt_replies -= 1
                        data = data[:-1] + bytes([data[-1] ^ 0xFF])  # break the CRC
                    data, self.noise_before_reply = self.noise_before_reply + data, b""
                os.write(ends[fd], data)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.server_master, self.server_slave, self.client_master, self.client_slave):
            os.close(fd)


class Server:
    """A pymodbus RTU server for several units, on its own event loop thread."""

    def __init__(self, port: str, units: dict[int, list[int]]):
        self.units = units
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(self._start(port))

    async def _start(self, port):
        devices = [SimDevice(id=unit, simdata=[SimData(0, values=regs, datatype=DataType.REGISTERS)])
                   for unit, regs in self.units.items()]
        server = ModbusSerialServer(devices, port=port, baudrate=9600, trace_packet=self._only_present_units)
        await server.serve_forever(background=True)
        return server

    def _only_present_units(self, sending: bool, data: bytes) -> bytes:
        return b"" if sending and data and data[0] not in self.units else data

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def set_registers(self, unit: int, address: int, values: list[int]):
        self._call(self.server.async_setValues(unit, 3, address, values))

    def close(self):
        self._call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
