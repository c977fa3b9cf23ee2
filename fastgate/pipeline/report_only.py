"""``auth_report_only``: an API's auth and post-auth checks run and decide, their refusals are
logged and counted, and every request is proxied anyway (rolling a new auth method out against
live traffic).

The API's checks become one stage that runs them in order; the first refusal is reported
(log line at INFO with the API, the stage and the message, never the credential; counted in
``fastgate_auth_decisions_total{outcome="report_only"}``) and the rest are skipped, since they
need the identity that was not established. A check that raises (the store is down) still
fails the request: report-only changes decisions, not availability. Off by default; a loud
warning at load says which API runs with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastgate.apidef.spec import ApiSpec
from fastgate.http.request import Request
from fastgate.observe.metrics import AUTH_ALLOWED, AUTH_REPORTED, stage_name
from fastgate.pipeline.stage import Denial, Stage

if TYPE_CHECKING:
    from fastgate.observe.metrics import Metrics

__all__ = ["report_only"]

log = logging.getLogger("fastgate.report_only")


def report_only(spec: ApiSpec, checks: tuple[Stage, ...], counters: list[int], metrics: "Metrics") -> tuple[Stage]:
    """One stage running ``checks`` that never refuses, reporting what they would have refused."""
    log.warning("API %r (%s): auth_report_only is ON: requests that fail authentication are proxied "
                "anyway (logged and counted only)", spec.api_id, spec.source)
    api_id = spec.api_id

    def report(req: Request, check: Stage, denial: Denial) -> None:
        counters[AUTH_REPORTED] += 1
        name = stage_name(check)
        metrics.refused(api_id, name, denial.status, denial.message, outcome="report_only")
        log.info("report-only: API %r: %s would refuse %s %s with %d %r", api_id, name, req.method, req.path,
                 denial.status, denial.message)

    async def finish(req: Request, pending: Any, index: int) -> None:
        result = await pending
        while True:
            if type(result) is Denial:
                report(req, checks[index], result)
                return None
            if result is not None:  # another awaitable
                result = await result
                continue
            index += 1
            if index >= len(checks):
                counters[AUTH_ALLOWED] += 1
                return None
            result = checks[index](req)

    def stage(req: Request) -> Any:
        for index, check in enumerate(checks):
            result = check(req)
            if result is None:
                continue
            if type(result) is Denial:
                report(req, check, result)
                return None
            return finish(req, result, index)
        counters[AUTH_ALLOWED] += 1
        return None

    return (stage,)
