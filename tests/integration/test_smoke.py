"""The smallest end-to-end check: a keyless API proxies to a real upstream."""

import json
import urllib.request

from tests.kit.apis import classic_api


def test_keyless_api_proxies_to_upstream(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    with urllib.request.urlopen(gw.url + "/k/echo?a=1", timeout=5) as r:
        seen = json.loads(r.read())
    assert r.status == 200
    assert seen["path"] == "/echo" and seen["query"] == "a=1"
