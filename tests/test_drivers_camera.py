"""Camera heartbeats against real listeners on 127.0.0.1: an RTSP server, an HTTP/ONVIF server and a
bare TCP listener, each on a free port; ``now`` is handed to ``read()``, so no test waits for a period."""
from __future__ import annotations

import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from stationwatch.core.config import parse_config
from stationwatch.sensors.base import build_drivers
from stationwatch.sensors.camera import CameraSpec, CameraWatch

from support import EXAMPLES

ONVIF_ANSWER = (b'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                b'<s:Body><tds:GetSystemDateAndTimeResponse xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
                b'<tds:SystemDateAndTime/></tds:GetSystemDateAndTimeResponse></s:Body></s:Envelope>')


class RtspCamera:
    """Answers RTSP OPTIONS with ``status``; ``silent`` accepts and never answers."""

    def __init__(self):
        self.status = "RTSP/1.0 200 OK"
        self.silent = False
        self.requests: list[bytes] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                outer.requests.append(data)
                if not outer.silent:
                    self.request.sendall(f"{outer.status}\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n".encode())
                else:
                    self.request.recv(1)  # hold the connection until the prober gives up

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class HttpCamera:
    """GET answers ``status``; POST /onvif/device_service answers GetSystemDateAndTime."""

    def __init__(self):
        self.status = 200
        self.posts: list[tuple[str, bytes, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.append((self.path, body, self.headers.get("Content-Type", "")))
                ok = self.path == "/onvif/device_service" and outer.status == 200
                answer = ONVIF_ANSWER if ok else b""
                self.send_response(200 if ok else outer.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TcpListener:
    """A port that accepts connections while open; closed, connections are refused."""

    def __init__(self):
        self.sock = None
        self.port = 0
        self.open()

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


@pytest.fixture
def rtsp():
    cam = RtspCamera()
    yield cam
    cam.close()


@pytest.fixture
def web():
    cam = HttpCamera()
    yield cam
    cam.close()


@pytest.fixture
def tcp():
    listener = TcpListener()
    yield listener
    listener.close()


def watch(*specs: CameraSpec, **kw) -> CameraWatch:
    return CameraWatch(list(specs), timeout_s=0.5, **kw)


def one(w: CameraWatch, now: float):
    samples = w.read(now)
    assert len(samples) == 1
    s = samples[0]
    return s.quality, s.state


def test_rtsp_options_200_is_online_with_latency(rtsp):
    w = watch(CameraSpec("cam-hall", f"rtsp://127.0.0.1:{rtsp.port}/stream1"))
    s = w.read(0.0)[0]
    assert (s.sensor, s.quality, s.state) == ("cam-hall", "ok", "online")
    assert s.value is not None and s.value >= 0
    request = rtsp.requests[0].decode()
    assert request.startswith(f"OPTIONS rtsp://127.0.0.1:{rtsp.port}/stream1 RTSP/1.0\r\n")
    assert "CSeq: 1\r\n" in request


def test_credentials_in_the_url_are_not_sent(rtsp):
    w = watch(CameraSpec("cam", f"rtsp://admin:secret@127.0.0.1:{rtsp.port}/h264"))
    assert one(w, 0.0) == ("ok", "online")
    assert b"secret" not in rtsp.requests[0] and b"admin" not in rtsp.requests[0]


def test_offline_after_three_missed_heartbeats_and_back_online(rtsp):
    w = watch(CameraSpec("cam", f"rtsp://127.0.0.1:{rtsp.port}/stream1", heartbeat_s=60, misses=3))
    assert one(w, 0.0) == ("ok", "online")
    rtsp.status = "RTSP/1.0 503 Service Unavailable"
    assert one(w, 60.0) == ("stale", "online")
    assert one(w, 120.0) == ("stale", "online")
    s = w.read(180.0)[0]
    assert (s.quality, s.state, s.value) == ("fault", "offline", None)
    assert "503" in s.detail and "3 missed" in s.detail
    rtsp.status = "RTSP/1.0 200 OK"
    assert one(w, 240.0) == ("ok", "online")


def test_a_camera_is_probed_once_per_heartbeat_period(rtsp):
    w = watch(CameraSpec("cam", f"rtsp://127.0.0.1:{rtsp.port}/", heartbeat_s=60))
    w.read(0.0)
    assert w.read(30.0) == [] and w.read(53.9) == []  # more than DUE_TOLERANCE (6 s) early
    assert len(w.read(59.9)) == 1  # early by jitter: this period's probe
    assert w.read(60.0) == [] and w.read(113.9) == []  # and not a second one for the same period
    assert len(w.read(120.0)) == 1
    assert len(rtsp.requests) == 3


def test_reads_a_few_ms_early_still_probe_every_period_and_three_misses_go_offline(rtsp):
    # GB/T 28181 defaults; each read() comes slightly before its due time, as a jittery poll loop does
    w = watch(CameraSpec("cam", f"rtsp://127.0.0.1:{rtsp.port}/stream1"))
    early = [0.0, 0.003, 0.012, 0.001, 0.047, 0.008, 0.02, 0.005]
    got = [one(w, 60.0 * k - e) for k, e in enumerate(early[:5])]
    assert got == [("ok", "online")] * 5
    assert len(rtsp.requests) == 5  # one probe per period, none skipped
    rtsp.status = "RTSP/1.0 503 Service Unavailable"
    got = [one(w, 60.0 * k - e) for k, e in enumerate(early[5:], start=5)]
    assert got == [("stale", "online"), ("stale", "online"), ("fault", "offline")]
    rtsp.status = "RTSP/1.0 200 OK"
    assert one(w, 480.0 - 0.002) == ("ok", "online")


def test_a_late_read_probes_once_and_keeps_the_period(rtsp):
    w = watch(CameraSpec("cam", f"rtsp://127.0.0.1:{rtsp.port}/", heartbeat_s=60))
    w.read(0.0)
    assert len(w.read(200.0)) == 1  # three periods late: one probe, not a burst of catch-ups
    assert w.read(250.0) == []
    assert len(w.read(260.0)) == 1


def test_a_server_that_never_answers_is_a_miss(rtsp):
    rtsp.silent = True
    w = watch(CameraSpec("cam", f"rtsp://127.0.0.1:{rtsp.port}/", misses=1))
    s = w.read(0.0)[0]
    assert (s.quality, s.state) == ("fault", "offline") and "rtsp probe failed" in s.detail


def test_http_get_status(web):
    w = watch(CameraSpec("cam", f"http://127.0.0.1:{web.port}/snapshot.jpg", misses=2))
    assert one(w, 0.0) == ("ok", "online")
    web.status = 500
    assert one(w, 60.0) == ("stale", "online")
    assert one(w, 120.0) == ("fault", "offline")


def test_onvif_get_system_date_and_time(web):
    w = watch(CameraSpec("cam", f"onvif://127.0.0.1:{web.port}", misses=1))
    assert one(w, 0.0) == ("ok", "online")
    path, body, content_type = web.posts[0]
    assert path == "/onvif/device_service" and b"GetSystemDateAndTime" in body
    assert content_type.startswith("application/soap+xml")
    web.status = 401
    assert one(w, 60.0) == ("fault", "offline")


def test_tcp_connect_refused_three_times_then_accepted_again(tcp):
    w = watch(CameraSpec("cam", f"tcp://127.0.0.1:{tcp.port}"))
    assert one(w, 0.0) == ("ok", "online")
    tcp.close()
    assert [one(w, t) for t in (60.0, 120.0, 180.0)] == [("stale", "online"), ("stale", "online"),
                                                          ("fault", "offline")]
    tcp.open()
    assert one(w, 240.0) == ("ok", "online")


def test_pushed_heartbeats_keep_a_passive_camera_online():
    w = watch(CameraSpec("nvr-cam", "push://nvr-1/channel/3", heartbeat_s=60, misses=3))
    w.record_heartbeat("nvr-cam", 0.0)
    assert one(w, 10.0) == ("ok", "online")
    assert [one(w, t) for t in (70.0, 130.0, 190.0)][-1] == ("fault", "offline")  # pushes stopped
    w.record_heartbeat("nvr-cam", 240.0)
    assert one(w, 250.0) == ("ok", "online")
    with pytest.raises(KeyError):
        w.record_heartbeat("no-such-camera", 0.0)


def test_an_unsupported_scheme_is_a_miss_not_an_exception():
    w = watch(CameraSpec("cam", "gopher://127.0.0.1/", misses=1))
    s = w.read(0.0)[0]
    assert s.state == "offline" and "unsupported probe scheme" in s.detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_drivers_watches_the_gateway_cameras_with_injected_probes(tcp):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    for cam in data["cameras"]:  # only loopback is ever probed for real
        if cam["probe"].startswith("tcp://"):
            cam["probe"] = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens: refused
    data["cameras"][0]["probe"] = f"tcp://127.0.0.1:{tcp.port}"
    cfg = parse_config(data)
    probed = []
    fake = {"rtsp": lambda url, timeout: probed.append(url),
            "http": lambda url, timeout: probed.append(url)}
    drivers = [d for d in build_drivers(cfg, cfg.gateways[0], probe=fake) if isinstance(d, CameraWatch)]
    assert len(drivers) == 1
    got = {s.sensor: s for s in drivers[0].read(0.0)}
    assert set(got) == {c.id for c in cfg.cameras}
    assert got["cam-hall"].state == "online"  # the real TCP listener
    assert len(probed) == 6  # five rtsp:// and one http:// camera, through the injected probes
    assert got["cam-kitchen"].quality == "stale"  # refused: a first miss
