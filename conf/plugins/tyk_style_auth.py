# A Tyk-style Python plugin, as Tyk users write them: it runs unchanged in fastgate.
# Name it in an API definition: custom_middleware {"driver": "python",
#   "auth_check": {"name": "MyAuthCheck", "path": "plugins/tyk_style_auth.py"},
#   "pre": [{"name": "AddPreHeaders", "path": "plugins/tyk_style_auth.py"}]}
from tyk.decorators import *
from gateway import TykGateway as tyk


@Hook
def AddPreHeaders(request, session, spec):
    request.add_header("X-Pre-Hook", "ran")
    return request, session


@Hook
def MyAuthCheck(request, session, metadata, spec):
    token = request.get_header("Authorization")
    if token == "plugin-token-0001":
        session.rate = 100.0
        session.per = 1.0
        session.quota_max = -1
        metadata["token"] = token          # the key the session is stored as
        tyk.log("MyAuthCheck accepted a token", "info")
    else:
        request.object.return_overrides.response_code = 403
    return request, session, metadata
