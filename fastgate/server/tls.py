"""TLS termination: the listener's ``SSLContext``, certificates chosen by SNI, client certificates.

How this fits uvloop and OpenSSL (the reasons for the module's shape):

* A listening server keeps the ``SSLContext`` it was created with for its whole life. What has to
  change at run time, the client certificates a reload or an upload to ``/tyk/certs`` makes
  acceptable, therefore lives in *serving* contexts: the listener context's SNI callback, which
  OpenSSL calls for every ClientHello (with or without SNI), moves each new connection to the
  serving context of its host name. A change builds new serving contexts and swaps one dict;
  handshakes already past the callback keep what they were given.
* OpenSSL copies some settings from the listener context into each connection *before* the SNI
  callback and never re-reads them from the context switched to: protocol versions, options,
  verify mode and verify flags. The client-certificate ones are changed on the listener context,
  whose live object takes changes for every later handshake. The certificate chain, the trust
  store (which client certificates verify) and the cipher list come from the serving context.
  Every context gets the same versions, options and ciphers.
* Verify mode (``set_client_auth``): *none* while no API reads client certificates (no
  CertificateRequest is sent); *required* when every API does static mTLS and the Gateway API is
  not on this listener (a handshake without an acceptable certificate fails, as Tyk does for a
  domain whose APIs all need one); *optional* otherwise: a certificate is asked for, and one that
  is sent must chain to the trust store, the union of what the APIs allow; each API then decides
  at HTTP level (``fastgate.auth.mtls``). Python's ``ssl`` has no verify callback, so unlike Tyk a
  certificate nobody allows fails the handshake even on an API that ignores certificates.
* Verify flags: PARTIAL_CHAIN lets an allowlisted leaf, not only a CA, be a trust anchor;
  NO_CHECK_TIME leaves validity dates to the HTTP stages, so an expired certificate gets Tyk's
  403 "Certificate has expired" instead of a bare handshake failure.
* Handshake failures: uvloop closes the socket without sending the alert OpenSSL prepared, so a
  client would only see a reset. ``_AlertingSSLObject`` reports the failure once as "want read",
  which makes uvloop flush the pending alert ("unknown ca", "certificate required"), and raises
  it for real on the next call. Closing sends our close_notify without waiting for the client's:
  uvloop would otherwise hold every closed connection (and a graceful shutdown) until an idle
  pooled client answers, which it never does.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Iterable, Literal, Sequence

from fastgate.certs.crl import CrlError, load_crl_file

if TYPE_CHECKING:
    from fastgate.config import Config

__all__ = ["ClientAuth", "TlsError", "TlsTerminator", "tls_problems", "tls_version"]

log = logging.getLogger("fastgate.tls")

ClientAuth = Literal["none", "optional", "required"]

# X509_V_FLAG_NO_CHECK_TIME (OpenSSL >= 1.1.0); the ssl module has no name for it.
_NO_CHECK_TIME: Final = 0x200000
_VERIFY_FLAGS: Final = ssl.VERIFY_X509_PARTIAL_CHAIN | _NO_CHECK_TIME

_VERSIONS: Final = {
    "1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3,
    # Tyk's tyk.conf numbers (Go's tls.VersionTLS1x).
    "769": ssl.TLSVersion.TLSv1, "770": ssl.TLSVersion.TLSv1_1,
    "771": ssl.TLSVersion.TLSv1_2, "772": ssl.TLSVersion.TLSv1_3,
}

# Tyk's ``ssl_ciphers`` take Go's (IANA) names; OpenSSL wants its own.
_IANA_CIPHERS: Final = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}


class TlsError(Exception):
    """TLS settings that cannot be used; the message names the config key."""


# ---- the listener ---------------------------------------------------------------------------


class TlsTerminator:
    """The SSL contexts of one gateway process's listeners.

    ``context`` is given to the main listener, ``control_context`` to the Gateway API's own port
    (it never asks for client certificates). ``set_client_auth`` changes, for new handshakes, whether
    client certificates are asked for and which ones verify.
    """

    def __init__(self, config: "Config") -> None:
        opts = config.http_server_options
        self._min = tls_version(opts.min_version, "min_version") or ssl.TLSVersion.TLSv1_2
        self._max = tls_version(opts.max_version, "max_version")
        self._ciphers = openssl_ciphers(opts.ssl_ciphers)
        self._certs = [
            (c.domain_name.lower(), str(config.resolve(c.cert_file)), str(config.resolve(c.key_file)))
            for c in opts.certificates
        ]
        if not self._certs:
            raise TlsError("http_server_options.certificates: use_ssl is on but no certificate is configured")
        self.client_auth: ClientAuth = "none"
        self.trusted = 0  # certificates in the trust store, for logs and tests
        self._serving: dict[str, ssl.SSLContext] = {}
        self._default: ssl.SSLContext
        self._build_serving(())
        self.context = self._new_context()
        self.context.sni_callback = self._on_server_name
        self.control_context = self._new_context()

    def set_client_auth(self, mode: ClientAuth, trusted: Sequence[bytes]) -> None:
        """Ask for client certificates per ``mode``; those chaining to ``trusted`` (DER) verify."""
        self._build_serving(trusted)
        ctx = self.context
        if mode == "none":
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.verify_flags = ctx.verify_flags | _VERIFY_FLAGS
            ctx.verify_mode = ssl.CERT_REQUIRED if mode == "required" else ssl.CERT_OPTIONAL
        if mode != self.client_auth or len(trusted) != self.trusted:
            log.info("client certificates: %s, %d trusted", mode, len(trusted))
        self.client_auth = mode
        self.trusted = len(trusted)

    # ---- internals ---------------------------------------------------------------------------

    def _new_context(self, cert: tuple[str, str, str] | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self._min
        if self._max is not None:
            ctx.maximum_version = self._max
        if self._ciphers:
            ctx.set_ciphers(self._ciphers)
        ctx.options |= ssl.OP_NO_RENEGOTIATION
        ctx.sslobject_class = _AlertingSSLObject
        _, cert_file, key_file = cert or self._certs[0]
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def _serving_context(self, trusted: Sequence[bytes], cert: tuple[str, str, str]) -> ssl.SSLContext:
        ctx = self._new_context(cert)
        if trusted:
            ctx.load_verify_locations(cadata=b"".join(trusted))
        return ctx

    def _build_serving(self, trusted: Sequence[bytes]) -> None:
        serving: dict[str, ssl.SSLContext] = {}
        default: ssl.SSLContext | None = None
        for cert in self._certs:
            ctx = self._serving_context(trusted, cert)
            default = default or ctx
            if cert[0]:
                serving.setdefault(cert[0], ctx)
        assert default is not None
        self._serving, self._default = serving, default

    def _on_server_name(self, ssl_object: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        serving = self._serving
        target = self._default
        if server_name and serving:
            name = server_name.lower()
            found = serving.get(name)
            if found is None and "." in name:
                found = serving.get("*." + name.split(".", 1)[1])
            if found is not None:
                target = found
        ssl_object.context = target


class _AlertingSSLObject(ssl.SSLObject):
    """An ``SSLObject`` whose failed handshake lets uvloop send the TLS alert first, and whose
    close does not wait for the client's close_notify (see the module doc)."""

    _failure: ssl.SSLError | None = None
    _outgoing: ssl.MemoryBIO | None = None

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any) -> "_AlertingSSLObject":
        obj: _AlertingSSLObject = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        obj._outgoing = outgoing
        return obj

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            if self._outgoing is None or not self._outgoing.pending:
                raise  # no alert to deliver (plain HTTP on the TLS port gets none): close now
            self._failure = exc
            raise ssl.SSLWantReadError("the alert goes out first") from None

    def unwrap(self) -> None:
        try:
            super().unwrap()
        except ssl.SSLWantReadError:
            # Our close_notify is written; waiting for the client's (uvloop would) adds nothing,
            # HTTP framing says where responses end, and a pooled idle client never answers:
            # closing is one-way, as nginx does it.
            pass


# ---- configuration ----------------------------------------------------------------------------


def tls_version(value: int | str, key: str) -> ssl.TLSVersion | None:
    """``min_version`` / ``max_version`` as an ``ssl.TLSVersion`` (``None`` when empty)."""
    text = str(value).strip().lower().removeprefix("tlsv").removeprefix("tls")
    if text in ("", "0"):
        return None
    version = _VERSIONS.get(text)
    if version is None:
        raise TlsError(f"http_server_options.{key}: {value!r} is not a TLS version (1.2, 1.3, 771, 772)")
    return version


def openssl_ciphers(names: Iterable[str]) -> str:
    """Tyk's ``ssl_ciphers`` as an OpenSSL cipher string; unknown names raise ``TlsError``."""
    given = [name.strip() for name in names if name.strip()]
    wanted = [_IANA_CIPHERS.get(name, name) for name in given]
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for original, name in zip(given, wanted):
        try:
            probe.set_ciphers(name)
        except ssl.SSLError:
            raise TlsError(f"http_server_options.ssl_ciphers: {original!r} is not a cipher suite this OpenSSL offers") from None
    return ":".join(wanted)


def tls_problems(config: "Config") -> list[str]:
    """What is wrong with the TLS settings (certificate files included); empty when usable."""
    opts = config.http_server_options
    problems: list[str] = []
    versions = []
    for key in ("min_version", "max_version"):
        try:
            versions.append(tls_version(getattr(opts, key), key))
        except TlsError as exc:
            problems.append(str(exc))
    if len(versions) == 2 and versions[0] and versions[1] and versions[0] > versions[1]:
        problems.append("http_server_options.max_version: is lower than min_version")
    try:
        openssl_ciphers(opts.ssl_ciphers)
    except TlsError as exc:
        problems.append(str(exc))
    if opts.use_ssl and not opts.certificates:
        problems.append("http_server_options.certificates: use_ssl is on but no [[http_server_options.certificates]] "
                        "(domain_name, cert_file, key_file) is configured")
    for i, cert in enumerate(opts.certificates):
        problems.extend(_certificate_problems(config, i, cert.cert_file, cert.key_file))
    if opts.crl_file:
        try:
            load_crl_file(config.resolve(opts.crl_file))
        except CrlError as exc:
            problems.append(f"http_server_options.crl_file: {exc}")
    return problems


def _certificate_problems(config: "Config", index: int, cert_file: str, key_file: str) -> list[str]:
    where = f"http_server_options.certificates[{index}]"
    cert_path, key_path = config.resolve(cert_file), config.resolve(key_file)
    problems = [
        f"{where}.{key}: {path}: cannot be read ({_reason(path)})"
        for key, path in (("cert_file", cert_path), ("key_file", key_path))
        if _reason(path)
    ]
    if problems:
        return problems
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            return [f"{where}: {key_path} is not the private key of {cert_path}"]
        return [f"{where}: {cert_path} / {key_path}: not a usable PEM certificate chain and private key"]
    except OSError as exc:
        return [f"{where}: {exc}"]
    return []


def _reason(path: Path) -> str:
    try:
        with open(path, "rb"):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc)
