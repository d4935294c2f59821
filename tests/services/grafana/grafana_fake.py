"""A contract fake of the few Grafana HTTP API endpoints ``radwatch grafana push`` uses.

Grafana cannot run on this machine (no server package), so this is a real HTTP server (stdlib
``http.server`` on a free port, in a thread) that answers like Grafana's documented HTTP API
(https://grafana.com/docs/grafana/latest/developers/http_api/) for:

- ``GET /api/frontend/settings``: ``{"buildInfo": {"version", "commit", "buildstamp"}, ...}``
  (what ``grafana-client``'s health check reads);
- ``GET /api/folders``: ``[{"id", "uid", "title"}]``; ``POST /api/folders`` with
  ``{"uid", "title"}``: the folder, or 409 when the uid is taken;
- ``GET /api/datasources``, ``GET /api/datasources/uid/:uid``,
  ``GET /api/datasources/name/:name``: the data source, or 404 ``{"message": "Data source not
  found"}``;
- ``GET /api/dashboards/uid/:uid``: ``{"dashboard", "meta"}`` or 404;
- ``POST /api/dashboards/db`` with ``{"dashboard", "folderUid", "overwrite", "message"}``:
  ``{"id", "uid", "url", "status": "success", "version", "slug"}``; without ``overwrite`` an
  existing uid is a 412 ``version-mismatch`` and the same title in the folder a 412
  ``name-exists``, as in Grafana.

Authentication is ``Authorization: Bearer <token>``: an unknown token gets 401, a Viewer token
gets 403 on writes. Every request is recorded (method, path, authorization, JSON body) so tests
can assert on what the client sent.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

EDITOR_TOKEN = "glsa_editor_token"
VIEWER_TOKEN = "glsa_viewer_token"
GRAFANA_VERSION = "11.3.0"


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeGrafana:
    folders: list[dict[str, Any]] = field(default_factory=list)
    datasources: list[dict[str, Any]] = field(default_factory=list)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    tokens: dict[str, str] = field(
        default_factory=lambda: {EDITOR_TOKEN: "Editor", VIEWER_TOKEN: "Viewer"}
    )
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def calls(self, method: str, path_prefix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- request handling ---------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        path = urlparse(raw_path).path
        with self._lock:
            self.requests.append(Recorded(method, path, auth, body))
            token = auth.removeprefix("Bearer ") if auth and auth.startswith("Bearer ") else None
            role = self.tokens.get(token or "")
            if role is None:
                return 401, {"message": "Unauthorized"}
            if method == "POST" and role == "Viewer":
                return 403, {"message": "Access denied"}
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/api/frontend/settings" and method == "GET":
            return 200, {
                "appSubUrl": "",
                "buildInfo": {
                    "version": GRAFANA_VERSION,
                    "commit": "abc1234",
                    "buildstamp": 1730000000,
                },
            }
        if path == "/api/folders" and method == "GET":
            return 200, [
                {"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders
            ]
        if path == "/api/folders" and method == "POST":
            return self._create_folder(body)
        if path == "/api/datasources" and method == "GET":
            return 200, self.datasources
        m = re.fullmatch(r"/api/datasources/(uid|name)/(.+)", path)
        if m and method == "GET":
            key, value = m.group(1), unquote(m.group(2))
            for ds in self.datasources:
                if ds[key] == value:
                    return 200, ds
            return 404, {"message": "Data source not found"}
        m = re.fullmatch(r"/api/dashboards/uid/(.+)", path)
        if m and method == "GET":
            stored = self.dashboards.get(m.group(1))
            if stored is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {
                "dashboard": stored["dashboard"],
                "meta": {"folderUid": stored["folderUid"], "version": stored["version"]},
            }
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        return 404, {"message": "Not found"}

    def _create_folder(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("title"):
            return 400, {"message": "bad request data"}
        uid = body.get("uid") or f"f{self.next_id()}"
        if any(f["uid"] == uid for f in self.folders):
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {
            "id": self.next_id(),
            "uid": uid,
            "title": body["title"],
            "url": f"/dashboards/f/{uid}/{_slug(body['title'])}",
            "version": 1,
        }
        self.folders.append(folder)
        return 200, folder

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        dash = body["dashboard"]
        uid = dash.get("uid")
        folder_uid = body.get("folderUid")
        if not uid or not dash.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        if folder_uid and not any(f["uid"] == folder_uid for f in self.folders):
            return 400, {"message": "folder not found"}
        overwrite = bool(body.get("overwrite"))
        existing = self.dashboards.get(uid)
        if not overwrite:
            if existing is not None:
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            if any(
                d["dashboard"]["title"] == dash["title"] and d["folderUid"] == folder_uid
                for d in self.dashboards.values()
            ):
                return 412, {
                    "message": "A dashboard with the same name in the folder already exists",
                    "status": "name-exists",
                }
        version = 1 if existing is None else existing["version"] + 1
        ident = existing["id"] if existing is not None else self.next_id()
        self.dashboards[uid] = {
            "id": ident,
            "dashboard": {**dash, "id": ident, "version": version},
            "folderUid": folder_uid,
            "version": version,
        }
        slug = _slug(dash["title"])
        return 200, {
            "id": ident,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGrafana

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        status, payload = self.fake.handle(
            method, self.path, self.headers.get("Authorization"), body
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeGrafanaServer:
    """Runs :class:`FakeGrafana` on 127.0.0.1 and a free port until :meth:`stop`."""

    def __init__(self, fake: FakeGrafana) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeGrafanaServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
