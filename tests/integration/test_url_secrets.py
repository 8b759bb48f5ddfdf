"""A ClickHouse password with reserved characters is parsed, and never shown (issue #21).

`CLICKHOUSE_URL='http://u:pa#ss@host:8123/cpn'` (also `?`, `/`, `@`, `:`) once made `report`,
`db migrate` and the worker print a traceback holding the password. Each command now meets an
unreachable server with one line, the password redacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import unquote, urlparse

import pytest

from surplus.kafka.ports import free_port
from surplus.store import parse_url, redact

PASSWORDS = ["pa#ss", "pa?ss", "pa/ss", "p@ss", "pa:ss", "#?/@:x", "a b%"]
COMMANDS = {
    "report": ["report", "--url", "{url}"],
    "db migrate": ["db", "migrate", "--url", "{url}"],
    "streams worker": ["streams", "worker"],
}


@pytest.mark.parametrize("password", PASSWORDS)
def test_parse_url_keeps_every_character_and_redact_hides_them(password: str) -> None:
    url = f"http://analyst:{password}@ch.example:8443/cpn"
    target = parse_url(url)
    parsed = urlparse(target.dsn)  # what clickhouse-connect does with the DSN
    assert (parsed.hostname, parsed.port, target.database) == ("ch.example", 8443, "cpn")
    assert unquote(parsed.username or "") == "analyst"
    assert unquote(parsed.password or "") == password
    assert redact(url) == "http://analyst:***@ch.example:8443/cpn"
    assert password not in redact(url)


@pytest.mark.clickhouse
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("password", ["pa#ss-SECRET", "pa?ss-SECRET", "pa/ss-SECRET", "p@ss-SECRET", "p:ss-SECRET"])
def test_a_command_meets_an_unreachable_server_with_one_redacted_line(command: str, password: str) -> None:
    url = f"http://surplus:{password}@127.0.0.1:{free_port()}/cpn"
    argv = [a.replace("{url}", url) for a in COMMANDS[command]]
    env = {**os.environ, "CLICKHOUSE_URL": url, "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-m", "surplus.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "SECRET" not in output, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, lines
    assert "surplus:***@127.0.0.1" in done.stderr, done.stderr
