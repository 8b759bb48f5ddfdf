"""`surplus kafka up --brokers 3` / `status` / `down` (surplus/kafka/cluster.py): three real JVMs in a
temporary home on free ports; a node of the cluster cannot be started on its own."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from surplus.kafka.ports import port_in_use
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(420)]

BIN = Path(sys.executable).parent
CLI = [str(BIN / "surplus")] if (BIN / "surplus").is_file() else [sys.executable, "-m", "surplus.cli"]


def free_range(n: int) -> int:
    """A port p with p .. p+n-1 all free (the CLI derives node ports from one base)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        if not any(port_in_use(base + i) for i in range(n)):
            return base
    raise AssertionError(f"no {n} consecutive free ports")


def kafka(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURPLUS_KAFKA_")}
    return subprocess.run([*CLI, "kafka", *args, "--home", str(home)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def kill_leftovers(home: Path) -> None:
    for node in home.glob("node-*"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((node / "kafka.pid").read_text()), signal.SIGKILL)


def test_three_brokers_up_status_down(tmp_path: Path) -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        unavailable("java is not installed: the local Kafka cluster needs Java 17")
    home = tmp_path / "cluster"
    base = free_range(6)
    try:
        up = kafka(home, "up", "--brokers", "3", "--port", str(base), "--heap-mb", "256")
        assert up.returncode == 0, up.stderr
        bootstrap = up.stdout.strip().splitlines()[-1]
        assert bootstrap == ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        assert "replication factor 3, min.insync.replicas 2" in up.stderr
        for i in range(3):
            props = (home / f"node-{i + 1}" / "server.properties").read_text()
            assert f"node.id={i + 1}\n" in props and "default.replication.factor=3\n" in props
            assert "min.insync.replicas=2\n" in props
            assert (f"controller.quorum.voters=1@127.0.0.1:{base + 3},2@127.0.0.1:{base + 4},"
                    f"3@127.0.0.1:{base + 5}\n") in props

        again = kafka(home, "up")  # idempotent; the node count comes from the home
        assert again.returncode == 0 and again.stdout.strip() == bootstrap, again.stderr
        assert "already running" in again.stderr
        wrong = kafka(home, "up", "--brokers", "2")
        assert wrong.returncode != 0 and "holds a 3-broker cluster" in wrong.stderr
        assert "Traceback" not in wrong.stderr

        status = kafka(home, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("  running  pid ") == 3 and "3 of 3 brokers running" in status.stdout

        down = kafka(home, "down")
        assert down.returncode == 0 and "stopped 3 of 3 brokers" in down.stdout, down.stdout + down.stderr
        status = kafka(home, "status")
        assert status.returncode == 1 and "0 of 3 brokers running" in status.stdout

        alone = kafka(home / "node-1", "up", "--port", str(base))  # one node of the quorum, alone
        assert alone.returncode != 0 and "holds a node of a 3-node quorum" in alone.stderr, alone.stderr
    finally:
        kafka(home, "down", "--timeout-s", "10")
        kill_leftovers(home)
