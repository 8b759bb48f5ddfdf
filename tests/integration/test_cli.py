"""Every `surplus` command explains itself with --help, and bad input or an unreachable service is one
line on stderr with a non-zero exit, never a stack trace (issue #2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from surplus.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]


def surplus(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surplus.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **env})


def test_top_level_help_lists_every_command() -> None:
    done = surplus("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help_and_refuses_unknown_options(name: str) -> None:
    done = surplus(name, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and len(done.stdout.splitlines()) >= 3
    bad = surplus(name, "--no-such-option")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr and bad.stderr.strip()


def test_unknown_command_is_one_line() -> None:
    done = surplus("frobnicate")
    assert done.returncode != 0 and "Traceback" not in done.stderr


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("surplus: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_unreachable_clickhouse_is_one_line() -> None:
    line = one_line_error(surplus("db", "migrate", "--url", "http://127.0.0.1:9/cpn"))
    assert "ClickHouse" in line


def test_bad_clickhouse_url_is_one_line() -> None:
    line = one_line_error(surplus("db", "migrate", "--url", "ftp://x"))
    assert "CLICKHOUSE_URL" in line


def test_worker_with_unreachable_kafka_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(surplus("streams", "worker", timeout=120, KAFKA_BOOTSTRAP="127.0.0.1:9",
                                  CLICKHOUSE_URL=f"chdb://{tmp_path / 'ch'}", SURPLUS_DATA_DIR=str(tmp_path)))
    assert "Kafka" in line


def test_worker_bad_setting_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(surplus("streams", "worker", SURPLUS_PARTITIONS="many",
                                  CLICKHOUSE_URL=f"chdb://{tmp_path / 'ch'}"))
    assert "partitions" in line


def test_worker_bad_price_book_is_one_line(tmp_path: Path) -> None:
    book = tmp_path / "prices.toml"
    book.write_text('[[price]]\ndevice_model = "x"\ncny_per_device_hour = 1.5\neffective_from = 2026-01-01\n')
    line = one_line_error(surplus("streams", "worker", SURPLUS_PRICE_BOOK=str(book),
                                  CLICKHOUSE_URL=f"chdb://{tmp_path / 'ch'}"))
    assert "price book" in line


@pytest.mark.clickhouse
def test_db_migrate_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    first = surplus("db", "migrate", "--url", url)
    assert first.returncode == 0, first.stderr
    assert "applied 001_database" in first.stdout and "migration(s) applied" in first.stdout
    second = surplus("db", "migrate", "--url", url)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout and "applied 0" not in second.stdout
