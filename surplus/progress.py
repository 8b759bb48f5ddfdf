"""Progress of a long command on stderr: plain lines when it is not a terminal, a spinner when it
is. I/O (writes stderr; a timer thread).

Piped or logged (`surplus report 2>log | cat`), a live display would print nothing for minutes
and then control codes; instead `Progress` writes a plain line such as
`surplus report: hubs (12 s)` at most every `every_s` seconds while a step runs, and nothing at
all for a command that is done sooner. On a terminal it shows a transient rich spinner instead.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO, Any


class Progress:
    """`with Progress("surplus report") as progress: progress.step("hubs"); ...`.

    `every_s`: seconds between plain lines (0: one line at every step, then every second).
    `stream`: default sys.stderr, looked up when entered (so a test's capture applies).
    """

    def __init__(self, label: str, *, every_s: float = 5.0, stream: IO[str] | None = None) -> None:
        if every_s < 0:
            raise ValueError("every_s must be >= 0")
        self.label = label
        self.every_s = every_s
        self._stream = stream
        self._current = "starting"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: Any = None
        self._started = self._last = 0.0

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self) -> Progress:
        self._started = self._last = time.monotonic()
        if _is_terminal(self.stream):
            from rich.console import Console

            self._status = Console(file=self.stream).status(f"{self.label}: {self._current}")
            self._status.start()
        else:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()
        return self

    def step(self, text: str) -> None:
        """The step now running (a few words: "hubs", "charts")."""
        with self._lock:
            self._current = text
            if self._status is not None:
                self._status.update(f"{self.label}: {text}")
            elif self.every_s == 0 or time.monotonic() - self._last >= self.every_s:
                self._line()

    def _tick(self) -> None:
        while not self._stop.wait(max(self.every_s, 1.0) / 4):
            with self._lock:
                if time.monotonic() - self._last >= max(self.every_s, 1.0):
                    self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self.stream.write(f"{self.label}: {self._current} ({now - self._started:.0f} s)\n")
        self.stream.flush()
        self._last = now

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._status is not None:
            self._status.stop()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: plain lines
        return False
