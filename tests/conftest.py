"""Shared fixtures: a real upstream process and real fastgate processes on free ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.procs import Gateway, Upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """One upstream for the whole run (tests that read its log call ``reset()`` first)."""
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start fastgate with the given API definitions and settings; stopped after the test."""
    started: list[Gateway] = []

    def make(apis: list[dict[str, Any]], settings: dict[str, Any] | None = None, **kwargs: Any) -> Gateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        gw = Gateway(directory, apis, settings, **kwargs)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
