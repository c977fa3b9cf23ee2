# The bench's native auth plugin (issue 14): the same check as tyk_auth.py, async on the event loop.
from fastgate.plugins import Accept, Denial, PluginRequest, SessionState, inline

KEY = "bench-key-0123456789abcdef"
SESSION = SessionState(rate=1000000, per=1, quota_max=-1)
REFUSED = Denial(403, "Key not authorised")


async def check(request: PluginRequest) -> Accept | Denial:  # in the request's task
    if request.header("Authorization") != KEY:
        return REFUSED
    return Accept(KEY, SESSION)


@inline
async def check_inline(request: PluginRequest) -> Accept | Denial:  # first step before any task
    if request.header("Authorization") != KEY:
        return REFUSED
    return Accept(KEY, SESSION)
