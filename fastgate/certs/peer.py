"""The client certificate of a TLS connection, as every request on it sees it.

``server/tls.py`` asks OpenSSL for the certificate (``peer_certificate`` on the connection's SSL
object) and ``auth/mtls.py`` decides what it is worth; this module is the value both share, so
neither imports the other.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from typing import Any, Final

from cryptography import x509

__all__ = ["PeerCertificate", "forwarded_client_cert", "peer_certificate"]


class PeerCertificate:
    """The client certificate of one TLS connection, offered to every request on it.

    Computed once per connection: the leaf's DER and its SHA-256 (hex, Tyk's certificate hash)
    at once, the parsed certificates on first use. ``chain`` is the path OpenSSL verified, from
    the leaf to a trust anchor: certificates a client merely sent along are not in it, so nothing
    unrelated to the leaf can vouch for it (a resumed session reuses the path verified for its
    leaf in this process). ``memo`` keeps per-connection results of checks that
    give the same answer for every request (an allowlist match), keyed by whoever made them.
    """

    __slots__ = ("der", "sha256", "memo", "_ssl_object", "_chain", "_parsed")

    def __init__(self, der: bytes, ssl_object: Any = None) -> None:
        self.der = der
        self.sha256 = hashlib.sha256(der).hexdigest()
        self.memo: dict[Any, Any] = {}
        self._ssl_object = ssl_object
        self._chain: tuple[bytes, ...] | None = None
        self._parsed: "tuple[x509.Certificate, ...] | None" = None

    @property
    def chain(self) -> tuple[bytes, ...]:
        """DER of the verified path, leaf first (only the leaf on a resumed session)."""
        if self._chain is None:
            found = [self.der]
            sslobj = getattr(self._ssl_object, "_sslobj", None)
            # Public in Python 3.13 (SSLObject.get_verified_chain), private before.
            getter = getattr(self._ssl_object, "get_verified_chain", None) or getattr(sslobj, "get_verified_chain", None)
            try:
                verified = getter() if getter is not None else None
            except (ssl.SSLError, ValueError):
                verified = None
            for cert in verified or ():
                der = cert.public_bytes(_DER)
                if der not in found:
                    found.append(der)
            if len(found) > 1:
                _remember_chain(self.sha256, tuple(found))
            else:
                # A resumed session skips verification and OpenSSL keeps no chain for it: the
                # path this process verified for the same leaf, when it did, still holds (the
                # session could only be issued after that verification).
                found = list(_VERIFIED_CHAINS.get(self.sha256, found))
            self._chain = tuple(found)
            self._ssl_object = None  # nothing else needs the connection's SSL object
        return self._chain

    @property
    def certificates(self) -> "tuple[x509.Certificate, ...]":
        """``chain`` parsed with ``cryptography``."""
        if self._parsed is None:
            self._parsed = tuple(x509.load_der_x509_certificate(der) for der in self.chain)
        return self._parsed

    @property
    def x509(self) -> "x509.Certificate":
        """The leaf, parsed."""
        return self.certificates[0]

    def expired(self, now: float | None = None) -> bool:
        """True outside the leaf's validity period (OpenSSL was told not to check dates)."""
        window = self.memo.get(_VALIDITY)
        if window is None:
            leaf = self.x509
            window = self.memo[_VALIDITY] = (leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp())
        now = time.time() if now is None else now
        return not window[0] <= now <= window[1]


def forwarded_client_cert(peer: PeerCertificate) -> bytes:
    """The ``X-Forwarded-Client-Cert`` value for ``peer``, in Envoy's format:
    ``Hash=<sha256 of the leaf's DER, hex>;Subject="<RFC 4514 subject>"``. Made once per
    connection."""
    value = peer.memo.get(_XFCC)
    if value is None:
        subject = peer.x509.subject.rfc4514_string().replace("\\", "\\\\").replace('"', '\\"')
        text = f'Hash={peer.sha256};Subject="{subject}"'
        # A header value holds no control characters (a subject could): they are escaped.
        value = "".join(c if " " <= c < "\x7f" else f"\\x{ord(c):02x}" for c in text).encode()
        peer.memo[_XFCC] = value
    return value


_VALIDITY: Final = object()
_XFCC: Final = object()
_VERIFIED_CHAINS: dict[str, tuple[bytes, ...]] = {}  # leaf sha256 -> verified path, for resumptions
_MAX_CHAINS: Final = 4096


def _remember_chain(sha256: str, chain: tuple[bytes, ...]) -> None:
    chains = _VERIFIED_CHAINS
    chains.pop(sha256, None)
    chains[sha256] = chain
    if len(chains) > _MAX_CHAINS:
        del chains[next(iter(chains))]  # the least recently verified
_DER: Final = getattr(ssl, "ENCODING_DER", None) or ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]


def peer_certificate(ssl_object: Any) -> PeerCertificate | None:
    """The verified client certificate of a TLS connection, ``None`` when none was sent."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return PeerCertificate(der, ssl_object) if der else None
