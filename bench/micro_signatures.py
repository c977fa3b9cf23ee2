"""Basic-auth and HMAC micro benchmarks (entries in ``micro.py``'s ``MICROS``), issue 5.

``bcrypt.cost10`` is what one uncached basic-auth check costs (on a worker thread, never on the
event loop); ``basic.stage.cached`` the whole basic stage plus the post-auth checks for a known
user whose bcrypt result is cached; ``hmac.sha256.verify`` the per-request signature work
(signing string, HMAC-SHA256, constant-time compare) and ``hmac.stage`` the whole HMAC stage plus
post-auth checks; ``rsa.sha256.verify`` an RSA-2048 signature check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from email.utils import formatdate
from typing import Any, Callable

import bcrypt

from fastgate.apidef.classic import decode_classic
from fastgate.auth.passwords import hash_password
from fastgate.pipeline.post_auth import compile_post_auth
from fastgate.config import config_from_mapping
from fastgate.sessions.key_ids import generate_token, storage_key_id
from fastgate.http.request import Request
from fastgate.services import Services, open_services
from fastgate.sessions.session import AccessDefinition, SessionState

PASSWORD = "bench-password-0123456789"
SECRET = "bench-hmac-secret-0123456789abcdef"


def bcrypt_cost10() -> Callable[[], object]:
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10))
    assert bcrypt.checkpw(PASSWORD.encode(), stored)
    return lambda: bcrypt.checkpw(PASSWORD.encode(), stored)


def _services(api: dict[str, Any], key_id: str, session: SessionState) -> tuple[Any, Services, asyncio.AbstractEventLoop]:
    config = config_from_mapping({"storage": {"url": "memory://"}}, environ={})
    spec = decode_classic({"api_id": "a", "org_id": "default", "use_keyless": False,
                           "proxy": {"listen_path": "/a/", "target_url": "http://127.0.0.1:1/"}, **api}, "bench")
    loop = asyncio.new_event_loop()
    services = open_services(config)
    sessions = services.sessions
    token = generate_token("default", key_id, config.hash_key_function)
    session.org_id = "default"
    session.rate, session.per, session.quota_max, session.quota_renewal_rate = 1e9, 1, 10**12, 3600
    session.access_rights = {"a": AccessDefinition(api_id="a")}

    async def prepare() -> None:
        await sessions.start()
        await sessions.put(storage_key_id(token, config.hash_keys), session)
        assert await sessions.lookup(token, spec) is not None

    loop.run_until_complete(prepare())
    return spec, services, loop


def _run(stages: tuple[Any, ...], req: Request, loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
    for stage in stages:  # warm the caches (session lookup, bcrypt result) once
        result = stage(req)
        if result is not None and not hasattr(result, "status"):
            result = loop.run_until_complete(result)
        assert result is None, result

    def op() -> None:
        for stage in stages:
            if stage(req) is not None:
                raise AssertionError("a stage did not pass synchronously")

    op()
    return op


def basic_stage_cached() -> Callable[[], object]:
    from fastgate.auth.basic import compile_basic_auth

    session = SessionState(basic_auth_data=hash_password(PASSWORD, "bcrypt"))
    spec, services, loop = _services({"use_basic_auth": True}, "bench-user", session)
    stages = compile_basic_auth(spec, services) + compile_post_auth(spec, services)
    req = Request()
    req.method, req.path, req.listen_base = "GET", "/a/get", "/a"
    credentials = base64.b64encode(f"bench-user:{PASSWORD}".encode()).decode()
    req.headers = [(b"Host", b"api.example.com"), (b"Authorization", b"Basic " + credentials.encode())]
    return _run(stages, req, loop)


def _signed_request() -> Request:
    date = formatdate(usegmt=True)
    text = f"(request-target): get /a/get\ndate: {date}".encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), text, hashlib.sha256).digest()).decode()
    req = Request()
    req.method, req.target, req.path, req.listen_base = "GET", b"/a/get", "/a/get", "/a"
    req.headers = [(b"Host", b"api.example.com"), (b"Date", date.encode()), (b"Authorization", (
        f'Signature keyId="bench-hmac",algorithm="hmac-sha256",headers="(request-target) date",'
        f'signature="{signature}"').encode())]
    return req


def hmac_sha256_verify() -> Callable[[], object]:
    from fastgate.auth.signature import decode_signature, parse_signature_header, signing_strings

    req = _signed_request()
    value = req.header(b"authorization").decode()  # type: ignore[union-attr]
    key = SECRET.encode()

    def op() -> bool:
        params = parse_signature_header(value)
        assert params is not None
        presented = decode_signature(params.signature)
        text = signing_strings(req, params.headers)[0]
        return hmac.compare_digest(hmac.digest(key, text, hashlib.sha256), presented or b"")

    assert op()
    return op


def hmac_stage() -> Callable[[], object]:
    from fastgate.auth.hmac import compile_hmac_auth

    session = SessionState(hmac_enabled=True, hmac_string=SECRET)
    api = {"enable_signature_checking": True, "hmac_allowed_clock_skew": 3600000}
    spec, services, loop = _services(api, "bench-hmac", session)
    stages = compile_hmac_auth(spec, services) + compile_post_auth(spec, services)
    return _run(stages, _signed_request(), loop)


def rsa_sha256_verify() -> Callable[[], object]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key()
    text = b"(request-target): get /a/get\ndate: Tue, 07 Jun 2014 20:51:35 GMT"
    signature = private.sign(text, padding.PKCS1v15(), hashes.SHA256())
    return lambda: public.verify(signature, text, padding.PKCS1v15(), hashes.SHA256())
