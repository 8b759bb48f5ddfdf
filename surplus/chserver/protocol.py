"""ClickHouse's HTTP interface rules the served store follows: codes, statuses, formats, INSERT bodies. Pure.

Sources: ClickHouse docs "HTTP Interface" (query in the `query` parameter and/or the POST body,
concatenated with a newline; `default_format`; settings as URL parameters; `param_<name>` query
parameters; errors as `Code: N. DB::Exception: …` with `X-ClickHouse-Exception-Code`), and
src/Server/HTTPHandler.cpp / src/Common/ErrorCodes.cpp for the status of each error code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# error codes (src/Common/ErrorCodes.cpp) the server itself raises
BAD_ARGUMENTS = 36
UNKNOWN_FORMAT = 73
CANNOT_DECOMPRESS = 271
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
UNKNOWN_USER = 192
REQUIRED_PASSWORD = 194
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
TIMEOUT_EXCEEDED = 159
QUERY_WAS_CANCELLED = 394
HTTP_LENGTH_REQUIRED = 381
UNKNOWN_EXCEPTION = 1002

NAMES = {
    BAD_ARGUMENTS: "BAD_ARGUMENTS", UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS", SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    SESSION_IS_LOCKED: "SESSION_IS_LOCKED", UNKNOWN_USER: "UNKNOWN_USER",
    REQUIRED_PASSWORD: "REQUIRED_PASSWORD", ACCESS_DENIED: "ACCESS_DENIED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED", TIMEOUT_EXCEEDED: "TIMEOUT_EXCEEDED",
    QUERY_WAS_CANCELLED: "QUERY_WAS_CANCELLED", UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
}

# HTTPHandler.cpp exceptionCodeToHTTPStatus, the codes that have their own status
_UNAUTHORIZED = {REQUIRED_PASSWORD, AUTHENTICATION_FAILED, UNKNOWN_USER, 193}
_FORBIDDEN = {ACCESS_DENIED, 164, 195, 452, 291}  # + READONLY, IP_ADDRESS_NOT_ALLOWED, constraints
_BAD_REQUEST = {6, 25, 26, 27, 33, 38, 41, 42, 43, 44, 53, 62, 63, 69, 70, 72, 115, 117,
                BAD_ARGUMENTS, CANNOT_DECOMPRESS}  # parse errors, SYNTAX_ERROR, UNKNOWN_SETTING…
_NOT_FOUND = {16, 46, 47, 50, 60, 81, UNKNOWN_FORMAT}  # UNKNOWN_TABLE, _DATABASE, _FUNCTION…
_LENGTH_REQUIRED = {HTTP_LENGTH_REQUIRED}
_NOT_IMPLEMENTED = {48, 344}
_SERVICE_UNAVAILABLE = {202, 203}  # TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION
_LOCKED = {SESSION_IS_LOCKED}

_CODE = re.compile(r"Code:\s*(\d+)\.")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*\.?\s*$")


@dataclass(frozen=True, slots=True)
class ServerError(Exception):
    """An error to answer with: ClickHouse's code and the message after `DB::Exception: `."""

    code: int
    message: str

    def body(self, version: str) -> bytes:
        """`Code: N. DB::Exception: <message>. (NAME) (version V)` and a newline, as ClickHouse."""
        text = self.message.rstrip()
        if not _NAME.search(text):
            text = f"{text.rstrip('.')}. ({NAMES.get(self.code, 'UNKNOWN_EXCEPTION')})"
        if "(version " not in text:
            text = f"{text} (version {version})"
        return f"Code: {self.code}. DB::Exception: {text}\n".encode()

    def __str__(self) -> str:
        return f"Code: {self.code}. {self.message}"


def from_engine(text: str) -> ServerError:
    """The engine's exception text (`Code: 60. DB::Exception: … (UNKNOWN_TABLE)`) -> ServerError."""
    text = text.strip()
    match = _CODE.search(text)
    code = int(match.group(1)) if match else UNKNOWN_EXCEPTION
    message = text
    if match:
        message = text[match.end():].strip()
    message = message.removeprefix("DB::Exception:").strip()
    return ServerError(code, message or "unknown error")


def http_status(code: int) -> int:
    """The HTTP status ClickHouse answers an error code with (500 for the rest)."""
    for statuses, status in ((_UNAUTHORIZED, 401), (_FORBIDDEN, 403), (_BAD_REQUEST, 400),
                             (_NOT_FOUND, 404), (_LENGTH_REQUIRED, 411), (_NOT_IMPLEMENTED, 501),
                             (_SERVICE_UNAVAILABLE, 503), (_LOCKED, 423)):
        if code in statuses:
            return status
    return 500


# URL parameters that are the HTTP interface's own, not settings of the query
NOT_SETTINGS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "session_id",
    "session_timeout", "session_check", "query_id", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "enable_http_compression", "send_progress_in_http_headers",
    "add_http_cors_header", "stacktrace", "client_protocol_version", "role", "default_session_timeout",
    "http_headers_progress_interval_ms", "http_zlib_compression_level", "cancel_http_readonly_queries_on_client_close",
    "http_wait_end_of_query", "http_response_buffer_size", "http_native_compression_disable_checksumming_on_decompress",
    "output_format_parallel_formatting",
})
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def settings_of(params: dict[str, str]) -> dict[str, str]:
    """The URL parameters that are query settings (everything but the interface's own and param_*)."""
    return {k: v for k, v in params.items()
            if k not in NOT_SETTINGS and not k.startswith("param_") and not k.startswith("http_")}


def query_parameters(params: dict[str, str]) -> dict[str, str]:
    """`param_<name>=value` URL parameters -> {name: value} for `{name:Type}` placeholders."""
    return {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}


def quote_setting(value: str) -> str:
    """A setting value as a SQL literal for `SET name = …`: numbers as they are, the rest quoted."""
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_INSERT_FORMAT = re.compile(
    rb"^\s*(?P<head>INSERT\s+INTO\s.*?)\bFORMAT\s+(?P<format>[A-Za-z][A-Za-z0-9_]*)",
    re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(
    r"\bFORMAT\s+(?P<format>[A-Za-z][A-Za-z0-9_]*)\s*(?:SETTINGS\b(?:(?!\bFORMAT\b).)*)?;?\s*$",
    re.IGNORECASE | re.DOTALL)
_FIRST_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(\(?\s*)([A-Za-z]+)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Insert:
    """An `INSERT INTO … FORMAT <format>` whose data is the rest of the request."""

    statement: str  # `INSERT INTO t (a, b)` without FORMAT
    format: str
    data_offset: int  # where the data starts in the text it was split from


def split_insert(text: bytes, *, data_follows: bool) -> Insert | None:
    """`INSERT INTO … FORMAT F` at the start of `text` -> Insert, else None.

    data_follows: the data is in `text` after the format name (query in the body): it starts
    after the first newline after the name, or after all the whitespace when no newline comes
    first (ClickHouse's ParserInsertQuery rule).
    """
    match = _INSERT_FORMAT.match(text[:1 << 20])
    if match is None:
        return None
    offset = match.end()
    if data_follows:
        while offset < len(text) and text[offset:offset + 1] in (b" ", b"\t"):
            offset += 1
        if text[offset:offset + 2] == b"\r\n":
            offset += 2
        elif text[offset:offset + 1] == b"\n":
            offset += 1
    elif text[offset:].strip():
        return None  # more after the format name: an INSERT … FORMAT … with inline data? not ours
    return Insert(match.group("head").decode("utf-8", "replace").strip(),
                  match.group("format").decode(), offset)


def output_format(query: str, default: str | None) -> str:
    """The format a result comes in: the query's own `FORMAT F`, else default_format, else TSV."""
    match = _TRAILING_FORMAT.search(query)
    if match:
        return match.group("format")
    return default or "TabSeparated"


def first_word(query: str) -> str:
    """The statement's keyword in upper case (SELECT, WITH, INSERT, SET, …), skipping comments."""
    match = _FIRST_WORD.match(query)
    return match.group(2).upper() if match else ""


RESULT_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS",
                               "VALUES", "CHECK", "TABLE", "FROM"})


# formats whose blocks concatenate into one valid result (no header, no footer): streamed block
# by block; the engine writes every block of the others as a whole document, so they are sent
# at once (JSON, *WithNames*, Pretty, Parquet, …)
STREAMABLE = frozenset(name.lower() for name in (
    "Native", "RowBinary", "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV",
    "JSONEachRow", "JSONLines", "NDJSON", "JSONCompactEachRow", "JSONStringsEachRow",
    "JSONCompactStringsEachRow", "LineAsString"))


def streamable(fmt: str) -> bool:
    return fmt.lower() in STREAMABLE


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends with a result in `fmt`."""
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "names" in name else "absent")
    if name == "jsoneachrow" or name == "jsonlines" or name == "ndjson":
        return "application/x-ndjson; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith("xml"):
        return "application/xml; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "values", "lineasstring", "raw")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def native_compressed(data: bytes, block: int = 1 << 20) -> bytes:
    """`data` in ClickHouse's compressed blocks (LZ4), as a response to `compress=1`.

    Each block: CityHash128 v1.0.2 of the rest (16 bytes), method 0x82 (LZ4), the compressed
    size with its 9-byte header and the raw size (UInt32 LE each), the LZ4 block
    (src/Compression/CompressedWriteBuffer.cpp).
    """
    import struct

    import lz4.block
    from clickhouse_cityhash.cityhash import CityHash128

    out = []
    for start in range(0, len(data), block):
        raw = data[start:start + block]
        packed = lz4.block.compress(raw, store_size=False)
        body = b"\x82" + struct.pack("<II", len(packed) + 9, len(raw)) + packed
        checksum = CityHash128(body)
        out.append(struct.pack("<QQ", checksum >> 64, checksum & 0xFFFFFFFFFFFFFFFF) + body)
    return b"".join(out)
