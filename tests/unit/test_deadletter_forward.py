"""The dead-letter copy of any record is bounded (SPEC §3: first 64 KiB, `original_size`). Pure."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import MAX_BYTES
from schemas.reasons import Reason
from streams.batch import FORWARD_KEY_BYTES, DeadLetter, Record

sizes = st.sampled_from([0, 1, MAX_BYTES - 1, MAX_BYTES, MAX_BYTES + 1, 1_048_576, 64 * 1024 * 1024])


@settings(deadline=None, max_examples=60)  # 64 MiB values: allocation time varies on a loaded machine
@given(value_size=sizes, key_size=st.one_of(st.none(), st.integers(0, 4 * FORWARD_KEY_BYTES)))
def test_forwarded_copy_is_bounded_and_says_what_was_cut(value_size: int, key_size: int | None) -> None:
    value = b"v" * value_size
    key = None if key_size is None else b"k" * key_size
    letter = DeadLetter(Record("cpn.capacity", 0, 7, key, value), Reason.TOO_LARGE, "x" * 500)
    headers = dict(letter.headers())
    assert letter.value == value[:MAX_BYTES]
    assert (letter.key is None) == (key is None)
    assert letter.key is None or letter.key == key[:FORWARD_KEY_BYTES]  # type: ignore[index]
    assert len(headers["detail"]) <= 200
    assert headers["source"] == b"cpn.capacity/0/7"
    assert ("original_size" in headers) == (value_size > MAX_BYTES)
    if value_size > MAX_BYTES:
        assert int(headers["original_size"]) == value_size
    total = len(letter.value) + len(letter.key or b"") + sum(len(k) + len(v) for k, v in headers.items())
    assert total < MAX_BYTES + FORWARD_KEY_BYTES + 512, "well under any producer's request limit"
