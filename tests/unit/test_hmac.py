"""HTTP request signatures without sockets: header parsing, signing strings (both request-target
forms, X-Aux-Date, repeated and non-ASCII headers), signature escaping, dates, digests, config,
and the stage itself against an in-memory session table (HMAC, RSA, every refusal, replay)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from email.utils import formatdate
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from httpsig.sign import HeaderSigner

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.oas import decode_oas
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.hmac import CERT_NOT_FOUND, INVALID, NOT_RSA, REPLAYED, compile_hmac_auth, hmac_config
from fastgate.auth.signature import (
    decode_signature, parse_digest, parse_http_date, parse_signature_header, signing_strings,
)
from fastgate.pipeline.stage import Denial
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState
from fastgate.services import Services
from tests.kit.services import make_services, put_keys

DATE = "Tue, 07 Jun 2014 20:51:35 GMT"


def request(method: str = "GET", target: bytes = b"/", headers: list[tuple[bytes, bytes]] | None = None,
            body: bool = False) -> Request:
    req = Request()
    req.method = method
    req.target = target
    path, _, query = target.decode().partition("?")
    req.path, req.query = path, query
    req.headers = list(headers or [])
    if body:
        req.content_length = 5
    return req


# ---- the Signature header -------------------------------------------------------------------


def test_parse_tyk_header():
    p = parse_signature_header('Signature keyId="9876",algorithm="hmac-sha1",signature="abc%2B%3D"')
    assert (p.key_id, p.algorithm, p.headers, p.signature) == ("9876", "hmac-sha1", ("date",), "abc%2B%3D")


def test_parse_variants():
    p = parse_signature_header('signature keyID="k", Algorithm="hmac-sha256", headers="(request-target) Date X-Test",'
                               ' signature="s"')
    assert p.key_id == "k" and p.headers == ("(request-target)", "date", "x-test")
    p = parse_signature_header('keyId="a\\"b",signature="x",headers="  date   digest "')
    assert p.key_id == 'a"b' and p.headers == ("date", "digest")
    assert parse_signature_header("keyId=plain,signature=abc").key_id == "plain"


@pytest.mark.parametrize("value", [
    'keyId="k",algorithm="hmac-sha1",nonce="n",signature="s"',  # not an allowed parameter
    'keyId="k",signature="unterminated',
    "no equals sign here",
])
def test_parse_refuses(value):
    assert parse_signature_header(value) is None


def test_parse_is_linear_on_hostile_headers():
    """A 60 KB header built to make a backtracking parser explode is refused at once."""
    n = 20_000
    hostile = ["a=" + "x=" * n + '"', ("a=b " * n) + '"', "," * n + "x", "a" * n, 'a="' + "\\" * n,
               'a="b" ' * n + "c", " " * n + "="]
    started = time.perf_counter()
    for value in hostile:
        parse_signature_header(value)
    assert time.perf_counter() - started < 0.5


# ---- signing strings --------------------------------------------------------------------------


def test_signing_string_lines():
    req = request(headers=[(b"Date", DATE.encode()), (b"X-Test-1", b"  hello  "), (b"x-test-2", b"world")])
    assert signing_strings(req, ("(request-target)", "date", "x-test-1", "x-test-2")) == [
        b"(request-target): get /\ndate: " + DATE.encode() + b"\nx-test-1: hello\nx-test-2: world"]
    assert signing_strings(req, ("date",)) == [b"date: " + DATE.encode()]
    assert signing_strings(req, ("x-missing",)) == [b"x-missing: "]  # absent: empty value (Tyk)


def test_x_aux_date_replaces_date():
    req = request(headers=[(b"Date", b"ignored"), (b"X-Aux-Date", DATE.encode())])
    assert signing_strings(req, ("date",)) == [b"x-aux-date: " + DATE.encode()]


def test_repeated_headers_are_joined_and_bytes_kept():
    req = request(headers=[(b"X-A", b"one"), (b"x-a", b"two"), (b"X-U", "žluťoučký".encode())])
    assert signing_strings(req, ("x-a", "x-u")) == [b"x-a: one, two\nx-u: " + "žluťoučký".encode()]


def test_request_target_forms():
    req = request("POST", b"/api/a%20b?x=1&y=2")
    standard, tyk = signing_strings(req, ("(request-target)",))
    assert standard == b"(request-target): post /api/a%20b?x=1&y=2"  # draft-cavage, httpsig
    assert tyk == b"(request-target): post /api/a b"  # Tyk: decoded path, no query
    assert len(signing_strings(request("GET", b"/plain"), ("(request-target)",))) == 1
    assert signing_strings(req, ("(request-target)",), tyk_target=False) == [standard]


# ---- signature, date, digest encodings -------------------------------------------------------


def test_decode_signature_plain_and_escaped():
    raw = bytes(range(200, 232))
    plain = base64.b64encode(raw).decode()
    assert "+" in plain or "/" in plain
    assert decode_signature(plain) == raw
    assert decode_signature(quote(plain, safe="")) == raw  # Tyk clients: %2B %2F %3D
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(plain, safe=""))
    assert "%2b" in lower or "%2f" in lower
    assert decode_signature(lower) == raw  # .NET sends %2b
    assert decode_signature("not base64!") is None


def test_http_dates():
    assert parse_http_date(DATE.encode()) == 1402174295.0
    assert parse_http_date(b"Tue, 07 Jun 2014 20:51:35 UTC") == 1402174295.0
    assert parse_http_date(b"Tue, 07 Jun 2014 22:51:35 +02") == 1402174295.0
    assert parse_http_date(b"Tue, 07 Jun 2014 15:21:35 -0530") == 1402174295.0
    for bad in (b"", b"yesterday", b"2014-06-07T20:51:35Z", b"Tue, 07 Jun 2014 20:51 GMT", b"Tue, 07 Foo 2014 20:51:35 GMT"):
        assert parse_http_date(bad) is None


def test_digests():
    body = b"hello"
    s256 = base64.b64encode(hashlib.sha256(body).digest())
    s512 = base64.b64encode(hashlib.sha512(body).digest())
    factory, expected = parse_digest(b"SHA-256=" + s256)
    assert factory is hashlib.sha256 and expected == hashlib.sha256(body).digest()
    factory, _ = parse_digest(b"sha-256=" + s256 + b", SHA-512=" + s512)
    assert factory is hashlib.sha512  # the strongest entry wins
    assert parse_digest(b"MD5=abc") is None
    assert parse_digest(b"SHA-256=!!!") is None
    assert parse_digest(b"SHA-256=" + base64.b64encode(b"short")) is None
    assert parse_digest(None) is None


# ---- config ---------------------------------------------------------------------------------


def classic(**fields) -> ApiSpec:
    raw = {"api_id": "h", "name": "H", "org_id": "default", "use_keyless": False,
           "proxy": {"listen_path": "/h/", "target_url": "http://x"}, "enable_signature_checking": True, **fields}
    return decode_classic(raw, "h.json")


def test_config_classic_and_oas():
    config = hmac_config(classic(hmac_allowed_algorithms=["hmac-sha512"], hmac_allowed_clock_skew=5000,
                                 hmac_required_headers=["(request-target)", "Date"], hmac_validate_digest=True))
    assert config.allowed_algorithms == {"hmac-sha512"} and config.clock_skew_ms == 5000
    assert config.required_headers == ("(request-target)", "date") and config.validate_digest
    assert hmac_config(classic(enable_signature_checking=False)) is None
    raw = {"x-tyk-api-gateway": {"info": {"id": "o", "name": "O"}, "upstream": {"url": "http://x"},
                                 "server": {"listenPath": {"value": "/o/"}, "authentication": {"enabled": True, "hmac": {
        "enabled": True, "allowedAlgorithms": ["hmac-sha256"], "allowedClockSkew": 1000,
        "header": {"enabled": True, "name": "X-Sig"}, "replayProtection": True}}}}}
    spec = decode_oas(raw, "o.json")
    config = hmac_config(spec)
    assert config.source.header_name == "X-Sig" and config.replay_protection and config.clock_skew_ms == 1000
    with pytest.raises(DefinitionError, match="positive allowed clock skew"):
        hmac_config(classic(hmac_replay_protection=True, hmac_allowed_clock_skew=-1))


# ---- the stage ------------------------------------------------------------------------------


SECRET = "s3cr3t"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KEYS = {
    "9876": SessionState(hmac_enabled=True, hmac_string=SECRET),
    "nohmac": SessionState(hmac_string=SECRET),  # flag off
    "empty": SessionState(hmac_enabled=True),  # no secret
    "rsa": SessionState(enable_http_signature_validation=True, rsa_certificate_id=PUBLIC_PEM),
    "rsa-off": SessionState(rsa_certificate_id=PUBLIC_PEM),
    "rsa-unknown": SessionState(enable_http_signature_validation=True, rsa_certificate_id="default" + "ab" * 32),
    "rsa-ec": SessionState(enable_http_signature_validation=True, rsa_certificate_id=ec.generate_private_key(
        ec.SECP256R1()).public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()),
}


def services_with(keys: dict[str, SessionState], *, warm: bool = True) -> Services:
    """Services on a memory store holding ``keys`` (cached on this node when ``warm``), stored
    unhashed so a session's storage id is its key."""
    services = make_services(hash_keys=False)
    put_keys(services, keys, warm=warm, org_id="default")  # the org of these tests' APIs
    return services


def run_stage(spec: ApiSpec, req: Request, *, warm: bool = True, services: Services | None = None) -> Denial | None:
    services = services or services_with(KEYS, warm=warm)
    (stage,) = compile_hmac_auth(spec, services)
    result = stage(req)
    if result is None or type(result) is Denial:
        return result
    return asyncio.run(result)


def hmac_b64(text: bytes, algorithm=hashlib.sha1, secret=SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text, algorithm).digest()).decode()


def signed(key_id="9876", algorithm="hmac-sha1", headers=None, date=None, extra=(), target=b"/", method="GET",
           escape=True, sign_with=None) -> Request:
    date = date or formatdate(usegmt=True)
    req = request(method, target, [(b"Date", date.encode()), *extra])
    names = tuple(headers or ("date",))
    text = signing_strings(req, names)[-1 if sign_with == "tyk" else 0]
    digestmod = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}.get(algorithm)
    sig = hmac_b64(text, digestmod) if digestmod else ""
    if escape:
        sig = quote(sig, safe="")
    hdr = f'Signature keyId="{key_id}",algorithm="{algorithm}",'
    if headers:
        hdr += f'headers="{" ".join(headers)}",'
    req.headers.append((b"Authorization", (hdr + f'signature="{sig}"').encode()))
    return req


def test_stage_accepts_tyk_signatures():
    spec = classic(hmac_allowed_clock_skew=5000)
    req = signed()
    assert run_stage(spec, req) is None and req.session == KEYS["9876"] and req.session_key == "9876"
    assert run_stage(spec, signed(), warm=False) is None  # through the store lookup
    headers = ("(request-target)", "date", "x-test-1", "x-test-2")
    extra = ((b"X-Test-1", b"hello"), (b"X-Test-2", b"world"))
    assert run_stage(spec, signed(headers=headers, extra=extra)) is None
    assert run_stage(spec, signed(headers=headers, extra=extra, target=b"/a?b=1", sign_with="tyk")) is None
    assert run_stage(classic(hmac_allowed_algorithms=["hmac-sha512"]), signed(algorithm="hmac-sha512")) is None


def test_stage_accepts_httpsig():
    date = formatdate(usegmt=True)
    signer = HeaderSigner("9876", SECRET.encode(), algorithm="hmac-sha256", headers=["(request-target)", "date"])
    out = signer.sign({"Date": date}, method="POST", path="/h/x?y=1")
    req = request("POST", b"/h/x?y=1", [(b"Date", date.encode()), (b"Authorization", out["authorization"].encode())])
    assert run_stage(classic(), req) is None
    rsa_signer = HeaderSigner("rsa", PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()), algorithm="rsa-sha256")
    out = rsa_signer.sign({"Date": date}, method="GET", path="/")
    req = request("GET", b"/", [(b"Date", date.encode()), (b"Authorization", out["authorization"].encode())])
    assert run_stage(classic(), req) is None


def rsa_request(key_id: str, tamper: bool = False) -> Request:
    date = formatdate(usegmt=True)
    text = b"date: " + date.encode()
    sig = base64.b64encode(PRIVATE.sign(text + (b"x" if tamper else b""), padding.PKCS1v15(), hashes.SHA256())).decode()
    return request(headers=[(b"Date", date.encode()), (b"Authorization",
                             f'Signature keyId="{key_id}",algorithm="rsa-sha256",signature="{sig}"'.encode())])


def test_stage_rsa():
    spec = classic()
    assert run_stage(spec, rsa_request("rsa")) is None
    assert run_stage(spec, rsa_request("rsa", tamper=True)) is INVALID
    assert run_stage(spec, rsa_request("rsa-off")) is INVALID
    assert run_stage(spec, rsa_request("nobody")) is INVALID
    assert run_stage(spec, rsa_request("rsa-unknown")) is CERT_NOT_FOUND
    assert run_stage(spec, rsa_request("rsa-ec")) is NOT_RSA
    assert (CERT_NOT_FOUND.status, CERT_NOT_FOUND.message) == (500, "Certificate not found")


def test_stage_refusals_are_tyk_400():
    spec = classic(hmac_allowed_clock_skew=5000)
    assert INVALID.status == 400 and INVALID.message == "Authorization field missing, malformed or invalid"
    assert run_stage(spec, request(headers=[(b"Date", DATE.encode())])) is INVALID  # no header
    old = formatdate(time.time() - 60, usegmt=True)
    assert run_stage(spec, signed(date=old)) is INVALID  # outside the skew
    assert run_stage(classic(), signed(date=old)) is None  # no skew window
    assert run_stage(classic(), signed(date="not a date")) is INVALID  # a date must parse anyway
    no_date = signed()
    no_date.headers = [h for h in no_date.headers if h[0] != b"Date"]
    assert run_stage(classic(), no_date) is INVALID
    assert run_stage(spec, signed(key_id="98765")) is INVALID  # unknown key
    assert run_stage(spec, signed(key_id="nohmac")) is INVALID
    assert run_stage(spec, signed(key_id="empty")) is INVALID
    assert run_stage(classic(hmac_allowed_algorithms=["hmac-sha512"]), signed()) is INVALID
    assert run_stage(spec, signed(algorithm="hmac-md5")) is INVALID  # unknown algorithm
    wrong = signed()
    wrong.headers[-1] = (b"Authorization", wrong.headers[-1][1].replace(b'signature="', b'signature="AAAA'))
    assert run_stage(spec, wrong) is INVALID
    tampered = signed(headers=("date", "x-test"), extra=((b"X-Test", b"a"),))
    tampered.headers[1] = (b"X-Test", b"b")
    assert run_stage(spec, tampered) is INVALID


def test_stage_required_headers():
    spec = classic(hmac_required_headers=["(request-target)", "date"])
    denial = run_stage(spec, signed())
    assert denial.status == 400 and denial.message == "The request signature must cover: (request-target) date"
    assert run_stage(spec, signed(headers=("(request-target)", "date"))) is None
    assert run_stage(spec, signed(headers=("(request-target)", "date"), target=b"/a?b=1")) is None
    # Tyk's form leaves the query unsigned: refused when the target must be signed.
    assert run_stage(spec, signed(headers=("(request-target)", "date"), target=b"/a?b=1", sign_with="tyk")) is INVALID


def test_stage_digest_policy_before_the_body():
    spec = classic(hmac_validate_digest=True)
    assert run_stage(spec, signed()) is None  # no body, no Digest: fine
    empty = "SHA-256=" + base64.b64encode(hashlib.sha256(b"").digest()).decode()
    ok = signed(headers=("date", "digest"), extra=((b"Digest", empty.encode()),))
    assert run_stage(spec, ok) is None
    unsigned = signed(extra=((b"Digest", empty.encode()),))
    assert run_stage(spec, unsigned) is INVALID  # a Digest must be signed
    with_body = signed(headers=("date", "digest"), extra=((b"Digest", empty.encode()),))
    with_body.content_length = 5
    assert run_stage(spec, with_body) is INVALID  # a body, but no body tap checks it
    no_digest = signed(method="POST")
    no_digest.content_length = 5
    assert run_stage(spec, no_digest) is INVALID


def test_stage_replay_protection():
    spec = classic(hmac_allowed_clock_skew=2000, hmac_replay_protection=True)
    services = services_with(KEYS)
    req = signed()
    assert run_stage(spec, req, services=services) is None
    again = request(headers=list(req.headers))  # the same signed request, sent again
    assert run_stage(spec, again, services=services) is REPLAYED
    assert run_stage(spec, signed(headers=("date", "x-n"), extra=((b"X-N", b"1"),)), services=services) is None
