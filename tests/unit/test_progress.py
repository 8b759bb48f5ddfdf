"""Progress when piped: plain lines on stderr, no live display; commands printed whole."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console
from rich.table import Table

from surplus.demo import Progress as DemoProgress
from surplus.demo import _afterwards, _line
from surplus.demo_display import print_advice, progress_display
from surplus.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("surplus report", every_s=0, stream=out) as progress:
        for step in ("hubs", "stale DCs", "tenants"):
            progress.step(step)
    lines = out.getvalue().splitlines()
    assert [re.sub(r" \(\d+ s\)$", "", line) for line in lines[-3:]] == [
        "surplus report: hubs", "surplus report: stale DCs", "surplus report: tenants"]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_periodic_lines_while_a_step_runs() -> None:
    out = io.StringIO()
    with Progress("surplus report", every_s=1, stream=out) as progress:
        progress.step("charts")
        time.sleep(2.6)
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("surplus report: charts (") for line in lines)


def test_nothing_for_a_quick_command() -> None:
    out = io.StringIO()
    with Progress("surplus report", every_s=10, stream=out) as progress:
        progress.step("hubs")
    assert out.getvalue() == ""


def test_a_spinner_on_a_terminal_not_lines() -> None:
    out = Tty()
    with Progress("surplus report", every_s=0, stream=out) as progress:
        progress.step("hubs")
    assert "surplus report: hubs (" not in out.getvalue()


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="every_s"):
        Progress("x", every_s=-1)


def test_demo_progress_piped_is_plain_lines_then_the_final_table() -> None:
    # before: rich Live on a pipe printed nothing until the end
    console_out, err = io.StringIO(), io.StringIO()
    console = Console(file=console_out, width=80, color_system=None)
    assert not console.is_terminal
    p = DemoProgress(phase="simulating", history=1000, live=228, injected=6, processed=1000, end=1200)
    started = time.monotonic()

    def table() -> Table:
        t = Table(title="state")
        t.add_column("published")
        t.add_row(f"{p.published:,}")
        return t

    with progress_display(console, table, lambda: _line(p, started, 2.0), every_s=0.05,
                          stream=err) as live:
        for _ in range(3):
            time.sleep(0.06)
            live.update(table())
    lines = err.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("surplus demo: simulating; simulated —; ")
    assert ("published 1,234 (1,000 history, 228 live, 6 bad on purpose), processed 1,000 of the 1,200 "
            "in Kafka, lag 200, dead letters 0") in lines[0]
    assert "\x1b" not in err.getvalue() + console_out.getvalue()
    assert console_out.getvalue().count("1,234") == 1  # the final table, once


def test_demo_progress_on_a_terminal_is_live() -> None:
    console = Console(file=Tty(), width=80, force_terminal=True)
    err = io.StringIO()
    with progress_display(console, lambda: Table(), lambda: "x", stream=err) as live:
        from rich.live import Live

        assert isinstance(live, Live)
    assert err.getvalue() == ""


@pytest.mark.parametrize("served", [True, False])
@pytest.mark.parametrize("width", [40, 80])
def test_follow_up_commands_copy_whole(served: bool, width: int) -> None:
    # before: rich wrapped the long commands at the console's width, some mid-word
    store = "chdb:///home/someone/projects/surplus/var/demo/chdb?database=cpn"
    parts = _afterwards(store, "cpn", served=served)
    out = io.StringIO()
    print_advice(Console(file=out, width=width, color_system=None), parts)
    lines = out.getvalue().splitlines()
    commands = [text for kind, text in parts if kind == "command"]
    assert commands and any(len(c) > width for c in commands)
    for command in commands:
        assert f"  {command}" in lines  # a line of its own, whole
    assert any(c.endswith(".venv/bin/surplus report") or "surplus report --url" in c
               for c in commands)
