"""Storage URLs: which Redis topology a `[storage] url` names (parsing only, no redis-py here, so
that a `memory://` gateway never imports it).

* `redis://[user:password@]host:port/db`, `rediss://...` (TLS): one server;
* `redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]`: the master
  that the sentinels (default port 26379) name `service_name`;
* `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster (db 0 only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

__all__ = ["SCHEMES", "Topology", "parse_topology"]

SCHEMES: Final = ("redis", "rediss", "redis+sentinel", "redis+cluster")
Kind = Literal["standalone", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class Topology:
    """A parsed storage URL: kind, the nodes (or sentinels), and what the path names."""

    kind: Kind
    url: str  # as given (a standalone URL goes to redis-py as it is)
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    where: str = ""  # the URL without user or password, for messages


def parse_topology(url: str) -> Topology:
    """The topology of a storage URL (query parameters are not looked at here).

    Raises ValueError with what is wrong: an unknown scheme, no host, a port that is not a
    number, a Sentinel URL without a service name, a database that is not a number, or a
    database other than 0 on a cluster (a Redis Cluster has only db 0).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"storage url {_safe(url)!r}: the scheme must be one of "
                         + ", ".join(s + "://" for s in SCHEMES))
    if scheme in ("redis", "rediss"):
        return Topology("standalone", url, where=_safe(url))
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_host_port(h, url, 26379 if scheme == "redis+sentinel" else 6379)
                  for h in hosts.split(","))
    where = f"{scheme}://{hosts}/{path}".rstrip("/")
    segments = [s for s in path.split("/") if s]
    if scheme == "redis+sentinel":
        if not segments or len(segments) > 2:
            raise ValueError(f"storage url {where!r}: use redis+sentinel://host:port[,host:port]"
                             "/service_name[/db]")
        return Topology("sentinel", url, nodes, segments[0], _db(segments[1:], where),
                        username, password, where)
    db = _db(segments, where)
    if db != 0 or len(segments) > 1:
        raise ValueError(f"storage url {where!r}: a Redis Cluster has only database 0")
    return Topology("cluster", url, nodes, "", 0, username, password, where)


def _host_port(text: str, url: str, default_port: int) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host:
        raise ValueError(f"storage url {_safe(url)!r}: a host is missing in {text!r}")
    if port and not port.isdigit():
        raise ValueError(f"storage url {_safe(url)!r}: port {port!r} is not a number")
    return host, int(port) if port else default_port


def _db(segments: list[str], where: str) -> int:
    if not segments:
        return 0
    if not segments[0].isdigit():
        raise ValueError(f"storage url {where!r}: database {segments[0]!r} is not a number")
    return int(segments[0])


def _safe(url: str) -> str:
    """`url` without user and password (never in a message or a log)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]
