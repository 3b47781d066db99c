"""systemd's notify protocol, so the unit can be ``Type=notify`` with ``WatchdogSec``: READY=1 once
the agent runs, WATCHDOG=1 while its loop is alive, STOPPING=1 on the way out. Outside systemd
(no ``NOTIFY_SOCKET``) every call does nothing. The protocol is one datagram on a Unix socket;
written here because it is a dozen lines and python-systemd needs the C library on the Pi."""
from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_period() -> float | None:
    """How often to send WATCHDOG=1 (half of ``WatchdogSec``), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2e6)
    except ValueError:
        return None
