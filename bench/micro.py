"""Micro benchmarks of the per-request pieces of fastgate, in µs per operation (timeit, no deps).

    .venv/bin/python bench/micro.py [--only NAME] [--repeat 5]

Each benchmark is a ``Micro(name, setup, op)``: ``setup()`` builds the state once and returns the
zero-argument callable that is timed. Later issues add theirs to ``MICROS`` (auth-token lookup,
JWT verification, HMAC check, ...). The figure printed is the best of ``--repeat`` timings, each
long enough (timeit's autorange, at least 0.2 s), which is the least noisy estimate of the cost.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A typical proxied request: what wrk sends plus a few headers a browser or SDK would add.
TYPICAL_REQUEST = (
    b"GET /keyless/get?page=2&limit=50 HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Authorization: Bearer 5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f\r\n"
    b"X-Request-Id: 7c9e6679-7425-40de-944b-e07fc1f90ae7\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)


@dataclass(frozen=True, slots=True)
class Micro:
    name: str
    what: str
    setup: Callable[[], Callable[[], object]]


def httptools_parse() -> Callable[[], object]:
    """One keep-alive parser fed one whole request per call, with the callbacks fastgate uses."""
    import httptools

    class Callbacks:
        __slots__ = ("url", "headers", "done")

        def __init__(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.done = 0

        def on_message_begin(self) -> None:
            self.headers = []

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            pass

        def on_message_complete(self) -> None:
            self.done += 1

    cb = Callbacks()
    parser = httptools.HttpRequestParser(cb)
    feed = parser.feed_data
    data = TYPICAL_REQUEST

    def op() -> None:
        feed(data)

    op()
    assert cb.done == 1 and len(cb.headers) == 7, "the parser did not see one whole request"
    return op


def normalize_target_plain() -> Callable[[], object]:
    from fastgate.http.h1 import normalize_target

    target = b"/keyless/get?page=2&limit=50"
    assert normalize_target(target)[1] == "/keyless/get"
    return lambda: normalize_target(target)


def normalize_target_dots() -> Callable[[], object]:
    from fastgate.http.h1 import normalize_target

    target = b"/keyless/a/./b/../get?page=2"
    assert normalize_target(target)[1] == "/keyless/a/get"
    return lambda: normalize_target(target)


def _router_100() -> object:
    from fastgate.pipeline.router import Router

    routes = [("", f"/api{i}/", f"api{i}") for i in range(90)]
    routes += [(f"tenant{i}.example.com", "/v1/", f"tenant{i}") for i in range(10)]
    return Router(routes)


def router_match() -> Callable[[], object]:
    router = _router_100()
    match = router.match  # type: ignore[attr-defined]
    assert match("api.example.com", "/api57/users/42/orders") == ("api57", "/api57")
    return lambda: match("api.example.com", "/api57/users/42/orders")


def router_match_domain() -> Callable[[], object]:
    router = _router_100()
    match = router.match  # type: ignore[attr-defined]
    assert match("tenant3.example.com", "/v1/users") == ("tenant3", "/v1")
    return lambda: match("tenant3.example.com", "/v1/users")


def router_miss() -> Callable[[], object]:
    router = _router_100()
    match = router.match  # type: ignore[attr-defined]
    assert match("api.example.com", "/nothing/here/at/all") is None
    return lambda: match("api.example.com", "/nothing/here/at/all")


def error_response_cached() -> Callable[[], object]:
    from fastgate.http.h1 import error_response

    message = "Access to this API has been disallowed"
    error_response(403, message, keep_alive=True)  # fill the cache
    return lambda: error_response(403, message, keep_alive=True)


def auth_token_stages() -> Callable[[], object]:
    """The auth-token API's stages (token lookup, expiry/ACL, rate + quota) for a known key on the
    memory store: what an auth-token request costs on top of a keyless one."""
    from micro_signatures import _services, _run

    from fastgate.auth.token import compile_token_auth
    from fastgate.pipeline.post_auth import compile_post_auth
    from fastgate.sessions.key_ids import generate_token
    from fastgate.http.request import Request
    from fastgate.sessions.session import SessionState

    spec, services, loop = _services({"use_standard_auth": True}, "benchkey", SessionState())
    token = generate_token("default", "benchkey", services.config.hash_key_function)
    req = Request()
    req.headers = [(b"Host", b"api.example.com"), (b"Authorization", token.encode())]
    req.path = "/a/get"
    req.listen_base = "/a"
    req.method = "GET"
    return _run(compile_token_auth(spec, services) + compile_post_auth(spec, services), req, loop)


def _jwt(name: str) -> Callable[[], Callable[[], object]]:
    """A JWT micro benchmark from ``micro_jwt.py`` (issue 4), imported when it runs."""

    def setup() -> Callable[[], object]:
        import micro_jwt

        found: Callable[[], Callable[[], object]] = getattr(micro_jwt, name)
        return found()

    return setup


def _signatures(name: str) -> Callable[[], Callable[[], object]]:
    """A basic-auth or HMAC micro benchmark from ``micro_signatures.py`` (issue 5)."""

    def setup() -> Callable[[], object]:
        import micro_signatures

        found: Callable[[], Callable[[], object]] = getattr(micro_signatures, name)
        return found()

    return setup


MICROS: list[Micro] = [
    Micro("httptools.parse", "httptools parses a typical 8-header GET (keep-alive parser)", httptools_parse),
    Micro("normalize_target", "http1.normalize_target, plain path with a query", normalize_target_plain),
    Micro("normalize_target.dots", "http1.normalize_target, path with ./ and ../", normalize_target_dots),
    Micro("router.match", "Router.match among 100 APIs, any-host API, 4 segments deep", router_match),
    Micro("router.match.domain", "Router.match among 100 APIs, API on a domain", router_match_domain),
    Micro("router.miss", "Router.match among 100 APIs, no API matches (404)", router_miss),
    Micro("error_response.cached", "http1.error_response for a cached 403 denial", error_response_cached),
    Micro("auth_token.stages", "auth-token stages, known key, rate + quota, memory store", auth_token_stages),
    Micro("jwt.hs256.verify", "HS256 token: parse + signature check (hmac), uncached cost", _jwt("hs256_verify")),
    Micro("jwt.rs256.verify", "RS256 token: parse + signature check (cryptography), uncached cost", _jwt("rs256_verify")),
    Micro("jwt.es256.verify", "ES256 token: parse + signature check (cryptography), uncached cost", _jwt("es256_verify")),
    Micro("pyjwt.hs256.decode", "the same HS256 token through PyJWT's jwt.decode, for comparison", _jwt("pyjwt_hs256")),
    Micro("pyjwt.rs256.decode", "the same RS256 token through PyJWT's jwt.decode, for comparison", _jwt("pyjwt_rs256")),
    Micro("jwt.stage.hs256", "JWT stage + post-auth, repeated HS256 token, centralised session", _jwt("stage_hs256")),
    Micro("jwt.stage.rs256", "JWT stage + post-auth, repeated RS256 token, centralised session", _jwt("stage_rs256")),
    Micro("jwt.stage.rs256.new", "JWT stage + post-auth, an RS256 token never seen (cache miss)", _jwt("stage_uncached_rs256")),
    Micro("bcrypt.cost10", "one uncached basic-auth password check (bcrypt cost 10, runs off the loop)",
          _signatures("bcrypt_cost10")),
    Micro("basic.stage.cached", "basic stage + post-auth, known user, cached bcrypt result", _signatures("basic_stage_cached")),
    Micro("hmac.sha256.verify", "signature header parse + signing string + HMAC-SHA256 + compare", _signatures("hmac_sha256_verify")),
    Micro("hmac.stage", "HMAC stage + post-auth, hmac-sha256 over (request-target) date", _signatures("hmac_stage")),
    Micro("rsa.sha256.verify", "RSA-2048 PKCS#1 v1.5 SHA-256 signature check (cryptography)", _signatures("rsa_sha256_verify")),
]


def measure(op: Callable[[], object], repeat: int) -> float:
    """Best µs per call over ``repeat`` timings of at least 0.2 s each."""
    timer = timeit.Timer(op)
    number, _ = timer.autorange()
    number = max(number, 1)
    best = min(timer.repeat(repeat=repeat, number=number))
    return best / number * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fastgate micro benchmarks (µs per operation)")
    p.add_argument("--only", action="append", default=[], metavar="NAME")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    chosen = [m for m in MICROS if not args.only or m.name in args.only]
    print(f"{'benchmark':24} {'µs/op':>9}  what")
    failed = 0
    for m in chosen:
        try:
            us = measure(m.setup(), args.repeat)
        except Exception as exc:  # a broken piece must not hide the others' numbers
            print(f"{m.name:24} {'FAILED':>9}  {type(exc).__name__}: {exc}")
            failed += 1
            continue
        print(f"{m.name:24} {us:9.3f}  {m.what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
