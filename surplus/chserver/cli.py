"""`surplus store serve`: own the embedded chDB store and serve it over ClickHouse's HTTP interface (wiring).

Beside the store `<path>` the server keeps `<path>.serve/`: `lock` (held while serving, so a
second server on the same store says where the first one is), `state.json` (pid and URLs),
`writer-password` (when generated) and `engine/` (the users config the engine starts with).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import IO

import click

from surplus.errors import UserError
from surplus.paths import REPO, default_clickhouse_url, make_dir
from surplus.store import MIGRATIONS_DIR, embedded_dir, parse_url

DEFAULT_USERS_DIR = REPO / "deploy" / "clickhouse" / "users.d"
_CREATE = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY)\s+"
                     r"(?:IF\s+NOT\s+EXISTS\s+)?\{db\}\.`?(\w+)", re.IGNORECASE)


def declared_relations() -> set[str]:
    """Every relation the migrations create (so policies cover what a migration adds later)."""
    return {m.group(1) for path in MIGRATIONS_DIR.glob("*.sql")
            for m in _CREATE.finditer(path.read_text(encoding="utf-8"))}


def store_path(url: str | None) -> tuple[Path, str]:
    """(store directory, database) from --url / CLICKHOUSE_URL (an http:// one means the default)."""
    url = url or os.environ.get("CLICKHOUSE_URL") or ""
    if not url.startswith("chdb://"):
        url = default_clickhouse_url()
    target = parse_url(url)
    return Path(os.path.realpath(target.dsn[len("chdb://"):])), target.database


def served_already(state_dir: Path) -> str | None:
    """The line to print when another process serves this store, else None (lock is free)."""
    try:
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    url = state.get("url", "(its URL is not recorded)")
    store = state.get("store", str(state_dir)[: -len(".serve")])
    starting = ", starting" if state.get("starting") else ""
    return f"the store {store} is served already at {url} (pid {state.get('pid', '?')}{starting})"


def _lock(state_dir: Path) -> IO[str] | None:
    make_dir(state_dir, "the store's state directory")
    handle = open(state_dir / "lock", "a+")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@click.group()
def store() -> None:
    """The embedded store, served to every process and client at once."""


@store.command("serve")
@click.option("--url", default=None,
              help="chdb:///path[?database=cpn] of the store  [default: CLICKHOUSE_URL's when it "
                   "is chdb://, else chDB under var/chdb]")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8123, show_default=True, type=click.IntRange(0, 65535),
              help="port of the HTTP interface (0: any free one)")
@click.option("--users-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_USERS_DIR,
              envvar="SURPLUS_STORE_USERS_DIR", show_default=True,
              help="ClickHouse users.d of the analysts (*.xml; passwords from their from_env)")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="engine connections for the writer's requests, and as many for the analysts'")
@click.option("--no-migrate", is_flag=True, help="do not apply pending migrations at start")
def serve(url: str | None, host: str, port: int, users_dir: Path, threads: int, no_migrate: bool) -> None:
    """Own the chDB store and answer ClickHouse's HTTP interface until SIGTERM (SPEC §9).

    Users: `surplus` (the workers' writer; SURPLUS_WRITER_PASSWORD or generated), `analyst`
    (read-only; SURPLUS_ANALYST_PASSWORD, none when unset) and provincial analysts of
    --users-dir. Prints the writer's URL, http://surplus:<password>@<host>:<port>/<db>, last.
    """
    path, database = store_path(url)
    embedded_dir(path, create=not no_migrate)  # the store itself, never its missing parents
    state_dir = path.with_name(path.name + ".serve")
    lock = _lock(state_dir)
    if lock is None:
        click.echo(served_already(state_dir))
        return
    try:
        asyncio.run(_serve(path, database, state_dir, host, port, users_dir, threads, not no_migrate))
    finally:
        with contextlib.suppress(OSError):
            (state_dir / "state.json").unlink()
        lock.close()


async def _serve(path: Path, database: str, state_dir: Path, host: str, port: int, users_dir: Path,
                 threads: int, migrate: bool) -> None:
    from aiohttp import web

    from surplus.chserver.access import ANALYST, WRITER, engine_config, load_users
    from surplus.chserver.app import Server
    from surplus.chserver.engine import Engine, relations
    from surplus.logs import configure

    configure(os.environ.get("SURPLUS_LOG_LEVEL", "WARNING"))
    users, profiles = load_users(users_dir, database, state_dir)
    _state(state_dir, path, host, port, database, users[WRITER].password, starting=True)
    loop = asyncio.get_running_loop()
    if migrate:  # before the engine opens here, so the policies cover every relation there is
        await loop.run_in_executor(None, _migrate, path, database)
    try:
        existing = await loop.run_in_executor(None, relations, path, database)
    except Exception as exc:
        raise UserError(_engine_failure(path, exc)) from None
    config = engine_config(state_dir / "engine", database, users.values(), profiles,
                           existing | declared_relations())
    engine = Engine(path, config)
    try:
        await loop.run_in_executor(None, engine.open)
    except Exception as exc:
        raise UserError(_engine_failure(path, exc)) from None
    try:
        server = Server(engine, users, database, writer_threads=threads, reader_threads=threads)
        # bodies are decompressed by the app (every frame of a multi-frame body, lz4 too)
        runner = web.AppRunner(server.application(), access_log=None, handle_signals=False,
                               shutdown_timeout=60, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        writer_url = _state(state_dir, path, host, bound, database, users[WRITER].password)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        others = sorted(n for n in users if n not in (WRITER,))
        click.echo(f"serving the store {path} (database {database}) over ClickHouse's HTTP interface")
        click.echo(f"analysts: {', '.join(others) if others else 'none'}"
                   + ("" if ANALYST in users else " (set SURPLUS_ANALYST_PASSWORD for `analyst`)"))
        click.echo(writer_url)
        sys.stdout.flush()
        await stop.wait()
        click.echo("stopping: finishing the requests under way", err=True)
        await runner.cleanup()  # stops listening, waits for the requests under way
    finally:
        await loop.run_in_executor(None, engine.close)
    click.echo("stopped", err=True)


def _state(state_dir: Path, path: Path, host: str, port: int, database: str, password: str, *,
           starting: bool = False) -> str:
    """Record pid and the writer's URL beside the store (mode 0600); return the URL."""
    url = f"http://surplus:{password}@{host}:{port}/{database}"
    state = state_dir / "state.json"
    state.touch(mode=0o600)
    state.write_text(json.dumps({"pid": os.getpid(), "store": str(path), "host": host, "port": port,
                                 "database": database, "url": url, "starting": starting}),
                     encoding="utf-8")
    return url


def _migrate(path: Path, database: str) -> None:
    """`surplus db migrate` on the store, in a process of its own (the engine is not open here yet)."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "surplus.cli", "db", "migrate", "--url",
                           f"chdb://{path}?database={database}"], capture_output=True, text=True,
                          check=False)
    for line in done.stdout.splitlines():
        if line.startswith("applied "):
            click.echo(line)
    if done.returncode != 0:
        raise UserError(f"migrating the store failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")


def _engine_failure(path: Path, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "lock" in text.lower():
        return (f"the store {path} is open in another process (a worker or demo on chdb://?); "
                "stop it first, then serve the store and point that process at the served URL")
    return f"cannot open the store {path}: {text[:300]}"
