"""``GET /metrics``: the Prometheus scrape (fastgate.observe.metrics), without the secret.

Served on the control listener (``control_api_port``), which listens on loopback by default, as
Prometheus scrapes without credentials; on the main listener only with ``metrics_on_main = true``
(and no control listener). Anywhere else ``/metrics`` is an ordinary path (404 when no API
serves it), so the metrics never leak on the public port by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastgate.http.h1 import simple_response
from fastgate.observe.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from fastgate.config import Config
    from fastgate.server.exchange import Exchange

__all__ = ["scrape", "serves_metrics"]


def serves_metrics(config: "Config", control_listener: bool) -> bool:
    """Whether ``/metrics`` answers on this listener."""
    if not config.enable_metrics:
        return False
    return control_listener or (config.control_api_port == 0 and config.metrics_on_main)


def scrape(exchange: "Exchange", metrics: Metrics) -> None:
    """Answer ``exchange`` with the metrics text (GET/HEAD) or 405."""
    req = exchange.req
    keep_alive = exchange.keep_alive and not exchange.client.closing
    if req.method not in ("GET", "HEAD"):
        body = b'{"status": "error", "message": "Method not supported"}'
        exchange.respond(405, simple_response(405, body, keep_alive=keep_alive, extra=((b"Allow", b"GET"),)),
                         keep_alive)
        return
    text = metrics.exposition()
    response = simple_response(200, text, keep_alive=keep_alive, content_type=CONTENT_TYPE)
    if req.method == "HEAD":
        response = response[: len(response) - len(text)]
    exchange.respond(200, response, keep_alive)
