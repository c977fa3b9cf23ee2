"""The shared fixtures live in ``tests/kit/fixtures.py``; importing them here makes them visible
to every test module."""

from tests.kit.fixtures import make_gateway, redis_db, store_url, up, upstream  # noqa: F401
