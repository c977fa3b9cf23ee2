"""Key ids as Tyk makes them, how they are hashed for storage, and how a credential is looked up.

A key ("token") is created for an organisation:

* without a hash function configured (Tyk's legacy mode) the token is `org_id + id`;
* with one, it is standard padded base64 of `{"org":"<org>","id":"<id>","h":"<algo>"}`, so
  tokens start with `ey` and carry the algorithm that hashes them.

With `hash_keys` on, the session is stored under `apikey-` + hex(hash(token)), the algorithm
being the token's own `h` (murmur32 for legacy tokens). The Murmur3 variants are written here in
pure Python (checked against the reference vectors); they only run on key creation and lookup, and
sha256 (the recommended choice) uses hashlib. An unknown algorithm raises `UnknownHashAlgorithm`
instead of silently hashing with something else; only `generate_token` keeps Tyk's fallback of
writing murmur64 into a token whose configured algorithm is unknown.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import struct
import uuid
from typing import Final, Iterable

import orjson

from fastgate.sessions.session import SessionState
from fastgate.store.limits import quota_key, rate_limit_key

__all__ = [
    "DEFAULT_MIN_TOKEN_LENGTH", "HASH_ALGORITHMS", "UnknownHashAlgorithm", "generate_token",
    "hash_bytes", "hash_token", "lookup_candidates", "min_token_length", "murmur3_32",
    "murmur3_x64_128", "storage_key_id", "token_hash_algo", "token_id", "token_org",
    "too_short", "unsafe_id", "endpoint_key_suffix", "limit_names",
]

HASH_ALGORITHMS: Final = ("murmur32", "murmur64", "murmur128", "sha256")
DEFAULT_MIN_TOKEN_LENGTH: Final = 3  # Tyk's value when `min_token_length` is 0
_FALLBACK_TOKEN_ALGO: Final = "murmur64"  # what Tyk writes into `h` for an unknown algorithm
_B64_JSON_PREFIX: Final = "ey"  # base64 of '{"'
_BSON_ID_LEN: Final = 24


_UNSAFE_ID_CHARS: Final = frozenset('"\\\x7f') | frozenset(chr(c) for c in range(32))


def unsafe_id(value: str) -> bool:
    """True when an org or key id holds `"`, `\\` or a control character: a JSON token built
    from it would be ambiguous (or not JSON), and such ids have no business in a header."""
    return not _UNSAFE_ID_CHARS.isdisjoint(value)


class UnknownHashAlgorithm(ValueError):
    """A hash algorithm other than murmur32/64/128 or sha256 was asked for."""


def generate_token(org_id: str, key_id: str | None = None, hash_algo: str = "") -> str:
    """The token (key) for `key_id` in `org_id`; a random 32-hex id when `key_id` is empty.

    A `key_id` that already starts with `org_id` has the prefix trimmed first, as Tyk does.
    Raises ValueError for ids containing `"` or `\\` (they would make the JSON token ambiguous).
    """
    key_id = key_id or uuid.uuid4().hex
    if org_id and key_id.startswith(org_id):
        key_id = key_id[len(org_id):]
    if not hash_algo:
        return org_id + key_id
    if any(c in s for s in (org_id, key_id) for c in '"\\'):
        raise ValueError('key and org ids may not contain \'"\' or \'\\\'')
    algo = hash_algo if hash_algo in HASH_ALGORITHMS else _FALLBACK_TOKEN_ALGO
    # Built as Tyk formats it (not by a JSON encoder) so the bytes, and so the hashes, match.
    raw = f'{{"org":"{org_id}","id":"{key_id}","h":"{algo}"}}'
    return base64.b64encode(raw.encode()).decode("ascii")


def token_hash_algo(token: str) -> str:
    """The `h` of a JSON token, "" for a legacy token (which then hashes with murmur32)."""
    return _token_field(token, "h")


def token_org(token: str) -> str:
    """The org of a token: `org` of a JSON token, else a leading 24-hex (BSON) id, else ""."""
    org = _token_field(token, "org")
    if org:
        return org
    head = token[:_BSON_ID_LEN]
    if len(token) > _BSON_ID_LEN and _is_hex(head):
        return head
    return ""


def token_id(token: str) -> str:
    """The `id` of a JSON token, "" when `token` is not one."""
    return _token_field(token, "id")


def hash_token(token: str, algo: str | None = None) -> str:
    """Hex digest of `token` for storage: `algo`, else the token's `h`, else murmur32."""
    if not algo:
        algo = token_hash_algo(token)
        if algo not in HASH_ALGORITHMS:
            # A token's `h` is whatever the client sent (the wire fuzzer found `sha2*6`, a 500):
            # an unknown one hashes with murmur32, as Tyk's storage.HashStr falls back.
            algo = "murmur32"
    return hash_bytes(token.encode(), algo)


def storage_key_id(token: str, hash_keys: bool) -> str:
    """The id a session is stored under (after `apikey-`): the hash or the token itself."""
    return _cached_hash(token) if hash_keys else token


# Every request with hash_keys hashes the presented key: pure-Python murmur costs 25-35 µs for a
# 120-byte token, a memo hit 0.1 µs. Bounded, and keyed by the exact token.
@functools.lru_cache(maxsize=8192)
def _cached_hash(token: str) -> str:
    return hash_token(token)


def lookup_candidates(credential: str, api_org_id: str, *, hash_algo: str = "",
                      fallbacks: Iterable[str] = (),
                      disable_key_actions_by_username: bool = False) -> list[str]:
    """Tokens to look up, in order, for a presented credential (Tyk's SessionDetail).

    A credential of the API's own org is looked up as is. Otherwise the org-prefixed form comes
    first (so basic-auth user names and custom ids are found), then the raw credential, then one
    form per `hash_key_function_fallback` algorithm. Hash each with `storage_key_id`.
    """
    if token_org(credential) == api_org_id:
        return [credential]
    found: list[str] = []
    if not disable_key_actions_by_username:
        found.append(_derived_token(api_org_id, credential, hash_algo))
    found.append(credential)
    if not disable_key_actions_by_username:
        found.extend(_derived_token(api_org_id, credential, algo) for algo in fallbacks)
    return list(dict.fromkeys(found))


def min_token_length(configured: int) -> int:
    """Effective minimum key length: the configured one, or 3 when it is 0 (Tyk's default)."""
    return configured if configured > 0 else DEFAULT_MIN_TOKEN_LENGTH


def too_short(credential: str, configured: int = 0) -> bool:
    """True when a presented key is shorter than the minimum: it is treated as not found."""
    return len(credential) < min_token_length(configured)


def hash_bytes(data: bytes, algo: str) -> str:
    """Hex digest of `data` with one of HASH_ALGORITHMS (big-endian, as Go's hash.Sum)."""
    if algo == "sha256":
        return hashlib.sha256(data).hexdigest()
    if algo == "murmur32":
        return f"{murmur3_32(data):08x}"
    if algo == "murmur64":
        return f"{murmur3_x64_128(data)[0]:016x}"
    if algo == "murmur128":
        h1, h2 = murmur3_x64_128(data)
        return f"{h1:016x}{h2:016x}"
    raise UnknownHashAlgorithm(f"unknown key hash function {algo!r}; use one of "
                               + ", ".join(HASH_ALGORITHMS))


def _derived_token(org_id: str, credential: str, algo: str) -> str:
    try:
        return generate_token(org_id, credential, algo)
    except ValueError:  # a credential with '"' can never be a JSON token's id: try it raw
        return credential


def _token_field(token: str, field: str) -> str:
    if not token.startswith(_B64_JSON_PREFIX):
        return ""
    try:
        parsed = orjson.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):  # a legacy key that merely starts with "ey"
        return ""
    value = parsed.get(field) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else ""


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# ---- counter names a key uses (the arithmetic is fastgate.store.limits) ---------------------


def endpoint_key_suffix(method: str, path: str) -> str:
    """Suffix of an endpoint-level limiter: murmur32 hex of `METHOD:path`, as Tyk names it."""
    return hash_bytes(f"{method}:{path}".encode(), "murmur32")


def limit_names(key_id: str, session: SessionState) -> tuple[list[str], list[str]]:
    """Every quota and limiter name a key can use: what `Store.reset_limits` takes on update.

    The key's own counters plus one per allowance scope, and one limiter per endpoint limit.
    """
    scopes = dict.fromkeys(["", *(r.allowance_scope for r in session.access_rights.values())])
    quotas = [quota_key(key_id, scope) for scope in scopes]
    rates = [rate_limit_key(key_id, scope) for scope in scopes]
    for right in session.access_rights.values():
        for endpoint in right.endpoints:
            for method in endpoint.methods:
                suffix = endpoint_key_suffix(method.name, endpoint.path)
                rates.append(rate_limit_key(key_id, right.allowance_scope, suffix))
    return quotas, list(dict.fromkeys(rates))


# ---------------------------------------------------------------------------------------------
# MurmurHash3 (Austin Appleby), seed 0 by default: x86_32 and x64_128 (murmur64 is its h1).

_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 of `data`."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    n = len(data) // 4 * 4
    for (k,) in _iter_words(data[:n], "<I"):
        k = (k * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        h ^= (k * c2) & _M32
        h = ((h << 13) | (h >> 19)) & _M32
        h = (h * 5 + 0xE6546B64) & _M32
    tail = data[n:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        h ^= (k * c2) & _M32
    h ^= len(data)
    return _fmix32(h)


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3 x64_128 of `data` as (h1, h2)."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed & _M32
    n = len(data) // 16 * 16
    for k1, k2 in _iter_words(data[:n], "<QQ"):
        k1 = (k1 * c1) & _M64
        k1 = ((k1 << 31) | (k1 >> 33)) & _M64
        h1 ^= (k1 * c2) & _M64
        h1 = ((((h1 << 27) | (h1 >> 37)) & _M64) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        k2 = (k2 * c2) & _M64
        k2 = ((k2 << 33) | (k2 >> 31)) & _M64
        h2 ^= (k2 * c1) & _M64
        h2 = ((((h2 << 31) | (h2 >> 33)) & _M64) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[n:]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        k2 = (k2 * c2) & _M64
        k2 = ((k2 << 33) | (k2 >> 31)) & _M64
        h2 ^= (k2 * c1) & _M64
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        k1 = (k1 * c1) & _M64
        k1 = ((k1 << 31) | (k1 >> 33)) & _M64
        h1 ^= (k1 * c2) & _M64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1, h2 = _fmix64(h1), _fmix64(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def _iter_words(data: bytes, fmt: str) -> Iterable[tuple[int, ...]]:
    return struct.iter_unpack(fmt, data)


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)
