"""What a test does when a service or reference file it needs is missing: skip on a laptop, fail
under CI=true (a service test never skips in CI)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"unavailable under CI=true: {why}", pytrace=False)
    pytest.skip(why)
