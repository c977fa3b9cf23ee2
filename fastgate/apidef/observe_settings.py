"""What an API definition says about observing its traffic: analytics records (Tyk's
``do_not_track``, ``tag_headers``, ``track_endpoints``) and fastgate's ``auth_report_only``.

Classic: top-level ``do_not_track``, ``tag_headers``, ``auth_report_only``, and
``version_data.versions.*.extended_paths.track_endpoints`` (``[{path, method}]``). OAS:
``x-tyk-api-gateway.middleware.global.trafficLogs`` (``enabled: false`` is ``do_not_track``,
``tagHeaders``), ``x-tyk-api-gateway.server.authentication.reportOnly`` (fastgate's own) and
``middleware.operations.<id>.trackEndpoint.enabled`` for the operation's path and method.
"""

from __future__ import annotations

import msgspec

__all__ = ["ObserveSettings"]


class ObserveSettings(msgspec.Struct, frozen=True, kw_only=True):
    """An API's analytics and report-only switches."""

    auth_report_only: bool = False  # auth decides and is counted, but every request is proxied
    do_not_track: bool = False  # no analytics record for this API
    tag_headers: tuple[str, ...] = ()  # request headers whose values become record tags (lower-case)
    track_paths: tuple[tuple[str, str], ...] = ()  # (METHOD, path) marked TrackPath in records
