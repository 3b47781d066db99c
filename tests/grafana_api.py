"""A local HTTP server that answers the parts of Grafana's HTTP API that `stationwatch dashboards
push` uses, with the status codes and bodies Grafana's API reference documents (folders, dashboards
by uid, data sources by uid, Bearer tokens), and records every request. It stands in for Grafana,
which cannot be installed on these machines; it is not Grafana, and says nothing about how Grafana
renders what it stores."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "dashboard"


class GrafanaAPI:
    def __init__(self, token: str = "sw-test-token"):
        self.token = token
        self.requests: list[dict] = []
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}  # uid → {"dashboard": …, "meta": …}
        self.datasources: dict[str, dict] = {}
        self._ids = iter(range(1, 10_000))
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.loads(body) if body else None
                with outer._lock:
                    outer.requests.append({"method": self.command, "path": self.path, "json": data,
                                           "auth": self.headers.get("Authorization")})
                    status, answer = outer.answer(self.command, self.path, data, self.headers.get("Authorization"))
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---- Grafana's answers
    def answer(self, method: str, path: str, data, auth: str | None) -> tuple[int, dict]:
        if auth != f"Bearer {self.token}":
            return 401, {"message": "invalid API key"}
        route = (method, *path.split("?")[0].strip("/").split("/"))
        match route:
            case ("GET", "api", "folders", uid):
                return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
            case ("POST", "api", "folders"):
                uid = data.get("uid")
                if uid in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[uid] = {"id": next(self._ids), "uid": uid, "title": data["title"],
                                     "url": f"/dashboards/f/{uid}/{_slug(data['title'])}", "version": 1}
                return 200, self.folders[uid]
            case ("PUT", "api", "folders", uid):
                if uid not in self.folders:
                    return 404, {"message": "folder not found"}
                self.folders[uid].update(title=data["title"], version=self.folders[uid]["version"] + 1)
                return 200, self.folders[uid]
            case ("GET", "api", "dashboards", "uid", uid):
                return (200, self.dashboards[uid]) if uid in self.dashboards else (404, {"message": "Dashboard not found"})
            case ("POST", "api", "dashboards", "db"):
                return self._save(data)
            case ("GET", "api", "datasources", "uid", uid):
                return (200, self.datasources[uid]) if uid in self.datasources else (404, {"message": "Data source not found"})
            case ("POST", "api", "datasources"):
                if data["uid"] in self.datasources:
                    return 409, {"message": "data source with the same uid already exists"}
                self.datasources[data["uid"]] = {**data, "id": next(self._ids), "version": 1}
                return 200, {"datasource": self.datasources[data["uid"]], "id": self.datasources[data["uid"]]["id"],
                             "message": "Datasource added", "name": data["name"]}
            case ("PUT", "api", "datasources", "uid", uid):
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                old = self.datasources[uid]
                self.datasources[uid] = {**data, "id": old["id"], "version": old["version"] + 1}
                return 200, {"datasource": self.datasources[uid], "id": old["id"], "message": "Datasource updated",
                             "name": data["name"]}
        return 404, {"message": "Not found"}

    def _save(self, data: dict) -> tuple[int, dict]:
        board, folder = data.get("dashboard") or {}, data.get("folderUid")
        if not board.get("title"):
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found", "status": "folder-not-found"}
        uid = board.get("uid")
        old = self.dashboards.get(uid)
        if old is not None and not data.get("overwrite"):
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        version = old["dashboard"]["version"] + 1 if old else 1
        stored_id = old["dashboard"]["id"] if old else next(self._ids)
        self.dashboards[uid] = {"dashboard": {**board, "id": stored_id, "version": version},
                                "meta": {"folderUid": folder, "slug": _slug(board["title"]), "version": version}}
        return 200, {"id": stored_id, "uid": uid, "url": f"/d/{uid}/{_slug(board['title'])}", "status": "success",
                     "version": version, "slug": _slug(board["title"])}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
