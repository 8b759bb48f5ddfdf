"""`surplus sql`: an analyst's SQL on the store, from an argument, a file, stdin or a prompt. Wiring.

The statements are split with sqlparse (semicolons inside strings and comments are not
boundaries) and run one by one, in one session (surplus/sql_session.py), as an analyst; results
are ClickHouse's own output formats (PrettyCompactMonoBlock, CSVWithNames, TSVWithNames,
JSONEachRow), so a CSV here is the CSV a ClickHouse server writes. A statement the store refuses
is one line on stderr and exit 2; the statements after it do not run.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote

import click

from surplus.errors import UserError

if TYPE_CHECKING:
    from surplus.sql_session import Session

# --format -> (ClickHouse output format, settings of the session)
FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    "table": ("PrettyCompactMonoBlock", {"output_format_pretty_color": "0"}),
    "csv": ("CSVWithNames", {}),
    "tsv": ("TSVWithNames", {}),
    # numbers as JSON numbers, money (Decimal) as exact strings
    "jsonl": ("JSONEachRow", {"output_format_json_quote_64bit_integers": "0",
                              "output_format_json_quote_decimals": "1"}),
}
ANALYST = "analyst"
WRITER = "surplus"
# statements that return rows and take a FORMAT clause (the others get none: SET, USE, INSERT…)
_ROWS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "VALUES"})
_FIRST_WORD = re.compile(r"^[\s(]*([A-Za-z]+)")
_OWN_FORMAT = re.compile(r"\bFORMAT\s+[A-Za-z]\w*\s*$", re.IGNORECASE)


def statements(text: str) -> list[str]:
    """The statements of `text`, each without its `;` and what trails it (leading comments kept,
    comment-only parts dropped)."""
    import sqlparse
    from sqlparse import tokens as T

    out = []
    for parsed in sqlparse.parse(text):
        flat = list(parsed.flatten())  # type: ignore[no-untyped-call]
        while flat and (flat[-1].is_whitespace or flat[-1].ttype in T.Comment or flat[-1].match(T.Punctuation, ";")):
            flat.pop()
        if any(not (t.is_whitespace or t.ttype in T.Comment) for t in flat):
            out.append("".join(t.value for t in flat).strip())
    return out


def output_format(statement: str, fmt: str) -> str | None:
    """The format to ask for: `fmt` for a statement that returns rows, None when it names its
    own FORMAT or takes none."""
    import sqlparse

    bare = sqlparse.format(statement, strip_comments=True).strip()
    first = _FIRST_WORD.match(bare)
    if first is None or first.group(1).upper() not in _ROWS or _OWN_FORMAT.search(bare):
        return None
    return fmt


def open_session(url: str, user: str | None, users_dir: Path, settings: dict[str, str]) -> Session:
    """The session on `url` as the analyst (see `sql --help` for who that is); UserError."""
    from surplus.sql_session import EmbeddedSession, ServedSession
    from surplus.store import parse_url

    target = parse_url(url)
    if target.embedded:
        path = Path(os.path.realpath(target.dsn[len("chdb://"):]))
        return EmbeddedSession(path, target.database, user or ANALYST, users_dir, settings)
    url_user, url_password = _credentials(url)
    name = user or (url_user if url_user and url_user != WRITER else ANALYST)
    if name == WRITER:
        raise UserError(f"{WRITER!r} is the writer: SQL here runs as an analyst (`{ANALYST}` by default)")
    if name == url_user:
        password = url_password
    elif name == ANALYST:
        password = os.environ.get("SURPLUS_ANALYST_PASSWORD", "")
        if not password:
            raise UserError("no password for `analyst`: set SURPLUS_ANALYST_PASSWORD, or give the URL "
                            "as http://analyst:<password>@host:8123/cpn")
    else:
        raise UserError(f"no password for {name!r}: give the URL as http://{name}:<password>@host:8123/cpn")
    dsn = target.dsn.split("://", 1)[0] + "://" + target.dsn.split("://", 1)[1].rpartition("@")[2]
    return ServedSession(dsn, target.database, name, password, settings)


def _credentials(url: str) -> tuple[str, str]:
    """(user, password) written in an http(s) URL ("" when absent)."""
    rest = url.partition("://")[2]
    userinfo, at, _ = rest.rpartition("@")
    if not at:
        return "", ""
    user, _, password = userinfo.partition(":")
    return unquote(user), unquote(password)


def run_all(session: Session, texts: Iterable[str], fmt: str, out: IO[bytes]) -> None:
    """Run every statement in order, writing results to `out`; UserError at the first refusal."""
    from surplus.sql_session import StoreError

    batch = list(texts)
    for number, statement in enumerate(batch, 1):
        try:
            for chunk in session.run(statement, output_format(statement, fmt)):
                out.write(chunk)
            out.flush()
        except StoreError as exc:
            out.flush()
            where = f"statement {number} of {len(batch)}: " if len(batch) > 1 else ""
            raise UserError(f"{where}{exc}") from None


def _read(query: str | None, file: Path | None) -> str | None:
    """The SQL text from the argument, --file (`-`: stdin) or a piped stdin; None: prompt."""
    if query is not None and file is not None:
        raise click.UsageError("give a query or --file, not both")
    if query is not None:
        return query
    if file is not None and str(file) != "-":
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    if file is None and sys.stdin.isatty():
        return None
    return sys.stdin.read()


@click.command(name="sql")
@click.argument("query", required=False)
@click.option("--file", "-f", "file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Read the SQL from this file (`-`: stdin). Several statements separated by `;` run in order.")
@click.option("--format", "fmt_name", type=click.Choice(list(FORMATS)), default=None,
              help="Output: table (the default on a terminal), csv, tsv (the default otherwise) or jsonl "
                   "(JSON lines; money as exact strings). Each statement's result has its header line.")
@click.option("--url", envvar="CLICKHOUSE_URL", metavar="URL",
              help="The store: chdb:///path[?database=cpn] or http(s)://[user:pass@]host:8123/cpn "
                   "[env CLICKHOUSE_URL; default: chDB under var/chdb].")
@click.option("--user", default=None, metavar="NAME",
              help="Run as this analyst (default: the URL's user unless it is the writer, else `analyst`).")
@click.option("--users-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SURPLUS_STORE_USERS_DIR",
              help="Embedded store only: the ClickHouse users.d the analyst comes from "
                   "[default: deploy/clickhouse/users.d].")
def sql(query: str | None, file: Path | None, fmt_name: str | None, url: str | None, user: str | None,
        users_dir: Path | None) -> None:
    """Run SQL on the store as an analyst: QUERY, --file or stdin; with none of them on a
    terminal, an interactive prompt (history, `;` ends a statement, \\q or Ctrl-D leaves).

    Always read-only, as deploy/clickhouse's `analyst` (or the provincial analyst --user names):
    on a served store or a ClickHouse server the server applies the user's profile; on the
    embedded chDB store (nothing else may have it open) the same profile, row policies and
    limits are applied here. The password is the URL's, else SURPLUS_ANALYST_PASSWORD for
    `analyst`; the writer `surplus` is never used. Exit 0 when every statement ran; 2 with one
    line (ClickHouse's code and message) when the store refuses one, a bad option, or an
    unreachable store.

    \b
    Examples:
      surplus sql "SELECT count() FROM cpn.datacenters" --format csv
      surplus sql --file queries.sql --format jsonl
      echo "SELECT hub, count() FROM cpn.datacenters GROUP BY hub" | surplus sql
      CLICKHOUSE_URL=http://analyst:<password>@127.0.0.1:8123/cpn surplus sql
    """
    from surplus.chserver.cli import DEFAULT_USERS_DIR
    from surplus.paths import default_clickhouse_url

    logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())  # its errors are said once, below
    text = _read(query, file)
    if text is not None and not statements(text):
        raise UserError("no SQL statement given")
    interactive = text is None
    name = fmt_name or ("table" if sys.stdout.isatty() else "tsv")
    fmt, settings = FORMATS[name]
    url = url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url()
    session = open_session(url, user, users_dir or DEFAULT_USERS_DIR, settings)
    out = sys.stdout.buffer
    try:
        if interactive:
            from surplus.sql_prompt import prompt_loop

            prompt_loop(session, fmt, out, label=_label(url))
        else:
            assert text is not None
            run_all(session, statements(text), fmt, out)
    except BrokenPipeError:  # `surplus sql … | head`: the reader has all it wants
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        session.close()


def _label(url: str) -> str:
    from surplus.store import parse_url, redact

    target = parse_url(url)
    return f"{redact(target.dsn)} database {target.database}"
