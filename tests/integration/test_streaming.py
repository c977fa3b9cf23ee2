"""Large bodies stream through the gateway in both directions with its memory staying flat.

256 MiB each way (``bench/streaming.py`` does 1 GiB), chunked and Content-Length, sha256 checked
end to end, while the gateway's VmRSS is sampled from /proc: if the gateway buffered a body, its
RSS would grow by about the body's size.
"""

from __future__ import annotations

import functools
from typing import Iterator

import pytest

from tests.kit.procs import Gateway
from tests.kit.apis import classic_api
from tests.kit.stream import RssSampler, download, expected_sha, upload

SIZE = 256 * 1024 * 1024
MAX_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("streaming"), [classic_api("k", "/k/", upstream.url)])
    yield gateway
    gateway.stop()


@functools.lru_cache(maxsize=1)
def pattern_sha() -> str:
    return expected_sha(SIZE)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_upload_streams_with_flat_memory(gw, upstream, chunked):
    with RssSampler(gw.proc.pid) as rss:
        status, echoed, sent_sha = upload(gw.port, "/k/echo/upload", SIZE, chunked=chunked)
    assert status == 200
    assert echoed["body_length"] == SIZE
    assert echoed["body_sha256"] == sent_sha
    framing = {k.lower(): v for k, v in echoed["headers"]}
    assert ("transfer-encoding" in framing) is chunked
    assert rss.samples > 5
    assert rss.growth_mib < MAX_GROWTH_MIB, f"gateway RSS grew {rss.growth_mib:.0f} MiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_download_streams_with_flat_memory(gw, upstream, chunked):
    with RssSampler(gw.proc.pid) as rss:
        status, headers, length, got_sha = download(gw.port, f"/k/bytes/{SIZE}" + ("?chunked=1" if chunked else ""))
    assert status == 200
    assert (headers.get("transfer-encoding") == "chunked") is chunked
    assert length == SIZE
    assert got_sha == pattern_sha()
    assert rss.samples > 5
    assert rss.growth_mib < MAX_GROWTH_MIB, f"gateway RSS grew {rss.growth_mib:.0f} MiB"
