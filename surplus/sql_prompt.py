"""The interactive prompt of `surplus sql` (prompt_toolkit): history, multi-line statements. I/O (terminal).

Enter runs the input once it ends with `;` (or is `\\q`, `quit`, `exit`); before that it starts a
new line, so a statement can span lines. One input may hold several statements: they run in
order, a refused one prints its one line and the prompt comes back. Ctrl-C drops the input (or
the statement running), Ctrl-D or `\\q` leaves. History is kept in SURPLUS_SQL_HISTORY (default
~/.surplus_sql_history).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from surplus.sql_session import Session

LEAVE = frozenset({"\\q", "\\quit", "quit", "exit"})


def history_path() -> Path:
    """Where the prompt's history lives (SURPLUS_SQL_HISTORY overrides)."""
    return Path(os.environ.get("SURPLUS_SQL_HISTORY") or Path.home() / ".surplus_sql_history")


def complete(text: str) -> bool:
    """Whether Enter runs the input (True) or starts a new line of it (False)."""
    stripped = text.strip()
    return not stripped or stripped.endswith(";") or stripped.split()[0].lower() in LEAVE


def prompt_loop(session: Session, fmt: str, out: IO[bytes], *, label: str, **prompt_args: Any) -> None:
    """Read, run and print until \\q or Ctrl-D. `prompt_args` go to PromptSession (tests pass
    their input and output there)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    from surplus.sql import output_format, statements
    from surplus.sql_session import StoreError

    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    history: History
    try:
        path = history_path()
        path.touch(mode=0o600)
        history = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(history=history, multiline=True, key_bindings=keys,
                           prompt_continuation=lambda width, *_: "-" * (width - 2) + "> ", **prompt_args)
    print(f"surplus sql on {label}, read-only. End statements with ;  \\q or Ctrl-D leaves.",
          file=sys.stderr)
    while True:
        try:
            text = prompt.prompt("sql> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        stripped = text.strip()
        if stripped and stripped.split()[0].lower() in LEAVE:
            break
        for statement in statements(text):
            started = time.monotonic()
            try:
                for chunk in session.run(statement, output_format(statement, fmt)):
                    out.write(chunk)
                out.flush()
            except StoreError as exc:
                out.flush()
                print(f"error: {exc}", file=sys.stderr)
                break
            except KeyboardInterrupt:  # Ctrl-C while a statement runs: drop it, keep the prompt
                out.flush()
                print("cancelled", file=sys.stderr)
                break
            print(f"({time.monotonic() - started:.3f} s)", file=sys.stderr)
