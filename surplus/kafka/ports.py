"""Small OS-level helpers of the local broker: free ports, reachability, its last log lines. I/O.

`free_port()` is also what the tests and benchmarks use to start brokers without fixed ports.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from surplus.errors import UserError

HOST = "127.0.0.1"
_STAMP = re.compile(r"^\[[^]]*\] ")  # log4j's "[2025-01-01 00:00:00,000] "
_EXCEPTION = re.compile(r"^[\w.$]+(Exception|Error)\b")  # "java.lang.RuntimeException: why"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def env_port(name: str, default: int) -> int:
    """The port in variable `name` (default if unset); UserError if it is not a TCP port."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UserError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def tail(path: Path, lines: int = 12) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def last_words(logs_dir: Path, log_offset: int) -> str:
    """The JVM's last output lines and the ERROR/FATAL lines Kafka logged past `log_offset`."""
    output = tail(logs_dir / "kafka.out", 3)
    try:
        with open(logs_dir / "server.log", "rb") as log:
            log.seek(log_offset)
            logged = log.read().decode(errors="replace").splitlines()
    except OSError:
        logged = []
    errors = [_STAMP.sub("", line) for line in logged
              if " ERROR " in line or " FATAL " in line or _EXCEPTION.match(line)][-3:]
    joined = " | ".join(line.strip() for line in output + errors)
    return f"{joined or 'no output'} (logs in {logs_dir})"
