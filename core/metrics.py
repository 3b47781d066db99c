"""Self-metrics of a pipeline service: served as Prometheus text at ``/metrics`` and written to
InfluxDB (measurement ``pipeline``) so Grafana can chart the pipeline next to the readings."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Collect = Callable[[], dict[str, float]]

HELP = {
    "subscribed": "1 while the MQTT subscription is in place",
    "received_total": "MQTT messages received",
    "written_total": "points written to InfluxDB",
    "quarantined_total": "messages refused and quarantined",
    "write_errors_total": "failed InfluxDB writes (each retried)",
    "batches_total": "batches written",
    "last_batch_size": "points in the last batch",
    "lag_seconds": "age of the newest point of the last batch (write time − gateway time)",
    "queue_depth": "messages received and not yet written",
    "uptime_seconds": "seconds since start",
    "queue_bytes": "bytes held in the queue to the writer (payloads and their points)",
    "dropped_total": "QoS 0 messages dropped because the queue to the writer was full",
    "backpressure_waits_total": "times a QoS 1 message waited for room in the queue",
    "quarantine_dropped_total": "quarantined messages removed to keep the quarantine within its size",
    "quarantine_bytes": "bytes the quarantine holds",
    "clock_flagged_total": "messages stored with skew_s: their time was off their arrival by more than the tolerance",
    "seq_regressions_total": "times a gateway's seq went back (a new spool, a cloned gateway)",
    "hop_last_beat_age_seconds": "seconds since the hop's last heartbeat (supervision)",
    "beat_age_seconds": "seconds since the last heartbeat (in the store, or of what is watched)",
    "down": "1 while the watched service is reported gone",
    "up": "1: this service answers",
}


def prometheus_text(service: str, values: dict[str, float], labels: dict[str, dict[str, float]] | None = None,
                    label: str = "reason") -> str:
    """Prometheus text: ``values`` as one series each; ``labels`` as series by ``label`` (counters,
    or gauges when the name does not end in ``_total``)."""
    lines = []
    for name, value in values.items():
        metric = f"stationwatch_{service}_{name}"
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {metric} {HELP.get(name, name)}", f"# TYPE {metric} {kind}", f"{metric} {value:g}"]
    for name, series in (labels or {}).items():
        metric = f"stationwatch_{service}_{name}"
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {metric} {HELP.get(name, name)}", f"# TYPE {metric} {kind}"]
        lines += [f'{metric}{{{label}="{key}"}} {value:g}' for key, value in sorted(series.items())]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """A tiny HTTP server answering ``GET /metrics``; port 0 picks a free one."""

    def __init__(self, render: Callable[[], str], host: str = "127.0.0.1", port: int = 0):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
