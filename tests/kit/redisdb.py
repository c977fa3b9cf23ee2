"""The Redis databases the tests use: three consecutive indexes on 127.0.0.1:6379.

``FGTEST_REDIS_DB_BASE`` (default 13) moves them, so two test runs on one machine (two checkouts,
two developers) do not flush each other's data. The store tests use base, the process tests
base + 1, the gateway tests base + 2.
"""

from __future__ import annotations

import os

_BASE = int(os.environ.get("FGTEST_REDIS_DB_BASE", "13"))
if not 0 <= _BASE <= 13:
    raise ValueError("FGTEST_REDIS_DB_BASE must leave three databases: 0 to 13")


def redis_url(offset: int) -> str:
    """The URL of the test database ``base + offset`` (offset 0, 1 or 2)."""
    return f"redis://127.0.0.1:6379/{_BASE + offset}"


STORE_TESTS_URL = redis_url(0)
PROCESS_TESTS_URL = redis_url(1)
GATEWAY_TESTS_URL = redis_url(2)
