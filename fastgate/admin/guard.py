"""What stands in front of the Gateway API: which Host may reach it, and how fast a client may
guess the secret.

On the main listener (``control_api_port = 0``) ``/tyk/`` is answered only for a loopback
``Host`` (``localhost``, ``127.0.0.0/8``, ``[::1]``, with or without a port) or one listed in
``control_api_hostnames``: a web page the browser loads from any other name (DNS rebinding, a
form posted cross-site to the gateway's public name) never reaches the API, and the answer is the
same 404 as an unknown path, so the API is not revealed. The dedicated control listener
(``control_api_port`` set) is its own socket and has no such check.

Failed secrets (missing or wrong ``X-Tyk-Authorization``) are counted per client address in a
fixed window; past ``MAX_FAILURES`` in ``WINDOW_SECONDS`` every ``/tyk/`` request from that
address gets 429 with ``Retry-After`` until the window ends, whatever secret it carries (so the
throttle is not an oracle). At most ``MAX_CLIENTS`` addresses are remembered, oldest dropped.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["ControlHosts", "SecretThrottle", "host_name"]

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 10_000


def host_name(host: str) -> str:
    """``host`` (a Host header value) without its port, lowercased, brackets and a final dot dropped."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.removesuffix(".")


class ControlHosts:
    """The Host names the Gateway API answers for on the main listener (built once at load)."""

    __slots__ = ("names",)

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.names = frozenset({"localhost"} | {host_name(h) for h in extra if h.strip()})

    def allows(self, host: str) -> bool:
        """True for a loopback name or address, or a configured name; ``host`` may carry a port."""
        name = host_name(host)
        if not name:
            return False
        if name in self.names:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


class SecretThrottle:
    """Failed Gateway API secrets per client address, in fixed windows, with bounded memory."""

    __slots__ = ("capacity", "clients", "failed_total", "limit", "window")

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 capacity: int = MAX_CLIENTS) -> None:
        self.clients: OrderedDict[str, list[float]] = OrderedDict()  # address -> [window start, failures]
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self.failed_total = 0

    def retry_after(self, client: str, now: float) -> int:
        """Whole seconds ``client`` must wait (0: not throttled)."""
        entry = self.clients.get(client)
        if entry is None or entry[1] < self.limit:
            return 0
        left = entry[0] + self.window - now
        if left <= 0:
            del self.clients[client]
            return 0
        return max(math.ceil(left), 1)

    def failed(self, client: str, now: float) -> int:
        """Count one failure of ``client``; returns its failures in the current window."""
        self.failed_total += 1
        entry = self.clients.get(client)
        if entry is None or now - entry[0] >= self.window:
            entry = [now, 0.0]
            self.clients[client] = entry
        self.clients.move_to_end(client)
        entry[1] += 1
        while len(self.clients) > self.capacity:
            self.clients.popitem(last=False)
        return int(entry[1])
