"""How `surplus sql` cuts its input into statements and which output format each one gets. Pure."""

from __future__ import annotations

import pytest

from surplus.sql import output_format, statements
from surplus.sql_prompt import complete
from surplus.sql_session import store_error


def test_semicolons_in_strings_and_comments_do_not_split() -> None:
    text = "SELECT 'a;b' AS s; -- a comment; with a semicolon\nSELECT 2 /* ; */ AS n;\n-- trailing note\n"
    assert statements(text) == ["SELECT 'a;b' AS s", "SELECT 2 /* ; */ AS n"]
    assert statements("-- hubs\nSELECT 1;") == ["-- hubs\nSELECT 1"]  # a FORMAT after it stays outside the comment


def test_nothing_but_comments_is_no_statement() -> None:
    assert statements("-- nothing\n/* here */ ;  ;") == []


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT 1", "CSVWithNames"),
    ("-- note\nWITH x AS (SELECT 1) SELECT * FROM x", "CSVWithNames"),
    ("(SELECT 1) UNION ALL (SELECT 2)", "CSVWithNames"),
    ("SHOW TABLES FROM cpn", "CSVWithNames"),
    ("SELECT 1 FORMAT Vertical", None),  # its own format wins
    ("SET max_threads = 2", None),
    ("USE cpn", None),
    ("INSERT INTO cpn.t VALUES (1)", None),  # no FORMAT tacked on: the store says READONLY
    ("DROP TABLE cpn.t", None),
])
def test_which_statements_get_the_output_format(statement: str, expected: str | None) -> None:
    assert output_format(statement, "CSVWithNames") == expected


def test_enter_runs_the_input_once_it_ends_with_a_semicolon() -> None:
    assert not complete("SELECT count()\nFROM cpn.datacenters")
    assert complete("SELECT count()\nFROM cpn.datacenters;")
    assert complete("\\q") and complete("quit") and complete("")


def test_errors_become_one_line_without_the_version_trailer() -> None:
    http = ("HTTPDriver for http://127.0.0.1:8123 received ClickHouse error code 60\n"
            " Code: 60. DB::Exception: Unknown table expression identifier 'cpn.nope'. (UNKNOWN_TABLE) "
            "(version 26.9.2.1) (for url http://127.0.0.1:8123)")
    error = store_error(http)
    assert (error.code, str(error)) == (60, "Code 60: Unknown table expression identifier 'cpn.nope'. (UNKNOWN_TABLE)")
    refused = store_error("Error HTTPConnectionPool(host='h', port=1): Max retries exceeded (Caused by "
                          "NewConnectionError(\"...: Failed to establish a new connection: [Errno 111] "
                          "Connection refused\"))")
    assert (refused.code, refused.message) == (None, "connection refused")
