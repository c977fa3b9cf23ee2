# A native fastgate plugin: typed and async, run on the event loop (no thread hop).
# Name it as any hook: custom_middleware {"driver": "python",
#   "auth_check": {"name": "check", "path": "plugins/native_auth.py"}}
from fastgate.plugins import Accept, Denial, PluginRequest, SessionState

SESSION = SessionState(rate=100, per=1, quota_max=-1)


async def check(request: PluginRequest) -> Accept | Denial:
    token = request.header("Authorization")
    if token != "native-token-0001":
        return Denial(403, "Key not authorised")
    return Accept(token, SESSION)
