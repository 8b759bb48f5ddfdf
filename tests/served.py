"""Run `surplus store serve` from a test: a process on a free port over a store of its own.

The users are deploy/clickhouse's: the national `analyst` and, copied the way the example says,
the CN-GZ provincial analyst `analyst_cn_gz` (users.d/analyst-cn-gz.xml).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
USERS_D = REPO / "deploy" / "clickhouse" / "users.d"
PASSWORDS = {"surplus": "writer-pw", "analyst": "analyst-pw", "analyst_cn_gz": "gz-pw"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def users_dir(where: Path) -> Path:
    """deploy/clickhouse/users.d with the provincial example enabled as the README says."""
    where.mkdir(parents=True, exist_ok=True)
    for path in USERS_D.glob("*.xml"):
        shutil.copy(path, where / path.name)
    shutil.copy(USERS_D / "province-analyst.xml.example", where / "analyst-cn-gz.xml")
    return where


@dataclass
class Served:
    """A running `surplus store serve`."""

    store: Path
    port: int
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def url(self) -> str:
        return self.stdout[-1].strip()

    def client(self, user: str = "surplus", **kwargs: Any) -> Any:
        import clickhouse_connect

        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user,
                                             password=PASSWORDS[user], database="cpn", **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SURPLUS_WRITER_PASSWORD": PASSWORDS["surplus"],
            "SURPLUS_ANALYST_PASSWORD": PASSWORDS["analyst"],
            "CLICKHOUSE_ANALYST_CN_GZ_PASSWORD": PASSWORDS["analyst_cn_gz"]}


def serve(store: Path, users: Path | None = None, port: int | None = None, timeout: float = 120,
          log: Path | None = None) -> Served:
    """Start serving `store`; return once the writer's URL (its last line) is printed."""
    port = port or free_port()
    args = [sys.executable, "-m", "surplus.cli", "store", "serve", "--url", f"chdb://{store}",
            "--port", str(port)]
    if users is not None:
        args += ["--users-dir", str(users)]
    err = open(log or os.devnull, "ab")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(args, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    served = Served(store, port, proc, log=log)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        served.stdout.append(line)
        if line.startswith("http://"):
            return served
    with contextlib.suppress(Exception):
        proc.kill()
    raise AssertionError(f"store serve did not start: {''.join(served.stdout)}"
                         + (log.read_text()[-2000:] if log and log.exists() else ""))


def writer_url(served: Served) -> str:
    parts = urlsplit(served.url)
    assert parts.username == "surplus" and parts.password == PASSWORDS["surplus"], served.url
    return served.url


CLIENTS = REPO / "tests" / "clients"
CACHE = REPO / "var" / "cache" / "clients"


def _stamp(sources: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(sources):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _tool(name: str) -> str:
    from tests.services import unavailable

    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed")
    assert found is not None
    return found


def build_jdbc() -> list[str]:
    """`java -cp … surplus.JdbcQuery`, built by Maven under var/cache (again only when changed)."""
    _tool("java")
    mvn = _tool("mvn")
    sources = [CLIENTS / "jdbc" / "pom.xml", *sorted((CLIENTS / "jdbc" / "src").rglob("*.java"))]
    out = CACHE / "jdbc"
    stamp = out / f".built-{_stamp(sources)}"
    if not stamp.exists():
        done = subprocess.run([mvn, "-q", "-B", "-f", str(CLIENTS / "jdbc" / "pom.xml"),
                               f"-DbuildDir={out}", "package"], capture_output=True, text=True,
                              timeout=900, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        stamp.touch()
    return ["java", "-cp", f"{out / 'classes'}:{out / 'lib'}/*", "surplus.JdbcQuery"]


def build_go() -> Path:
    """The clickhouse-go panel runner, built by `go build` under var/cache (again only when changed)."""
    go = _tool("go")
    sources = [CLIENTS / "go" / n for n in ("go.mod", "go.sum", "main.go")]
    binary = CACHE / "go" / f"panels-{_stamp(sources)}"
    if not binary.exists():
        done = subprocess.run([go, "build", "-o", str(binary), "."], cwd=CLIENTS / "go",
                              capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return binary
