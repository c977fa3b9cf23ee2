"""Certificate revocation lists: which client certificates a CRL file revokes, and when it is stale.

Loaded by the listener (``fastgate.server.tls`` checks ``crl_file`` at start) and by static mTLS
(``fastgate.auth.mtls``, the gateway-wide list merged with an API's own). A file is re-read when it
changes; a list past its ``nextUpdate`` fails closed unless ``allow_expired_crl`` is on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cryptography import x509

if TYPE_CHECKING:
    from fastgate.certs.peer import PeerCertificate

__all__ = ["CrlError", "Revocations", "load_crl_file", "load_crl_files"]

log = logging.getLogger("fastgate.mtls")


class CrlError(ValueError):
    """A CRL file that cannot be used."""


class Revocations:
    """Revoked serial numbers by issuer, from one or more CRLs.

    A list past its ``nextUpdate`` fails closed: every certificate checked against it counts as
    revoked (and it is logged) until the file is renewed, which is noticed without a reload,
    unless ``http_server_options.allow_expired_crl`` is on (``fail_closed`` off).
    """

    __slots__ = ("_checked_at", "by_issuer", "fail_closed", "next_update", "sources")

    def __init__(self, by_issuer: dict[bytes, frozenset[int]], next_update: float = float("inf"),
                 sources: tuple[Path, ...] = (), fail_closed: bool = False) -> None:
        self.by_issuer = by_issuer
        self.next_update = next_update  # the earliest nextUpdate of the lists (unix seconds)
        self.sources = sources
        self.fail_closed = fail_closed
        self._checked_at = 0.0

    def revoked(self, path: Iterable[x509.Certificate]) -> bool:
        """True when a certificate of ``path`` is on a CRL of its issuer (or the CRL is stale)."""
        if self.stale():
            return True
        by_issuer = self.by_issuer
        for cert in path:
            serials = by_issuer.get(cert.issuer.public_bytes())
            if serials is not None and cert.serial_number in serials:
                return True
        return False

    def revoked_peer(self, peer: "PeerCertificate") -> bool:
        """``revoked`` for a connection's verified path, remembered on the connection."""
        if self.stale():
            return True
        found = peer.memo.get(self)
        if found is None:
            found = peer.memo[self] = self.revoked(peer.certificates)
        return bool(found)

    def stale(self) -> bool:
        """True while a list is past its nextUpdate and that fails closed."""
        if not self.fail_closed or time.time() <= self.next_update:
            return False
        now = time.monotonic()
        if now - self._checked_at < 1.0:
            return True
        self._checked_at = now  # re-read (a renewed file) and log at most once a second
        try:
            fresh = load_crl_files(self.sources)
        except CrlError:
            fresh = None
        if fresh is not None and fresh.next_update > self.next_update:
            self.by_issuer, self.next_update = fresh.by_issuer, fresh.next_update
            if time.time() <= self.next_update:
                log.warning("CRL %s renewed: client certificates are checked against it again",
                            ", ".join(map(str, self.sources)))
                return False
        log.error("CRL %s is past its next update: every client certificate checked against it is refused"
                  " until it is renewed (http_server_options.allow_expired_crl = true accepts it)",
                  ", ".join(map(str, self.sources)))
        return True

    def merged(self, other: "Revocations | None") -> "Revocations":
        if other is None:
            return self
        by_issuer = dict(self.by_issuer)
        for issuer, serials in other.by_issuer.items():
            by_issuer[issuer] = by_issuer.get(issuer, frozenset()) | serials
        return Revocations(by_issuer, min(self.next_update, other.next_update), self.sources + other.sources,
                           self.fail_closed or other.fail_closed)


def load_crl_files(paths: Iterable[Path]) -> Revocations | None:
    """The lists of every file in ``paths`` merged, or ``None`` for no file."""
    found: Revocations | None = None
    for path in paths:
        loaded = load_crl_file(path)
        found = loaded if found is None else found.merged(loaded)
    return found


_crl_cache: dict[str, tuple[float, int, Revocations]] = {}


def load_crl_file(path: Path) -> Revocations:
    """The CRLs in ``path`` (PEM, possibly several, or one DER); re-read when the file changes."""
    try:
        stat = path.stat()
        cached = _crl_cache.get(str(path))
        if cached is not None and cached[:2] == (stat.st_mtime, stat.st_size):
            return cached[2]
        data = path.read_bytes()
    except OSError as exc:
        raise CrlError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            parts = data.split(b"-----BEGIN X509 CRL-----")[1:]
            crls = [x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + part) for part in parts]
        else:
            crls = [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise CrlError(f"{path}: not a PEM or DER certificate revocation list ({exc})") from None
    by_issuer: dict[bytes, frozenset[int]] = {}
    earliest = float("inf")
    for crl in crls:
        issuer = crl.issuer.public_bytes()
        by_issuer[issuer] = by_issuer.get(issuer, frozenset()) | frozenset(r.serial_number for r in crl)
        next_update = crl.next_update_utc
        if next_update is not None:
            earliest = min(earliest, next_update.timestamp())
            if next_update.timestamp() < time.time():
                log.warning("CRL %s of %s is past its next update (%s)", path, crl.issuer.rfc4514_string(), next_update)
    revocations = Revocations(by_issuer, earliest, (path,))
    _crl_cache[str(path)] = (stat.st_mtime, stat.st_size, revocations)
    return revocations
