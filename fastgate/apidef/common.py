"""Checks shared by the Classic and OAS decoders: a definition that cannot work is refused."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.http.h1 import ProtocolError, canonical_path

__all__ = ["MAX_ID_LENGTH", "check_api_id", "check_listen_path", "check_target_url", "check_upstream_host"]

MAX_ID_LENGTH = 200  # <api_id>.json must fit the file system's 255 bytes

# Link-local networks: the cloud metadata services (169.254.169.254, AWS's fd00:ec2::254) live
# there, and an API proxying to them hands the node's credentials to its callers.
_LINK_LOCAL = tuple(
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})


def check_api_id(field: str, api_id: str) -> str:
    """Return ``api_id`` when it is a safe name (it names a file in ``app_path`` and a path
    segment of the Gateway API), or raise ``DefinitionError``."""
    problem = ""
    if api_id in (".", "..") or api_id.startswith(".") or ".." in api_id:
        problem = "must not start with a dot or contain '..'"
    elif any(c in api_id for c in "/\\%"):
        problem = "must not contain '/', '\\' or '%' (it names a file)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in api_id):
        problem = "must not contain control characters"
    elif len(api_id.encode()) > MAX_ID_LENGTH:
        problem = f"is longer than {MAX_ID_LENGTH} bytes"
    if problem:
        raise DefinitionError(field, f"{api_id!r} {problem}")
    return api_id


def check_upstream_host(spec: ApiSpec, allow_link_local: bool) -> None:
    """Refuse an upstream in a link-local network (cloud metadata services) unless allowed."""
    if allow_link_local:
        return
    host = (urlsplit(spec.target_url).hostname or "").rstrip(".").lower()
    field = "proxy.target_url" if spec.format == "classic" else "x-tyk-api-gateway.upstream.url"
    if host in _METADATA_NAMES or _link_local(host):
        raise DefinitionError(
            field,
            f"{spec.target_url!r}: upstream in a link-local / cloud metadata network is refused"
            " (security.allow_link_local_upstreams = true allows it)",
        )


def _link_local(host: str) -> bool:
    address = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        try:  # the forms getaddrinfo also accepts: 2852039166, 0xa9.0xfe.0xa9.0xfe, 169.254.43518
            ip = ipaddress.ip_address(socket.inet_aton(address))
        except (OSError, ValueError):
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _LINK_LOCAL)


def check_listen_path(field: str, listen_path: str | None) -> str:
    """Return the listen path normalised to start with ``/``, or raise ``DefinitionError``."""
    if not listen_path:
        raise DefinitionError(field, "missing: every API needs a listen path")
    if not listen_path.startswith("/"):
        listen_path = "/" + listen_path
    if any(seg in (".", "..") for seg in listen_path.split("/")) or "\\" in listen_path:
        raise DefinitionError(field, f"{listen_path!r} contains dot segments or backslashes")
    try:
        # Requests are routed on their canonical path: a listen path is matched in the same form.
        return canonical_path(listen_path)
    except ProtocolError as exc:
        raise DefinitionError(field, f"{listen_path!r}: {exc.message}") from None


def check_target_url(field: str, target_url: str | None) -> str:
    """Return a usable http(s) upstream URL, or raise ``DefinitionError`` saying why not."""
    if not target_url:
        raise DefinitionError(field, "missing: every API needs an upstream URL")
    parts = urlsplit(target_url)
    if parts.scheme not in ("http", "https"):
        raise DefinitionError(
            field, f"{target_url!r}: scheme {parts.scheme or '(none)'!r} is not supported (http or https)"
        )
    try:
        port = parts.port
    except ValueError:
        raise DefinitionError(field, f"{target_url!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise DefinitionError(field, f"{target_url!r}: no host")
    del port
    if parts.query or parts.fragment:
        raise DefinitionError(field, f"{target_url!r}: a query or fragment is not allowed in an upstream URL")
    return target_url
