# The bench's Tyk-style auth plugin (issue 14): accepts the bench key from the Authorization header.
from tyk.decorators import *

KEY = "bench-key-0123456789abcdef"


@Hook
def BenchAuth(request, session, metadata, spec):
    token = request.get_header("Authorization")
    if token == KEY:
        session.rate = 1000000.0
        session.per = 1.0
        session.quota_max = -1
        metadata["token"] = token
    else:
        request.object.return_overrides.response_code = 403
    return request, session, metadata
