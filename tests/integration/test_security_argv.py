"""No password in any process's argv during `surplus kafka up --secure`; the broker's files are private.

A thread polls every /proc/<pid>/cmdline while the command formats storage, makes the test CA
and keystores and starts the broker (any local user can read argv); none may hold a password.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from surplus.kafka.ports import free_port
from surplus.kafka.scram import passwords
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

SURPLUS = [sys.executable, "-m", "surplus.cli"]


def _argv_seen(stop: threading.Event, seen: set[bytes]) -> None:
    me = os.getpid()
    while not stop.is_set():
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    seen.add(handle.read())
            except OSError:
                continue


def test_no_password_in_any_argv_and_the_broker_home_is_private(tmp_path: Path) -> None:
    if shutil.which("java") is None or shutil.which("openssl") is None:
        unavailable("java and openssl are needed for the secure broker")
    home = tmp_path / "kafka"
    ports = ["--port", str(free_port()), "--controller-port", str(free_port()), "--mtls-port", str(free_port())]
    seen: set[bytes] = set()
    stop = threading.Event()
    poller = threading.Thread(target=_argv_seen, args=(stop, seen), daemon=True)
    poller.start()
    try:
        up = subprocess.run([*SURPLUS, "kafka", "up", "--secure", "--home", str(home), *ports, "--heap-mb", "384"],
                            capture_output=True, text=True, timeout=240, check=False)
        assert up.returncode == 0, up.stderr[-2000:]
        time.sleep(0.5)
    finally:
        stop.set()
        poller.join(10)
        subprocess.run([*SURPLUS, "kafka", "down", "--home", str(home)], capture_output=True, timeout=60, check=False)
    secrets = passwords(home / "secure")
    assert set(secrets) >= {"store", "broker", "admin"}
    java_runs = [a for a in seen if b"kafka.tools.StorageTool" in a or b"kafka.Kafka" in a or b"@" in a]
    assert any(b"kafka.Kafka" in a for a in seen), "the poller saw the broker's own command line"
    assert java_runs
    for argv in seen:
        for name, secret in secrets.items():
            assert secret.encode() not in argv, f"the {name} password is in an argv: {argv[:200]!r}"
    assert not (home / "secure" / "storage-format.args").exists(), "the argument file is removed"
    for private in (home, home / "data", home / "logs"):
        mode = stat.S_IMODE(private.stat().st_mode)
        assert mode & 0o077 == 0, f"{private} is readable by others ({oct(mode)})"
    for secret_file in (home / "secure" / "passwords.json", home / "server.properties"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
