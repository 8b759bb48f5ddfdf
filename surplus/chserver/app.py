"""The aiohttp application that answers ClickHouse's HTTP protocol for the served store. I/O.

Requests: `GET|HEAD /ping` and `/` without a query (`Ok.`), `GET|POST /` with the query in the
`query` parameter and/or the body (joined by a newline), `database`, `default_format`,
`session_id`/`session_timeout`, `param_<name>` and any setting as URL parameters; bodies
compressed with Content-Encoding gzip, deflate or lz4 (as clickhouse-connect sends them);
responses are never compressed (`enable_http_compression` and Accept-Encoding are declined
by answering plainly, which clients accept). Users sign in with basic auth,
`X-ClickHouse-User`/`X-ClickHouse-Key` or `user`/`password` parameters.

Concurrency: the writer's requests and the analysts' run in two thread pools of their own, each
on its own engine connection, so a long analyst query holds one reader thread and never the
writer's; analysts' queries are bounded by their profile's max_execution_time. SELECT results
are streamed block by block; the first block is fetched before the status is sent, so an error
before any output gets ClickHouse's status and code (`wait_end_of_query=1` buffers it all).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from surplus.chserver import protocol
from surplus.chserver.access import User
from surplus.chserver.engine import Engine, Inserter, Stream, Summary, execute, run_settings
from surplus.chserver.native import reframe

log = logging.getLogger("surplus.store")
T = TypeVar("T")
CHUNK = 1 << 20


class Decompressor:
    """Content-Encoding of a request body -> a streaming decompressor (ServerError if unknown).

    A body may hold several compressed frames (gzip members, zlib streams, LZ4 frames) one after
    another: clickhouse-connect compresses each block of an INSERT as a frame of its own. Each
    frame is decompressed in turn; `finish` refuses a body that ends inside a frame.
    """

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self._new: Callable[[], Any] | None = None
        if encoding in ("", "identity", "none"):
            return
        if encoding in ("gzip", "x-gzip"):
            self._new = lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._new = zlib.decompressobj
        elif encoding == "lz4":
            import lz4.frame

            self._new = lz4.frame.LZ4FrameDecompressor
        else:
            raise protocol.ServerError(protocol.BAD_ARGUMENTS,
                                       f"Unknown Content-Encoding of the request body: {encoding}; "
                                       "use gzip, deflate or lz4")
        self._obj: Any = self._new()
        self._inside = False  # bytes of an unfinished frame were fed

    def feed(self, data: bytes) -> bytes:
        """The decompressed bytes of `data` (the body's next piece), across frame boundaries."""
        if self._new is None:
            return data
        out: list[bytes] = []
        try:
            while data:
                out.append(self._obj.decompress(data))
                self._inside = not self._obj.eof
                if self._inside:
                    break
                data = self._obj.unused_data  # the next frame starts here
                self._obj = self._new()
        except Exception as exc:
            raise protocol.ServerError(protocol.CANNOT_DECOMPRESS, f"Cannot decompress the body: {exc}") from None
        return b"".join(out)

    def finish(self) -> None:
        """ServerError if the body ended inside a compressed frame (a truncated body)."""
        if self._new is not None and self._inside:
            raise protocol.ServerError(protocol.CANNOT_DECOMPRESS,
                                       "Cannot decompress the body: it ends inside a compressed frame")


class Server:
    """The served store: its engine, its users and the pools their requests run in."""

    def __init__(self, engine: Engine, users: Mapping[str, User], database: str, *,
                 writer_threads: int = 8, reader_threads: int = 8) -> None:
        self.engine = engine
        self.users = dict(users)
        self.database = database
        self.writers = ThreadPoolExecutor(writer_threads, thread_name_prefix="store-writer")
        self.readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="store-reader")

    # -- the application ---------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("GET", "/ping", self.ping)
        app.router.add_route("GET", "/replicas_status", self.ping)
        app.router.add_route("*", "/", self.query)
        app.on_startup.append(self._start_expiry)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start_expiry(self, app: web.Application) -> None:
        async def expire() -> None:
            while True:
                await asyncio.sleep(10)
                await asyncio.get_running_loop().run_in_executor(self.readers, self.engine.expire_sessions)

        app["expiry"] = asyncio.get_running_loop().create_task(expire())

    async def _cleanup(self, app: web.Application) -> None:
        app["expiry"].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app["expiry"]
        self.writers.shutdown(wait=True)
        self.readers.shutdown(wait=True)

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    # -- one request -------------------------------------------------------------------------

    @staticmethod
    def _pack(params: Mapping[str, str], data: bytes, fmt: str | None = None) -> bytes:
        """The body as sent: Native re-framed for the client's revision, in ClickHouse's
        compressed blocks when the client asked (compress=1)."""
        revision = params.get("client_protocol_version", "")
        if fmt and fmt.lower() == "native" and revision.isdigit() and data:
            data = reframe(data, int(revision))
        if params.get("compress") in ("1", "true") and data:
            return protocol.native_compressed(data)
        return data

    def _headers(self, query_id: str, fmt: str | None = None) -> dict[str, str]:
        headers = {"X-ClickHouse-Server-Display-Name": "surplus-store", "X-ClickHouse-Query-Id": query_id,
                   "X-ClickHouse-Timezone": self.engine.timezone}
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = protocol.content_type(fmt)
        return headers

    def _error(self, exc: protocol.ServerError, query_id: str) -> web.Response:
        headers = self._headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        return web.Response(status=protocol.http_status(exc.code), body=exc.body(self.engine.version),
                            headers=headers)

    def authenticate(self, request: web.Request, params: Mapping[str, str]) -> User:
        name, password = "default", ""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise protocol.ServerError(protocol.AUTHENTICATION_FAILED, "Malformed basic auth") from None
        elif "X-ClickHouse-User" in request.headers:
            name = request.headers["X-ClickHouse-User"]
            password = request.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            name, password = params["user"], params.get("password", "")
        user = self.users.get(name)
        if user is None or not user.check_password(password):
            raise protocol.ServerError(protocol.AUTHENTICATION_FAILED,
                                       f"{name}: Authentication failed: password is incorrect, "
                                       "or there is no user with such name")
        return user

    async def query(self, request: web.Request) -> web.StreamResponse:
        params = {k: v for k, v in request.query.items()}
        for header, name in (("X-ClickHouse-Format", "default_format"), ("X-ClickHouse-Database", "database")):
            if header in request.headers and name not in params:
                params[name] = request.headers[header]
        if log.isEnabledFor(logging.DEBUG):
            secret = ("authorization", "x-clickhouse-key")
            log.debug("%s %s params=%s headers=%s", request.method, request.path,
                      {k: v for k, v in params.items() if k != "password"},
                      {k: v for k, v in request.headers.items() if k.lower() not in secret})
        query_id = params.get("query_id") or str(uuid.uuid4())
        if request.method not in ("GET", "POST", "HEAD"):
            return self._error(protocol.ServerError(protocol.BAD_ARGUMENTS, "Use GET or POST"), query_id)
        if request.method != "POST" and "query" not in params:
            return web.Response(text="Ok.\n")
        try:
            user = self.authenticate(request, params)
        except protocol.ServerError as exc:
            return self._error(exc, query_id)
        try:
            return await self._answer(request, params, user, query_id)
        except protocol.ServerError as exc:  # the engine's user is `default`: name the real one
            if exc.message.startswith("default: "):
                exc = protocol.ServerError(exc.code, f"{user.name}: {exc.message[len('default: '):]}")
            return self._error(exc, query_id)

    async def _run(self, user: User, fn: Callable[..., T], *args: Any) -> T:
        pool = self.writers if user.writer else self.readers
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def _answer(self, request: web.Request, params: dict[str, str], user: User,
                      query_id: str) -> web.StreamResponse:
        decompress = Decompressor(request.headers.get("Content-Encoding", ""))
        if params.get("decompress") in ("1", "true"):
            raise protocol.ServerError(protocol.BAD_ARGUMENTS,
                                       "ClickHouse-compressed request bodies (decompress=1) are not "
                                       "supported here; use Content-Encoding gzip, deflate or lz4")
        text = params.get("query", "").encode()
        insert = protocol.split_insert(text, data_follows=False) if text and request.can_read_body else None
        body = b""
        if insert is None and request.can_read_body:
            body = decompress.feed(await request.read())
            decompress.finish()
            if text and body:
                text = text + b"\n" + body
            elif body:
                text = body
            insert = protocol.split_insert(text, data_follows=True)
            if insert is not None:
                body = text[insert.data_offset:]
        if not text.strip():
            raise protocol.ServerError(62, "Empty query")
        job = Job(self, user, params)
        try:
            if insert is not None:
                if request.method != "POST":
                    raise protocol.ServerError(164, "Cannot execute query in readonly mode. For "
                                               "queries over HTTP, method GET implies readonly. "
                                               "You should use method POST for modifying queries")
                await self._run(user, job.open_insert, insert.statement, insert.format)
                if body:
                    await self._run(user, job.append, body)
                else:
                    async for piece in request.content.iter_chunked(CHUNK):
                        data = decompress.feed(piece)
                        if data:
                            await self._run(user, job.append, data)
                    decompress.finish()
                summary = await self._run(user, job.finish)
                headers = self._headers(query_id)
                headers["X-ClickHouse-Summary"] = summary.header()
                return web.Response(body=b"", headers=headers)
            sql = text.decode("utf-8", "replace")
            fmt = protocol.output_format(sql, params.get("default_format"))
            word = protocol.first_word(sql)
            if request.method != "POST" and word not in protocol.RESULT_STATEMENTS | {"SET", "USE"}:
                raise protocol.ServerError(164, "Cannot execute query in readonly mode. For queries "
                                           "over HTTP, method GET implies readonly. You should use "
                                           "method POST for modifying queries")
            if word not in protocol.RESULT_STATEMENTS or not protocol.streamable(fmt):
                data, summary = await self._run(user, job.execute, sql, fmt)
                headers = self._headers(query_id, fmt if data else None)
                headers["X-ClickHouse-Summary"] = summary.header()
                return web.Response(body=self._pack(params, data, fmt), headers=headers)
            first = await self._run(user, job.open_stream, sql, fmt)
            if params.get("wait_end_of_query") in ("1", "true"):
                parts = [first]
                while first:
                    first = await self._run(user, job.fetch)
                    parts.append(first)
                headers = self._headers(query_id, fmt)
                headers["X-ClickHouse-Summary"] = job.summary().header()
                return web.Response(body=self._pack(params, b"".join(parts), fmt), headers=headers)
            return await self._stream(request, params, user, job, first, fmt, query_id)
        finally:
            await self._run(user, job.close)

    async def _stream(self, request: web.Request, params: Mapping[str, str], user: User, job: Job,
                      first: bytes, fmt: str, query_id: str) -> web.StreamResponse:
        headers = self._headers(query_id, fmt)
        headers["X-ClickHouse-Summary"] = job.summary().header()
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = first
        try:
            while chunk:
                await response.write(self._pack(params, chunk, fmt))
                chunk = await self._run(user, job.fetch)
        except protocol.ServerError as exc:  # after the status went out: ClickHouse's way
            await response.write(self._pack(params, exc.body(self.engine.version)))
            if request.transport is not None:
                request.transport.close()  # no final chunk: the client sees a broken response
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        await response.write_eof()
        return response


class Job:
    """One request's work on its connection, in blocking steps the pools run."""

    def __init__(self, server: Server, user: User, params: dict[str, str]) -> None:
        self.server = server
        self.user = user
        self.params = params
        self.stack = contextlib.ExitStack()
        self.stream: Stream | None = None
        self.inserter: Inserter | None = None

    def _conn(self) -> Any:
        timeout = float(self.params.get("session_timeout") or 60)
        conn = self.stack.enter_context(self.server.engine.connection(
            self.user, self.params.get("session_id"), timeout))
        database = self.params.get("database") or (
            None if self.params.get("session_id") else self.server.database)
        if database:
            if not protocol.SETTING_NAME.match(database):
                raise protocol.ServerError(81, f"Database {database} does not exist")
            try:
                conn.query(f"USE `{database}`")
            except Exception as exc:
                raise protocol.from_engine(str(exc)) from None
        run_settings(conn, protocol.settings_of(self.params))
        return conn

    def execute(self, sql: str, fmt: str) -> tuple[bytes, Summary]:
        return execute(self._conn(), sql, fmt, protocol.query_parameters(self.params))

    def open_stream(self, sql: str, fmt: str) -> bytes:
        self.stream = Stream(self._conn(), sql, fmt, protocol.query_parameters(self.params))
        return self.stream.fetch()

    def fetch(self) -> bytes:
        assert self.stream is not None
        return self.stream.fetch()

    def summary(self) -> Summary:
        return self.stream.summary if self.stream is not None else Summary()

    def open_insert(self, statement: str, fmt: str) -> None:
        self.inserter = Inserter(self._conn(), statement, fmt)

    def append(self, data: bytes) -> None:
        assert self.inserter is not None
        self.inserter.append(data)

    def finish(self) -> Summary:
        assert self.inserter is not None
        inserter, self.inserter = self.inserter, None
        return inserter.finish()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.inserter is not None:
            self.inserter.cancel()
        self.stack.close()
