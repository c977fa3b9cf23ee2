"""Hooks of the basic-auth and HMAC benchmark scenarios (issue 5), used by ``scenarios.py``.

* ``basic-auth``: one user with a bcrypt (cost 10) password and the same never-reached rate and
  quota as the auth-token scenario; wrk repeats its ``Authorization: Basic`` header, so the first
  request runs bcrypt and every later one is a cache hit (session and bcrypt result).
* ``basic-auth-bcrypt-load``: the same requests measured while a background thread of this
  process sends ``BCRYPT_LOAD_RPS`` requests per second with passwords never seen before (each a
  full bcrypt check in fastgate's thread pool). fastgate only: compare its p99 with the
  ``basic-auth`` scenario's. With ``--pin`` fastgate has one core, so its bcrypt threads share it
  with the event loop (at nice +10, so the loop keeps most of it: p99 12 -> 16 ms at 5 checks/s,
  31 ms at normal priority); what must never happen is a request waiting *behind* a bcrypt check.
* ``hmac-sha256``: a key with an HMAC secret; the request is signed once over
  ``(request-target) date`` with a fixed ``Date``, and the API allows a one-hour clock skew, so
  wrk can repeat the same signed request for the whole run. fastgate keeps no cache of verified
  signatures: every request is parsed, its signing string built and its HMAC-SHA256 computed and
  compared. (Signing each request in wrk's Lua would need a SHA-256 written in Lua on the load
  core, measuring wrk rather than the gateway; replay protection is off here for the same reason.)

nginx does its fixed API-key check on the same path shape (``/auth-key/``), the fastest an auth
check can be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.error
import urllib.request
from email.utils import formatdate

from scenarios import Context, Prepared, gateway_api

__all__ = ["BCRYPT_LOAD_RPS", "setup_basic", "setup_basic_bcrypt_load", "setup_hmac"]

BASIC_USER = "bench-user"
BASIC_PASSWORD = "bench-password-0123456789"
HMAC_KEY = "bench-hmac-key"
HMAC_SECRET = "bench-hmac-secret-0123456789abcdef"
BCRYPT_LOAD_RPS = 5  # uncached checks per second, each ~60-140 ms of one core


def _limits(api_id: str) -> dict[str, object]:
    return {
        "org_id": "default",
        "rate": 1_000_000,
        "per": 1,
        "quota_max": 1_000_000_000,
        "quota_renewal_rate": 3600,
        "access_rights": {api_id: {"api_id": api_id, "api_name": "bench", "versions": ["Default"]}},
    }


def _basic_header(password: str) -> str:
    return "Basic " + base64.b64encode(f"{BASIC_USER}:{password}".encode()).decode()


def setup_basic(ctx: Context) -> Prepared:
    session = {**_limits("bench-basic-auth"), "basic_auth_data": {"password": BASIC_PASSWORD}}
    gateway_api(ctx, "POST", "/tyk/keys/" + BASIC_USER, session)
    return Prepared(headers={"Authorization": _basic_header(BASIC_PASSWORD)})


def setup_basic_bcrypt_load(ctx: Context) -> Prepared:
    prepared = setup_basic(ctx)
    threading.Thread(target=_bcrypt_load, args=(ctx.fastgate_url + "/basic-auth/get",), daemon=True).start()
    return prepared


def _bcrypt_load(url: str) -> None:
    """Uncached bcrypt checks at BCRYPT_LOAD_RPS until fastgate goes away (end of the scenario)."""
    n = 0
    interval = 1.0 / BCRYPT_LOAD_RPS
    next_at = time.monotonic()
    while True:
        n += 1
        req = urllib.request.Request(url, headers={"Authorization": _basic_header(f"wrong-{n}")})
        threading.Thread(target=_send, args=(req,), daemon=True).start()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        if not _alive(url):
            return


def _send(req: urllib.request.Request) -> None:
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except (urllib.error.URLError, OSError):
        pass  # 401 expected; a refused connection ends the load (see _alive)


def _alive(url: str) -> bool:
    try:
        urllib.request.urlopen(url.rsplit("/basic-auth/", 1)[0] + "/hello", timeout=5).read()
        return True
    except (urllib.error.URLError, OSError):
        return False


def setup_hmac(ctx: Context) -> Prepared:
    gateway_api(ctx, "POST", "/tyk/keys/" + HMAC_KEY,
                {**_limits("bench-hmac"), "hmac_enabled": True, "hmac_string": HMAC_SECRET})
    date = formatdate(usegmt=True)
    text = f"(request-target): get /hmac/get\ndate: {date}".encode()
    signature = base64.b64encode(hmac.new(HMAC_SECRET.encode(), text, hashlib.sha256).digest()).decode()
    authorization = (f'Signature keyId="{HMAC_KEY}",algorithm="hmac-sha256",'
                     f'headers="(request-target) date",signature="{signature}"')
    return Prepared(headers={"Date": date, "Authorization": authorization})
