"""The served store's protocol rules, Native re-framing and access config, without a server."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from surplus.chserver import native, protocol
from surplus.chserver.access import User, engine_config, load_users, policies
from tests.served import USERS_D, users_dir

REPO = Path(__file__).resolve().parents[2]


def test_insert_with_the_data_in_the_body_or_after_the_query() -> None:
    insert = protocol.split_insert(b"INSERT INTO cpn.t (a, b) FORMAT Native", data_follows=False)
    assert insert is not None and insert.statement == "INSERT INTO cpn.t (a, b)" and insert.format == "Native"
    text = b"insert into t format JSONEachRow\n{\"a\": 1}\n"
    insert = protocol.split_insert(text, data_follows=True)
    assert insert is not None and text[insert.data_offset:] == b'{"a": 1}\n'
    binary = b"INSERT INTO t FORMAT RowBinary\n\n\x0a\x09"  # data that starts with whitespace bytes
    insert = protocol.split_insert(binary, data_follows=True)
    assert insert is not None and binary[insert.data_offset:] == b"\n\x0a\x09"
    assert protocol.split_insert(b"INSERT INTO t VALUES (1)", data_follows=True) is None
    assert protocol.split_insert(b"SELECT 1 FORMAT JSON", data_follows=False) is None


def test_output_format_statements_and_statuses() -> None:
    assert protocol.output_format("SELECT 1 FORMAT JSONCompact", None) == "JSONCompact"
    assert protocol.output_format("SELECT 1 FORMAT JSON SETTINGS max_threads = 1", "Native") == "JSON"
    assert protocol.output_format("SELECT 1", "Native") == "Native"
    assert protocol.output_format("SELECT 'FORMAT CSV' AS x", None) == "TabSeparated"
    assert protocol.first_word("-- a comment\n  with x as (select 1) select * from x") == "WITH"
    assert protocol.first_word("/* c */ (SELECT 1)") == "SELECT"
    assert [protocol.http_status(c) for c in (516, 497, 164, 62, 60, 81, 1002, 373)] == [
        401, 403, 403, 400, 404, 404, 500, 423]
    assert protocol.streamable("Native") and protocol.streamable("jsoneachrow")
    assert not protocol.streamable("JSON") and not protocol.streamable("RowBinaryWithNamesAndTypes")


def test_engine_errors_become_clickhouse_answers() -> None:
    error = protocol.from_engine("Streaming query failed: Code: 60. DB::Exception: Unknown table "
                                 "expression identifier 'x'. (UNKNOWN_TABLE)")
    assert error.code == 60
    assert error.body("26.9.2.1") == (b"Code: 60. DB::Exception: Unknown table expression identifier "
                                      b"'x'. (UNKNOWN_TABLE) (version 26.9.2.1)\n")
    plain = protocol.ServerError(protocol.AUTHENTICATION_FAILED, "x: Authentication failed")
    assert plain.body("1").startswith(b"Code: 516. DB::Exception: x: Authentication failed. "
                                      b"(AUTHENTICATION_FAILED)")
    assert protocol.settings_of({"query": "q", "database": "d", "max_threads": "2", "param_x": "1",
                                 "session_id": "s", "http_headers_progress_interval_ms": "1"}) == {
        "max_threads": "2"}
    assert protocol.query_parameters({"param_x": "1", "y": "2"}) == {"x": "1"}


TYPES = ("toUInt8(number) u8, toInt64(number) i64, toFloat32(number) f32, toString(number) s, "
         "toFixedString('ab', 2) fs, toDecimal32(1.5, 2) d32, toDecimal128(2.5, 4) d128, "
         "toDateTime64(number, 3, 'UTC') dt64, toDate(number) d, toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') id, "
         "CAST(number % 2, 'Enum8(\\'a, (x)\\' = 0, \\'b\\' = 1)') e, [number, 1] arr, "
         "[[toString(number)]] nested, (number, toString(number)) tup, "
         "CAST((1, 'x'), 'Tuple(a UInt8, b String)') named, map(toString(number), number) m, "
         "if(number % 3 = 0, NULL, toString(number)) ns, toLowCardinality(toString(number % 5)) lc, "
         "toLowCardinality(if(number % 2 = 0, NULL, toString(number % 7))) lcn, toBool(number % 2) b, "
         "toIPv4('1.2.3.4') ip4, toIPv6('::1') ip6, [NULL, number] arrn")


def _native(sql: str) -> bytes:
    code = ("import os, sys; os.chdir('/'); import chdb; c = chdb.connect(':memory:'); "
            "sys.stdout.buffer.write(c.query(sys.argv[1], 'Native').bytes())")
    done = subprocess.run([sys.executable, "-c", code, sql], capture_output=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.clickhouse
def test_native_reframing_walks_every_column_type_exactly() -> None:
    data = _native(f"SELECT {TYPES} FROM numbers(3000)")
    assert native.reframe(data, 0) == data
    framed = native.reframe(data, 54460)
    blocks, columns = 0, 0
    pos = 0
    while pos < len(framed):  # walk the framed result back: BlockInfo, counts, flagged columns
        assert framed[pos:pos + len(native.BLOCK_INFO)] == native.BLOCK_INFO
        pos += len(native.BLOCK_INFO)
        n, pos = native._varint(framed, pos)
        rows, pos = native._varint(framed, pos)
        for _ in range(n):
            _, pos = native._string(framed, pos)
            type_name, pos = native._string(framed, pos)
            assert framed[pos] == 0  # has_custom_serialization
            pos = native._skip(type_name.decode(), rows, framed, pos + 1)
        blocks += 1
        columns = n
    assert pos == len(framed) and columns == 23
    assert len(framed) == len(data) + blocks * (len(native.BLOCK_INFO) + columns)
    with pytest.raises(protocol.ServerError):
        native._skip("Dynamic", 1, b"\x00" * 8, 0)


def test_native_compression_frames_blocks_with_their_checksum() -> None:
    import struct

    import lz4.block
    from clickhouse_cityhash.cityhash import CityHash128

    data = bytes(range(256)) * 10000
    framed = protocol.native_compressed(data, block=1 << 20)
    out, pos = b"", 0
    while pos < len(framed):
        low, high = struct.unpack_from("<QQ", framed, pos)
        method, size, raw = struct.unpack_from("<BII", framed, pos + 16)
        body = framed[pos + 16:pos + 16 + size]
        assert method == 0x82 and (low << 64 | high) == CityHash128(body)
        out += lz4.block.decompress(body[9:], uncompressed_size=raw)
        pos += 16 + size
    assert out == data


def test_users_come_from_deploy_and_their_policies_are_gated(tmp_path: Path) -> None:
    env = {"SURPLUS_ANALYST_PASSWORD": "a", "CLICKHOUSE_ANALYST_CN_GZ_PASSWORD": "g",
           "SURPLUS_WRITER_PASSWORD": "w", "GRAFANA_CLICKHOUSE_PASSWORD": "not-the-analyst's"}
    users, profiles = load_users(users_dir(tmp_path / "users.d"), "cpn", tmp_path, env)
    assert set(users) == {"surplus", "analyst", "analyst_cn_gz"}
    assert users["analyst"].check_password("a") and not users["analyst"].check_password("not-the-analyst's")
    assert users["surplus"].writer and users["surplus"].setup() == []
    setup = users["analyst_cn_gz"].setup()
    assert setup[0] == "SET log_comment = 'surplus:analyst_cn_gz'" and setup[-1] == "SET readonly = 2"
    assert "SET max_execution_time = 60" in setup
    assert users["analyst"].grants is None and users["analyst_cn_gz"].grants is not None
    rules = policies(users.values(), ["registrations", "capacity_samples", "dead_letters", "ledger"])
    assert "dead_letters" in rules and "ledger" not in rules  # withheld; granted without a filter
    assert rules["registrations"] == ("(getSetting('log_comment') != 'surplus:analyst_cn_gz' OR "
                                      "(province IN ('CN-GZ')))")
    config = engine_config(tmp_path / "engine", "cpn", users.values(), profiles, ["registrations", "dead_letters"])
    root = ET.parse(config.parent / "users.xml").getroot()
    assert root.find("users/default/databases/cpn/registrations/filter") is not None
    assert root.find("profiles/surplus_served_surplus_analyst/constraints/log_comment/const") is not None
    assert [q.text for q in root.iterfind("users/default/grants/query")] == ["GRANT ALL ON *.*",
                                                                               "REVOKE SOURCES ON *.*"]
    # no password in the environment: no login; other databases get the relations renamed
    alone, _ = load_users(USERS_D, "other", tmp_path, {"SURPLUS_WRITER_PASSWORD": "w"})
    assert set(alone) == {"surplus"}
    renamed, _ = load_users(users_dir(tmp_path / "u2"), "other", tmp_path, env)
    assert "other.registrations" in renamed["analyst_cn_gz"].filters["capacity_samples"]


def test_a_generated_writer_password_is_kept(tmp_path: Path) -> None:
    first, _ = load_users(None, "cpn", tmp_path, {})
    again, _ = load_users(None, "cpn", tmp_path, {})
    assert first["surplus"].password == again["surplus"].password and len(first["surplus"].password) >= 20
    assert (tmp_path / "writer-password").stat().st_mode & 0o077 == 0
    assert isinstance(first["surplus"], User)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4"])
def test_a_body_of_several_compressed_frames_is_read_whole(encoding: str) -> None:
    """clickhouse-connect compresses each block of an INSERT as a frame of its own: the served
    store once read the first frame and dropped the rest (a 40,000-row insert kept 8,192 rows)."""
    import gzip
    import zlib

    import lz4.frame

    from surplus.chserver.app import Decompressor

    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "lz4": lz4.frame.compress}[encoding]
    blocks = [bytes([65 + n]) * (1000 + n) for n in range(5)]
    body = b"".join(compress(b) for b in blocks)
    for piece in (len(body), 7, 1):  # whole, and cut at every kind of place
        d = Decompressor(encoding)
        out = b"".join(d.feed(body[i:i + piece]) for i in range(0, len(body), piece))
        d.finish()
        assert out == b"".join(blocks)
    truncated = Decompressor(encoding)
    truncated.feed(body[:-3])
    with pytest.raises(protocol.ServerError, match="ends inside a compressed frame"):
        truncated.finish()
    with pytest.raises(protocol.ServerError, match="Cannot decompress"):
        Decompressor(encoding).feed(body[:10] + b"\xff" * 40)
