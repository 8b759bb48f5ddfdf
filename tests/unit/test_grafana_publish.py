"""`surplus grafana publish` against an HTTP server in this process that plays Grafana's API.

No Grafana engine runs here: the fake keeps datasources, folders, dashboards and contact points
by uid (as Grafana does) and records every request, so the payloads and the idempotence of a
second publish can be checked. Errors go through the real console script in a subprocess: one
line, non-zero exit, no traceback. Where CI=true and a Docker engine answers, the same publish
runs against a real Grafana from testcontainers.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
SURPLUS = Path(sys.executable).parent / "surplus"
GOOD, VIEWER = "good-token", "viewer-token"


@dataclass
class State:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    contact_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)


class FakeGrafana(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.state.requests.append({"method": method, "path": url.path, "query": url.query,
                                    "body": body, "headers": dict(self.headers)})
        if url.path.startswith("/web/"):
            self._reply(200, "<html><body>a web page, not Grafana</body></html>", "text/html")
            return
        if url.path == "/api/health":
            self._reply(200, {"commit": "fake", "database": "ok", "version": "11.3.0"})
            return
        if not url.path.startswith("/api/"):
            self._reply(404, "<html><body>Not found</body></html>", "text/html")
            return
        auth = self.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(b"admin:admin").decode()
        if auth not in (f"Bearer {GOOD}", f"Bearer {VIEWER}", basic):
            self._reply(401, {"message": "Unauthorized"})
            return
        if auth == f"Bearer {VIEWER}" and method != "GET":
            self._reply(403, {"message": "Permission denied"})
            return
        self._route(method, url.path[len("/api"):], parse_qs(url.query), body)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        s, parts = self.state, path.strip("/").split("/")
        if parts[:2] == ["datasources", "uid"] and method == "GET":
            found = s.datasources.get(parts[2])
            self._reply(200 if found else 404, found or {"message": "Data source not found"})
        elif parts == ["datasources"] and method == "POST":
            if any(d["name"] == body["name"] for d in s.datasources.values()):
                self._reply(409, {"message": "data source with the same name already exists"})
                return
            s.datasources[body["uid"]] = {**body, "id": len(s.datasources) + 1}
            self._reply(200, {"message": "Datasource added", "id": len(s.datasources)})
        elif parts[0] == "datasources" and method == "PUT":
            uid = next(u for u, d in s.datasources.items() if d["id"] == int(parts[1]))
            s.datasources[uid] = {**body, "id": int(parts[1])}
            self._reply(200, {"message": "Datasource updated"})
        elif parts[0] == "folders" and method == "GET":
            found = s.folders.get(parts[1])
            self._reply(200 if found else 404, found or {"message": "folder not found"})
        elif parts == ["folders"] and method == "POST":
            if body["uid"] in s.folders:
                self._reply(409, {"message": "a folder with the same uid already exists"})
                return
            s.folders[body["uid"]] = {**body, "id": len(s.folders) + 1, "version": 1}
            self._reply(200, s.folders[body["uid"]])
        elif parts[0] == "folders" and method == "PUT":
            s.folders[parts[1]] = {**s.folders[parts[1]], "title": body["title"]}
            self._reply(200, s.folders[parts[1]])
        elif parts[:2] == ["dashboards", "uid"] and method == "GET":
            found = s.dashboards.get(parts[2])
            self._reply(200 if found else 404, found or {"message": "Dashboard not found"})
        elif parts == ["dashboards", "db"] and method == "POST":
            self._save_dashboard(body)
        elif parts[:3] == ["v1", "provisioning", "contact-points"] and method == "GET":
            names = query.get("name", [])
            self._reply(200, [c for c in s.contact_points.values() if not names or c["name"] in names])
        elif parts == ["v1", "provisioning", "contact-points"] and method == "POST":
            if body["uid"] in s.contact_points:
                self._reply(400, {"message": "contact point with this uid already exists"})
                return
            s.contact_points[body["uid"]] = body
            self._reply(202, body)
        elif parts[:3] == ["v1", "provisioning", "contact-points"] and method == "PUT":
            s.contact_points[parts[3]] = body
            self._reply(202, {"message": "contactpoint updated"})
        else:
            self._reply(404, {"message": "Not found"})

    def _save_dashboard(self, body: dict[str, Any]) -> None:
        board, s = body["dashboard"], self.state
        if body.get("folderUid") not in s.folders:
            self._reply(400, {"message": "folder not found"})
            return
        old = s.dashboards.get(board["uid"])
        if old and not body.get("overwrite"):
            self._reply(412, {"message": "The dashboard has been changed by someone else"})
            return
        version = old["meta"]["version"] + 1 if old else 1
        s.dashboards[board["uid"]] = {"dashboard": {**board, "version": version},
                                      "meta": {"version": version, "folderUid": body["folderUid"]}}
        self._reply(200, {"status": "success", "uid": board["uid"], "version": version})


@pytest.fixture
def grafana() -> Iterator[tuple[str, State]]:
    state = State()
    handler = type("Handler", (FakeGrafana,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _publish(url: str, *extra: str) -> int:
    from surplus.cli import main

    return main(["grafana", "publish", "--url", url, "--token", GOOD,
                 "--clickhouse-password", "s3cret", *extra])


def test_publish_creates_everything_then_updates_in_place(
        grafana: tuple[str, State], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = grafana
    code = _publish(url, "--webhook-url", "https://hooks.example/surplus")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "datasource surplus-clickhouse: created" in out
    assert out.count(": created") == 1 + 1 + len(DASHBOARDS) + 1

    ds = state.datasources["surplus-clickhouse"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["jsonData"]["username"] == "analyst"
    assert ds["jsonData"]["defaultDatabase"] == "cpn"
    assert ds["secureJsonData"] == {"password": "s3cret"}
    assert set(state.folders) == {"surplus"}
    assert set(state.dashboards) == {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    posts = [r for r in state.requests if r["path"] == "/api/dashboards/db"]
    assert all(r["body"]["folderUid"] == "surplus" and r["body"]["overwrite"] for r in posts)
    assert all(r["body"]["dashboard"]["id"] is None for r in posts)
    assert state.contact_points["surplus-webhook"]["settings"]["url"] == "https://hooks.example/surplus"
    assert state.contact_points["surplus-webhook"]["type"] == "webhook"
    assert all(r["headers"].get("Authorization") == f"Bearer {GOOD}"
               for r in state.requests if r["path"] != "/api/health")

    created = len(state.requests)
    code = _publish(url, "--webhook-url", "https://hooks.example/v2")
    out = capsys.readouterr().out
    assert code == 0, out
    assert ": created" not in out
    assert out.count(": updated") == 1 + 1 + len(DASHBOARDS) + 1
    assert len(state.datasources) == 1 and len(state.folders) == 1
    assert len(state.dashboards) == len(DASHBOARDS) and len(state.contact_points) == 1
    assert {d["meta"]["version"] for d in state.dashboards.values()} == {2}
    assert state.contact_points["surplus-webhook"]["settings"]["url"] == "https://hooks.example/v2"
    second = state.requests[created:]
    assert not [r for r in second if r["method"] == "POST" and r["path"] in (
        "/api/datasources", "/api/folders", "/api/v1/provisioning/contact-points")]
    assert [r["method"] for r in second if r["path"].startswith("/api/datasources/")] == ["GET", "PUT"]


def test_publish_without_a_webhook_skips_the_contact_point(
        grafana: tuple[str, State], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = grafana
    assert _publish(url) == 0
    assert "contact point surplus-webhook: skipped" in capsys.readouterr().out
    assert not state.contact_points


def test_the_published_datasource_is_the_provisioned_one() -> None:
    import yaml

    from surplus.grafana import ClickHouseSource, datasource_payload

    provisioned = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text())["datasources"][0]
    published = datasource_payload(ClickHouseSource(password="x"))
    for key in ("uid", "name", "type", "access", "isDefault"):
        assert published[key] == provisioned[key]
    assert published["jsonData"].keys() == provisioned["jsonData"].keys()
    for key in ("port", "protocol", "username", "defaultDatabase", "secure"):
        assert published["jsonData"][key] == provisioned["jsonData"][key]
    assert provisioned["secureJsonData"]["password"] == "${GRAFANA_CLICKHOUSE_PASSWORD}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SURPLUS)] if SURPLUS.exists() else [sys.executable, "-m", "surplus.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "SURPLUS_WEBHOOK"))}
    return subprocess.run([*command, "grafana", "publish", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.mark.parametrize(("case", "expect"), [
    ("bad-token", "refused the credentials (401)"),
    ("viewer-token", "forbids this (403)"),
    ("refused", "connection refused"),
    ("wrong-path", "no such API (404)"),
    ("not-grafana", "does not answer like Grafana"),
    ("bad-url", "use http(s)://host"),
    ("no-token", "either --token"),
])
def test_errors_are_one_line_without_a_traceback(grafana: tuple[str, State], case: str, expect: str) -> None:
    url, _ = grafana
    args = {
        "bad-token": ["--url", url, "--token", "nope"],
        "viewer-token": ["--url", url, "--token", VIEWER],
        "refused": ["--url", f"http://127.0.0.1:{_free_port()}", "--token", GOOD],
        "wrong-path": ["--url", f"{url}/nothing", "--token", GOOD],
        "not-grafana": ["--url", f"{url}/web", "--token", GOOD],
        "bad-url": ["--url", "ftp://grafana.example", "--token", GOOD],
        "no-token": ["--url", url],
    }[case]
    result = _run_cli(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("surplus: error:") and expect in lines[0], lines[0]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.docker
def test_publish_to_a_real_grafana(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs under `make test-docker` (needs a Docker engine), never under `make test`."""
    if not _docker_answers():
        unavailable("no Docker engine answers: no real Grafana to publish to")
    import requests
    from testcontainers.core.container import DockerContainer

    container = (DockerContainer("grafana/grafana:11.3.0")
                 .with_env("GF_INSTALL_PLUGINS", "grafana-clickhouse-datasource")
                 .with_exposed_ports(3000))
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(3000)}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/api/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        from surplus.cli import main

        args = ["grafana", "publish", "--url", url, "--basic-auth", "admin:admin",
                "--webhook-url", "http://example.invalid/hook"]
        assert main(args) == 0
        assert main(args) == 0
        out = capsys.readouterr().out
        assert out.count(": updated") == 1 + 1 + len(DASHBOARDS) + 1
        found = requests.get(f"{url}/api/search", params={"folderUIDs": "surplus", "type": "dash-db"},
                             auth=("admin", "admin"), timeout=10).json()
        assert len(found) == len(DASHBOARDS)
        for board in found:
            assert requests.get(f"{url}/api/dashboards/uid/{board['uid']}", auth=("admin", "admin"),
                                timeout=10).json()["meta"]["version"] == 2


def test_bad_dashboard_files_are_one_line_errors(tmp_path: Path) -> None:
    from surplus.errors import UserError
    from surplus.grafana import load_dashboards

    with pytest.raises(UserError, match="no dashboards"):
        load_dashboards(tmp_path)
    (tmp_path / "a.json").write_text('{"title": "no uid"}')
    with pytest.raises(UserError, match="needs a uid and a title"):
        load_dashboards(tmp_path)
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(UserError, match=r"a\.json"):
        load_dashboards(tmp_path)
    assert len(load_dashboards(REPO / "deploy" / "grafana" / "dashboards")) == len(DASHBOARDS)
