"""How `surplus demo` shows its progress and its closing advice, on a terminal or piped. Presentation
(writes the console and stderr).

On a terminal the progress is a live rich table. Piped or logged, a live display prints nothing
until the end (and then control codes), so instead a plain line goes to stderr every
`every_s` seconds. Commands the reader should copy are printed whole on lines of their own,
never wrapped by the console (a terminal may fold them on screen; copying gives the line).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

PLAIN_EVERY_S = 10.0


class _Plain:
    """A `Live`-like object for a console that is not a terminal: a line every `every_s`."""

    def __init__(self, line: Callable[[], str], stream: IO[str], every_s: float) -> None:
        self._line, self._stream, self._every_s = line, stream, every_s
        self._last = time.monotonic()

    def update(self, _renderable: Any = None) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._stream.write(self._line() + "\n")
            self._stream.flush()
            self._last = now


@contextmanager
def progress_display(console: Any, table: Callable[[], Any], line: Callable[[], str], *,
                     transient: bool = False, every_s: float = PLAIN_EVERY_S,
                     stream: IO[str] | None = None) -> Iterator[Any]:
    """Yields an object with `update(renderable)`: rich Live on a terminal, plain lines otherwise.

    `table()` makes the live table, `line()` the plain line. Piped, the last table is printed
    once at the end (unless `transient`), so the output still holds the final counters.
    """
    if console.is_terminal:
        from rich.live import Live

        with Live(table(), console=console, refresh_per_second=2, transient=transient) as live:
            yield live
        return
    yield _Plain(line, stream if stream is not None else sys.stderr, every_s)
    if not transient:
        console.print(table())


def print_advice(console: Any, parts: Sequence[tuple[str, str]]) -> None:
    """Print ("text", markup) lines as usual and ("command", text) lines whole and unstyled."""
    for kind, text in parts:
        if kind == "command":
            console.print(f"  {text}", soft_wrap=True, markup=False, highlight=False)
        else:
            console.print(text, highlight=False)
