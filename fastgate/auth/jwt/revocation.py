"""JWT revocation by ``jti`` or ``sub``, the same on every node (beyond Tyk).

A JWT cannot be deleted like a key: it stays valid until ``exp``. Operators revoke one token by
its ``jti``, or every token of a subject issued up to now by its ``sub`` (tokens issued later
pass again, so a user logging in anew is not locked out). Revocations live in the store as one
small JSON document (``fastgate-jwt-revocations``) so every node, and a node started later, sees
them; each entry is kept until its ``until`` time (by default a day, or the token's own expiry).

Every node holds the document in memory: the check on the request path is two dict lookups, no
I/O. A change takes a short lock in the store (``kv_set_if_absent``), rewrites the document and
publishes ``JWTRevocationsChanged`` on the cluster channel; every node then reloads it (and
reloads after any gap in its subscription, since events may have been missed).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Final

import orjson

from fastgate.store.base import CLUSTER_CHANNEL, Store, StoreUnavailable, encode_event

__all__ = ["DOCUMENT_KEY", "NOTICE_JWT_REVOKED", "Revocations"]

log = logging.getLogger("fastgate.jwt")

DOCUMENT_KEY: Final = "fastgate-jwt-revocations"
_LOCK_KEY: Final = DOCUMENT_KEY + "-lock"
NOTICE_JWT_REVOKED: Final = "JWTRevocationsChanged"
DEFAULT_KEEP: Final = 86_400


class Revocations:
    """The revocation list of this node, and its changes through the store."""

    def __init__(self) -> None:
        self.jti: dict[str, float] = {}  # jti -> kept until (Unix time)
        self.sub: dict[str, tuple[float, float]] = {}  # sub -> (revoked at, kept until)

    def refused(self, jti: Any, sub: Any, iat: Any, now: float) -> bool:
        """True when a token with these claims is revoked at ``now``."""
        if self.jti and type(jti) is str:
            until = self.jti.get(jti)
            if until is not None and until > now:
                return True
        if self.sub and type(sub) is str:
            entry = self.sub.get(sub)
            if entry is not None and entry[1] > now:
                issued = iat if type(iat) in (int, float) else None
                return issued is None or issued <= entry[0]
        return False

    def as_json(self) -> dict[str, Any]:
        """The list as the Gateway API shows it."""
        return {
            "jti": [{"jti": k, "until": int(v)} for k, v in sorted(self.jti.items())],
            "sub": [{"sub": k, "revoked_at": int(v[0]), "until": int(v[1])} for k, v in sorted(self.sub.items())],
        }

    async def load(self, store: Store) -> None:
        """Replace the in-memory list with the store's (raises StoreUnavailable)."""
        self._set(_decode(await store.kv_get(DOCUMENT_KEY)))

    async def change(self, store: Store, kind: str, value: str, until: float | None) -> bool:
        """Revoke (``until`` set) or un-revoke (``until`` None) ``kind`` = jti | sub; True when
        the entry existed before. Raises StoreUnavailable when the store cannot be changed."""
        token = uuid.uuid4().hex.encode()
        for _ in range(100):
            if await store.kv_set_if_absent(_LOCK_KEY, token, 5.0):
                break
            await asyncio.sleep(0.05)
        else:
            raise StoreUnavailable("the revocation list is locked by another node")
        try:
            doc = _decode(await store.kv_get(DOCUMENT_KEY))
            now = time.time()
            table: dict[str, Any] = doc[kind]
            existed = value in table
            if until is None:
                table.pop(value, None)
            else:
                table[value] = until if kind == "jti" else [now, until]
            doc = _prune(doc, now)
            await store.kv_set(DOCUMENT_KEY, orjson.dumps(doc))
        finally:
            await store.kv_delete(_LOCK_KEY)
        self._set(doc)
        await store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_JWT_REVOKED))
        return existed

    def _set(self, doc: dict[str, Any]) -> None:
        self.jti = {k: float(v) for k, v in doc["jti"].items()}
        self.sub = {k: (float(v[0]), float(v[1])) for k, v in doc["sub"].items()}


def _decode(raw: bytes | None) -> dict[str, Any]:
    doc: Any = {}
    if raw:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.error("%s is not JSON; treated as empty", DOCUMENT_KEY)
    if not isinstance(doc, dict):
        doc = {}
    jti_table = doc.get("jti") if isinstance(doc.get("jti"), dict) else {}
    sub_table = doc.get("sub") if isinstance(doc.get("sub"), dict) else {}
    jti = {k: v for k, v in jti_table.items() if type(v) in (int, float)}
    sub = {
        k: v for k, v in sub_table.items()
        if isinstance(v, list) and len(v) == 2 and all(type(x) in (int, float) for x in v)
    }
    return {"jti": jti, "sub": sub}


def _prune(doc: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "jti": {k: v for k, v in doc["jti"].items() if v > now},
        "sub": {k: v for k, v in doc["sub"].items() if v[1] > now},
    }
