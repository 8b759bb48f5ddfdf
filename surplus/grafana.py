"""`surplus grafana publish`: datasource, folder, dashboards, contact point to a Grafana. I/O.

Talks to Grafana's HTTP API through grafana-api (GrafanaFace). Every object has a fixed uid, so
a second publish updates in place and never duplicates. A wrong URL, an unreachable host or a
refused token is one line (UserError), never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from surplus.errors import UserError
from surplus.paths import REPO

PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE_UID = "surplus-clickhouse"
DATASOURCE_NAME = "Surplus ClickHouse"
FOLDER_UID = "surplus"
CONTACT_POINT = "surplus-webhook"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"


@dataclass(frozen=True, slots=True)
class ClickHouseSource:
    """Where the datasource's queries go: the analyst's read-only account (SPEC §5)."""

    host: str = "clickhouse"
    port: int = 8123
    protocol: str = "http"
    secure: bool = False
    database: str = "cpn"
    username: str = "analyst"
    password: str = ""


def datasource_payload(source: ClickHouseSource) -> dict[str, Any]:
    """The datasource as deploy/grafana/provisioning/datasources/clickhouse.yaml declares it."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": PLUGIN,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": source.host,
            "port": source.port,
            "protocol": source.protocol,
            "secure": source.secure,
            "username": source.username,
            "defaultDatabase": source.database,
            "dialTimeout": 10,
            "queryTimeout": 60,
        },
        "secureJsonData": {"password": source.password},
    }


def contact_point_payload(url: str) -> dict[str, Any]:
    return {
        "uid": CONTACT_POINT,
        "name": CONTACT_POINT,
        "type": "webhook",
        "settings": {"url": url, "httpMethod": "POST"},
        "disableResolveMessage": False,
    }


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """Every *.json dashboard in `directory`, each with a uid and a title."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise UserError(f"no dashboards (*.json) in {directory}")
    boards = []
    for path in paths:
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"dashboard {path}: {exc}") from None
        if not isinstance(board, dict) or not board.get("uid") or not board.get("title"):
            raise UserError(f"dashboard {path}: needs a uid and a title")
        boards.append(board)
    return boards


def connect(url: str, *, token: str | None, basic_auth: str | None, timeout_s: float) -> Any:
    """A GrafanaFace for `url` (http(s)://host[:port][/prefix]) with a token or user:password."""
    from grafana_api.grafana_face import GrafanaFace

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"Grafana URL {url!r}: use http(s)://host[:port][/path]")
    if bool(token) == bool(basic_auth):
        raise UserError("give either --token (GRAFANA_TOKEN) or --basic-auth user:password")
    auth: Any = token
    if basic_auth:
        user, sep, password = basic_auth.partition(":")
        if not sep:
            raise UserError("--basic-auth: use user:password")
        auth = (user, password)
    prefix = parts.path.strip("/")
    return GrafanaFace(auth, host=parts.hostname, port=parts.port, protocol=parts.scheme,
                       url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout_s)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


def _find(get: Callable[[str], Any], key: str) -> Any | None:
    """`get(key)`, or None when Grafana answers 404."""
    from grafana_api.grafana_api import GrafanaClientError

    try:
        return get(key)
    except GrafanaClientError as exc:
        if _status(exc) == 404:
            return None
        raise


def publish(face: Any, *, source: ClickHouseSource, dashboards: list[dict[str, Any]],
            folder_title: str, webhook_url: str | None) -> Iterator[str]:
    """Create or update everything, yielding one line per object."""
    try:
        health = face.api.GET("/health")
    except TypeError:  # grafana-api indexing an HTML error page
        health = None
    if not isinstance(health, dict) or "database" not in health:
        raise UserError("the URL answers, but not like Grafana's /api/health: wrong URL?")

    payload = datasource_payload(source)
    existing = _find(face.api.GET, f"/datasources/uid/{DATASOURCE_UID}")
    if existing is None:
        face.datasource.create_datasource(payload)
        yield f"datasource {DATASOURCE_UID}: created"
    else:
        face.datasource.update_datasource(existing["id"], {**payload, "id": existing["id"]})
        yield f"datasource {DATASOURCE_UID}: updated"

    if _find(face.folder.get_folder, FOLDER_UID) is None:
        face.folder.create_folder(folder_title, uid=FOLDER_UID)
        yield f"folder {FOLDER_UID}: created"
    else:
        face.folder.update_folder(FOLDER_UID, folder_title, overwrite=True)
        yield f"folder {FOLDER_UID}: updated"

    for board in dashboards:
        uid = board["uid"]
        known = _find(face.dashboard.get_dashboard, uid) is not None
        answer = face.dashboard.update_dashboard({
            "dashboard": {**board, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "surplus grafana publish",
        })
        verb = "updated" if known else "created"
        yield f"dashboard {uid}: {verb} (version {answer.get('version', '?')})"

    if webhook_url is None:
        yield f"contact point {CONTACT_POINT}: skipped (no --webhook-url)"
        return
    body = contact_point_payload(webhook_url)
    headers = {"X-Disable-Provenance": "true"}
    points = face.api.GET(f"/v1/provisioning/contact-points?name={CONTACT_POINT}")
    if any(p.get("uid") == CONTACT_POINT for p in points or []):
        face.api.PUT(f"/v1/provisioning/contact-points/{CONTACT_POINT}", json=body, headers=headers)
        yield f"contact point {CONTACT_POINT}: updated"
    else:
        face.api.POST("/v1/provisioning/contact-points", json=body, headers=headers)
        yield f"contact point {CONTACT_POINT}: created"


@contextmanager
def one_line_errors(url: str) -> Iterator[None]:
    """Turn what Grafana or the network says into one UserError line."""
    import requests
    from grafana_api.grafana_api import GrafanaClientError, GrafanaServerError

    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        why = "connection refused" if "refused" in str(exc).lower() else "no connection"
        raise UserError(f"cannot reach Grafana at {url}: {why}") from None
    except requests.exceptions.Timeout:
        raise UserError(f"Grafana at {url} did not answer in time") from None
    except requests.exceptions.JSONDecodeError:  # a body that is not JSON: not Grafana's API
        raise UserError(f"{url} does not answer like Grafana's API: wrong URL?") from None
    except requests.exceptions.RequestException as exc:
        raise UserError(f"Grafana at {url}: {type(exc).__name__}") from None
    except GrafanaClientError as exc:
        status = _status(exc)
        if status == 401:
            raise UserError(
                f"Grafana at {url} refused the credentials (401): check --token") from None
        if status == 403:
            raise UserError(
                f"Grafana at {url} forbids this (403): the token needs the Admin role") from None
        if status == 404:
            raise UserError(f"Grafana at {url} has no such API (404): wrong URL?") from None
        raise UserError(f"Grafana at {url} refused a request ({status}): {_line(exc)}") from None
    except GrafanaServerError as exc:
        raise UserError(f"Grafana at {url} failed ({_status(exc)}): {_line(exc)}") from None


def _line(exc: Exception) -> str:
    """The first line of what Grafana said, at most 200 characters."""
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@click.group()
def grafana() -> None:
    """Grafana: publish the datasource, dashboards and alert contact point."""


@grafana.command("publish")
@click.option("--url", envvar="GRAFANA_URL", required=True,
              help="Grafana, e.g. http://localhost:3000 [env GRAFANA_URL]")
@click.option("--token", envvar="GRAFANA_TOKEN",
              help="service account token (Admin) [env GRAFANA_TOKEN]")
@click.option("--basic-auth", envvar="GRAFANA_BASIC_AUTH", help="user:password instead of a token")
@click.option("--clickhouse-host", envvar="GRAFANA_CLICKHOUSE_HOST", default="clickhouse",
              show_default=True, help="ClickHouse host as Grafana reaches it")
@click.option("--clickhouse-port", type=int, default=8123, show_default=True)
@click.option("--clickhouse-protocol", type=click.Choice(["http", "native"]), default="http",
              show_default=True)
@click.option("--clickhouse-secure/--no-clickhouse-secure", default=False, help="TLS to ClickHouse")
@click.option("--clickhouse-database", default="cpn", show_default=True)
@click.option("--clickhouse-user", default="analyst", show_default=True,
              help="the read-only analyst user")
@click.option("--clickhouse-password", envvar="GRAFANA_CLICKHOUSE_PASSWORD", default="",
              help="its password [env GRAFANA_CLICKHOUSE_PASSWORD]")
@click.option("--webhook-url", envvar="SURPLUS_WEBHOOK_URL",
              help=f"URL of the webhook contact point {CONTACT_POINT!r} [env SURPLUS_WEBHOOK_URL]")
@click.option("--folder", "folder_title", default="Surplus", show_default=True)
@click.option("--dashboards", "dashboards_dir", type=click.Path(path_type=Path, file_okay=False),
              envvar="SURPLUS_GRAFANA_DASHBOARDS", default=DASHBOARDS_DIR, show_default=True)
@click.option("--timeout-s", type=float, default=10.0, show_default=True)
def publish_cmd(url: str, token: str | None, basic_auth: str | None, clickhouse_host: str,
                clickhouse_port: int, clickhouse_protocol: str, clickhouse_secure: bool,
                clickhouse_database: str, clickhouse_user: str, clickhouse_password: str,
                webhook_url: str | None, folder_title: str, dashboards_dir: Path,
                timeout_s: float) -> None:
    """Create or update the ClickHouse datasource, the Surplus folder, every dashboard and the
    webhook contact point. Idempotent: objects have fixed uids and are updated in place."""
    source = ClickHouseSource(host=clickhouse_host, port=clickhouse_port,
                              protocol=clickhouse_protocol, secure=clickhouse_secure,
                              database=clickhouse_database, username=clickhouse_user,
                              password=clickhouse_password)
    boards = load_dashboards(dashboards_dir)
    face = connect(url, token=token, basic_auth=basic_auth, timeout_s=timeout_s)
    with one_line_errors(url.rstrip("/")):
        for line in publish(face, source=source, dashboards=boards, folder_title=folder_title,
                            webhook_url=webhook_url or None):
            click.echo(line)
    click.echo(f"published {len(boards)} dashboards to {url}")
