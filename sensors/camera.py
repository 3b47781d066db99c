"""Camera heartbeats (GB/T 28181 §9.6.1: every 60 s, offline after 3 misses), standard library only.

Active probes, chosen by the scheme of the camera's ``probe`` URL:

| scheme | probe | alive when |
|---|---|---|
| ``rtsp://host[:554]/path`` | ``OPTIONS rtsp://… RTSP/1.0`` | the answer starts ``RTSP/1.0 200`` |
| ``onvif://host[:80][/path]`` | SOAP ``GetSystemDateAndTime`` POSTed to ``/onvif/device_service`` | HTTP 200 with the response element (the call needs no login) |
| ``http://…``, ``https://…`` | ``GET`` | HTTP status below 400 |
| ``tcp://host:port`` | TCP connect | the connection is accepted |
| ``push://…`` | none: the recorder pushes heartbeats, see :meth:`CameraWatch.record_heartbeat` | a push arrived within the last ``heartbeat_s`` |

Each camera is checked every ``heartbeat_s``. A check is due from ``DUE_TOLERANCE`` of a period before
its time, so a ``read()`` a few ms early (scheduling jitter) still probes rather than skipping a whole
period; the checks stay on their grid (an early one does not pull the next forward, a late one brings
no burst of catch-up checks). A failed check is quality ``stale`` (still ``online``) until ``misses``
checks in a row have failed: then quality ``fault``, state ``offline``. One good check brings it
back ``online``. Credentials in a URL are never sent by a probe.

Example::

    >>> watch = CameraWatch([CameraSpec("cam-hall", "tcp://192.0.2.11:554")],
    ...                     probes={"tcp": lambda url, timeout: None})
    >>> watch.read(now=0.0)[0].state
    'online'
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import SplitResult, urlsplit

from stationwatch.sensors.base import Driver, Probe, Sample, Seams
from stationwatch.sensors.specs import DeviceTable, GatewaySpec

PUSH = "push"
DUE_TOLERANCE = 0.1  # a check is due within this fraction of its period before its time (read() jitters)
ONVIF_TIME = (b'<?xml version="1.0" encoding="UTF-8"?>'
              b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
              b'<s:Body xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><tds:GetSystemDateAndTime/></s:Body>'
              b'</s:Envelope>')


class ProbeFailed(OSError):
    """The camera answered, but not as a live one does; the message says what it said."""


def _address(url: SplitResult, default_port: int | None) -> tuple[str, int]:
    port = url.port or default_port
    if not url.hostname or port is None:
        raise ProbeFailed(f"probe URL needs a host and port: {url.geturl()}")
    return url.hostname, port


def probe_tcp(url: str, timeout: float) -> None:
    with socket.create_connection(_address(urlsplit(url), None), timeout=timeout):
        pass


def probe_rtsp(url: str, timeout: float) -> None:
    parts = urlsplit(url)
    host, port = _address(parts, 554)
    target = parts._replace(netloc=f"{host}:{port}").geturl()  # without user:password@
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: StationWatch\r\n\r\n".encode())
        answer = b""
        while b"\r\n" not in answer and len(answer) < 4096:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    if not status.startswith("RTSP/1.0 200"):
        raise ProbeFailed(f"RTSP answered {status!r}" if status else "RTSP server closed without answering")


def _http(parts: SplitResult, default_port: int, timeout: float, method: str, path: str,
          body: bytes | None = None, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    host, port = _address(parts, default_port)
    if parts.scheme == "https":  # liveness only: self-signed camera certificates are the rule
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read(65536)
    finally:
        conn.close()


def probe_http(url: str, timeout: float) -> None:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    status, _ = _http(parts, 443 if parts.scheme == "https" else 80, timeout, "GET", path)
    if status >= 400:
        raise ProbeFailed(f"HTTP {status}")


def probe_onvif(url: str, timeout: float) -> None:
    parts = urlsplit(url)
    status, body = _http(parts, 80, timeout, "POST", parts.path or "/onvif/device_service", ONVIF_TIME,
                         {"Content-Type": "application/soap+xml; charset=utf-8"})
    if status != 200 or b"GetSystemDateAndTimeResponse" not in body:
        raise ProbeFailed(f"ONVIF GetSystemDateAndTime answered HTTP {status}")


PROBES: dict[str, Probe] = {"rtsp": probe_rtsp, "onvif": probe_onvif, "http": probe_http,
                            "https": probe_http, "tcp": probe_tcp}
SCHEMES = (*PROBES, PUSH)


@dataclass
class CameraSpec:
    """What the watch needs of a camera (the config's ``cameras[]`` entries have these fields)."""
    id: str
    probe: str
    heartbeat_s: float = 60.0
    misses: int = 3
    next_due: float | None = None
    failures: int = 0
    last_push: float | None = None


class CameraWatch:
    """Checks a gateway's cameras on their heartbeat periods; records pushed heartbeats."""

    family = "camera"

    def __init__(self, cameras: list[CameraSpec], *, probes: Mapping[str, Probe] | None = None,
                 timeout_s: float = 3.0, clock: Callable[[], float] = time.perf_counter):
        self.cameras = {c.id: c for c in cameras}
        self.probes = {**PROBES, **(probes or {})}
        self.timeout_s = timeout_s
        self._clock = clock

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        specs = [CameraSpec(c.id, c.probe, c.heartbeat_s, c.misses) for c in cfg.cameras if c.gateway == gateway.id]
        return [cls(specs, probes=seams.probes)] if specs else []

    def record_heartbeat(self, camera: str, ts: float) -> None:
        """A heartbeat pushed by the camera or its recorder (the passive path)."""
        if camera not in self.cameras:
            raise KeyError(f"no camera '{camera}' on this gateway")
        self.cameras[camera].last_push = ts

    def read(self, now: float) -> list[Sample]:
        due = [c for c in self.cameras.values() if self._due(c, now)]
        if not due:
            return []
        # probe in parallel: a few dead cameras must not hold the others up by their timeouts
        with ThreadPoolExecutor(max_workers=min(8, len(due))) as pool:
            results = list(pool.map(lambda cam: self._check(cam, now), due))
        samples = []
        for cam, (latency_ms, why) in zip(due, results):
            on_grid = now if cam.next_due is None else max(cam.next_due, now)
            cam.next_due = on_grid + cam.heartbeat_s
            cam.failures = 0 if why is None else cam.failures + 1
            samples.append(self._sample(cam, now, latency_ms, why))
        return samples

    @staticmethod
    def _due(cam: CameraSpec, now: float) -> bool:
        return cam.next_due is None or now >= cam.next_due - DUE_TOLERANCE * cam.heartbeat_s

    def _check(self, cam: CameraSpec, now: float) -> tuple[float | None, str | None]:
        pushed = cam.last_push is not None and now - cam.last_push <= cam.heartbeat_s
        scheme = urlsplit(cam.probe).scheme
        if scheme == PUSH:
            return (None, None) if pushed else (None, f"no heartbeat pushed in {cam.heartbeat_s:g} s")
        probe = self.probes.get(scheme)
        if probe is None:
            return None, f"unsupported probe scheme '{scheme}' ({', '.join(SCHEMES)})"
        start = self._clock()
        try:
            probe(cam.probe, min(self.timeout_s, cam.heartbeat_s / 2))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return None, (None if pushed else f"{scheme} probe failed: {str(exc) or type(exc).__name__}")
        return (self._clock() - start) * 1000, None

    @staticmethod
    def _sample(cam: CameraSpec, now: float, latency_ms: float | None, why: str | None) -> Sample:
        if why is None:
            return Sample(cam.id, latency_ms, "ok", now, state="online")
        if cam.failures < cam.misses:
            return Sample(cam.id, None, "stale", now, state="online",
                          detail=f"{why} ({cam.failures} of {cam.misses} misses)")
        return Sample(cam.id, None, "fault", now, state="offline",
                      detail=f"offline after {cam.failures} missed heartbeats: {why} / 摄像机离线")

    def close(self) -> None:
        pass
