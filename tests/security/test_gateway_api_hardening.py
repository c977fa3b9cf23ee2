"""The Gateway API cannot be driven by a web page or a guesser, and client input never makes it 5xx.

Over the wire against real gateway processes: no secret shipped, weak and published secrets
refused at start, ``make run``'s generated secret, ``/tyk/`` only for loopback (or configured)
Host names on the main listener, failed secrets throttled per client address, and ids and
limits the stores cannot hold refused with 400 on the memory and the Redis store.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tomllib

import pytest

from tests.kit.procs import ROOT, SECRET, Gateway, free_port, run_cli, write_config
from tests.kit.apis import classic_api, rights
from tests.kit.raw import RawClient
from tests.kit.gateway_api import ADMIN_HEADER
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway, shared_gateway


def raw_get(port: int, path: str, host: str, headers: str = "", source: str | None = None):
    """One GET with the given Host; ``source`` binds the client address (127.0.0.x)."""
    if source is None:
        with RawClient(port) as c:
            return c.request("GET", path, host=host, headers=headers + "Connection: close\r\n")
    c = RawClient.__new__(RawClient)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    c.buf, c.eof = b"", False
    with c:
        return c.request("GET", path, host=host, headers=headers + "Connection: close\r\n")


# ---- 4. the secret -----------------------------------------------------------------------------


def test_the_shipped_config_has_no_secret_and_passes_check():
    config = tomllib.loads((ROOT / "conf" / "fastgate.toml").read_text())
    assert config.get("secret", "") == ""
    assert "352d20ee67be67f6340b4c0605b044b7" not in (ROOT / "conf" / "fastgate.toml").read_text()
    out = run_cli("check", "--config", "conf/fastgate.toml")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("secret", ["352d20ee67be67f6340b4c0605b044b7", "foo", "secret", "changeme",
                                    "CHANGEME", "fifteen-chars!!"])
def test_a_weak_or_published_secret_stops_start_up(tmp_path, secret):
    port = free_port()
    (tmp_path / "apps").mkdir()
    config = write_config(tmp_path, {"listen_port": port, "secret": secret, "app_path": "apps"})
    out = run_cli("run", "--config", str(config), timeout=20)
    assert out.returncode != 0
    assert "secret:" in out.stderr
    if secret != "secret":  # (the word itself is in every message)
        assert secret not in out.stderr  # the refused value is not echoed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    # The same refusal from `fastgate check`, and from a FASTGATE_SECRET override.
    assert run_cli("check", "--config", str(config)).returncode != 0
    (tmp_path / "ok.toml").write_text(f"listen_port = {port}\napp_path = \"apps\"\n")
    out = run_cli("check", "--config", str(tmp_path / "ok.toml"), env={"FASTGATE_SECRET": secret})
    assert out.returncode != 0 and "secret:" in out.stderr


def test_make_run_generates_a_private_secret_once_and_the_gateway_takes_it(tmp_path, upstream):
    # The command `make run` runs (read from the Makefile, so the two cannot drift apart).
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.MULTILINE).group(1)
    assert "fastgate secret --file $(SECRET_FILE)" in recipe and 'FASTGATE_SECRET="$$secret"' in recipe
    secret_file = re.search(r"^SECRET_FILE := (\S+)$", makefile, re.MULTILINE).group(1)
    ignored = subprocess.run(["git", "check-ignore", "-q", secret_file], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{secret_file} must be git-ignored"

    path = tmp_path / "conf" / "local.secret"
    first = run_cli("secret", "--file", str(path))
    assert first.returncode == 0, first.stderr
    secret = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    assert "X-Tyk-Authorization: " + secret in first.stderr and "generated" in first.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    again = run_cli("secret", "--file", str(path))
    assert again.stdout.strip() == secret  # kept across runs
    other = run_cli("secret", "--file", str(tmp_path / "other.secret"))
    assert other.stdout.strip() != secret  # random

    (tmp_path / "gw").mkdir()
    gw = Gateway(tmp_path / "gw", [classic_api("k", "/k/", upstream.url)], env={"FASTGATE_SECRET": secret})
    try:
        assert gw.admin("GET", "/tyk/apis", secret=secret)[0] == 200
        assert gw.admin("GET", "/tyk/apis", secret=SECRET)[0] == 403
    finally:
        gw.stop()


def test_a_published_secret_in_the_secret_file_is_refused(tmp_path):
    path = tmp_path / "local.secret"
    path.write_text("352d20ee67be67f6340b4c0605b044b7\n")
    out = run_cli("secret", "--file", str(path))
    assert out.returncode != 0 and "secret:" in out.stderr and out.stdout == ""


def test_an_empty_secret_keeps_the_gateway_api_off(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)], {"secret": ""})
    for presented in ("", "anything-at-all-long-enough", SECRET):
        assert gw.admin("GET", "/tyk/apis", secret=presented)[0] == 403
    assert gw.admin("GET", "/tyk/apis", secret=None)[0] == 403


# ---- 4. which Host reaches /tyk/ on the main listener ------------------------------------------


@pytest.fixture(scope="module")
def hosts_gw(tmp_path_factory, upstream):
    """Read by the Host tests only (GETs of /tyk/apis, unknown paths and /hello): shared."""
    yield from shared_gateway(tmp_path_factory, "hosts", [classic_api("k", "/k/", upstream.url)],
                              {"control_api_hostnames": ["admin.internal"]})


@pytest.fixture(scope="module")
def default_hosts_gw(tmp_path_factory, upstream):
    """The same without control_api_hostnames: admin.internal is then an ordinary host."""
    yield from shared_gateway(tmp_path_factory, "default-hosts", [classic_api("k", "/k/", upstream.url)])


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "LOCALHOST.", "127.0.0.1", "127.0.0.1:{port}",
                                  "127.9.8.7", "[::1]", "[::1]:{port}", "admin.internal", "Admin.Internal:8443"])
def test_loopback_and_configured_hosts_reach_the_gateway_api(hosts_gw, host):
    gw = hosts_gw
    resp = raw_get(gw.port, "/tyk/apis", host.format(port=gw.port), ADMIN_HEADER)
    assert resp.status == 200, resp.body
    assert isinstance(resp.json(), list)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil",
                                  "10.0.0.1", "[::2]", "0.0.0.0", "admin.internal", ""])
def test_other_hosts_get_the_404_of_an_unknown_path(default_hosts_gw, host):
    gw = default_hosts_gw
    host = host.format(port=gw.port)
    unknown = raw_get(gw.port, "/no-such-api/", host)
    for path in ("/tyk/apis", "/tyk/keys/create", "/tyk/reload", "/tyk"):
        resp = raw_get(gw.port, path, host, ADMIN_HEADER)
        assert (resp.status, resp.body) == (unknown.status, unknown.body) == (404, unknown.body), path
        assert resp.header_names() == unknown.header_names()
    # /hello stays reachable for health checks from anywhere.
    assert raw_get(gw.port, "/hello", host).status == 200


def test_a_listen_path_under_tyk_is_an_ordinary_api_for_other_hosts(make_gateway, upstream):
    gw = make_gateway([classic_api("t", "/tyk/", upstream.url)])
    upstream.reset()
    resp = raw_get(gw.port, "/tyk/apis", "public.example", ADMIN_HEADER)
    assert resp.status == 200
    assert [r["path"] for r in upstream.seen()] == ["/apis"]


def test_the_dedicated_control_listener_has_no_host_check(make_gateway, upstream):
    control = free_port()
    gw = make_gateway([classic_api("k", "/k/", upstream.url)], {"control_api_port": control})
    resp = raw_get(control, "/tyk/apis", "evil.example", ADMIN_HEADER)
    assert resp.status == 200
    assert raw_get(gw.port, "/tyk/apis", "127.0.0.1", ADMIN_HEADER).status == 404  # not on the main one


# ---- 4. failed secrets are throttled -----------------------------------------------------------


def test_failed_secrets_are_throttled_per_client_address(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    guesses = [f"guess-{i:02d}-abcdefghijklmnop" for i in range(10)]
    for guess in guesses:
        resp = raw_get(gw.port, "/tyk/apis", "localhost", f"X-Tyk-Authorization: {guess}\r\n")
        assert resp.status == 403
    resp = raw_get(gw.port, "/tyk/apis", "localhost", "X-Tyk-Authorization: one-more-guess-xyz\r\n")
    assert resp.status == 429
    retry_after = int(resp.header("retry-after"))
    assert 1 <= retry_after <= 60
    assert resp.json()["status"] == "error" and "retry" in resp.json()["message"]
    # While throttled even the right secret is refused (no oracle), and a missing one too.
    assert raw_get(gw.port, "/tyk/apis", "localhost", ADMIN_HEADER).status == 429
    assert raw_get(gw.port, "/tyk/apis", "localhost").status == 429
    # Another client address is not affected; /hello and the APIs are not throttled.
    assert raw_get(gw.port, "/tyk/apis", "localhost", ADMIN_HEADER, source="127.0.0.2").status == 200
    assert raw_get(gw.port, "/hello", "localhost").status == 200
    assert raw_get(gw.port, "/k/echo", "localhost").status == 200
    # Counted and logged, never with the presented value.
    log = gw.log
    assert "10 of 10 allowed failures" in log
    for guess in guesses + ["one-more-guess-xyz"]:
        assert guess not in log


def test_right_secrets_do_not_count_towards_the_throttle(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    for _ in range(9):
        assert raw_get(gw.port, "/tyk/apis", "localhost", "X-Tyk-Authorization: wrong-but-long-enough\r\n").status == 403
    for _ in range(15):
        assert raw_get(gw.port, "/tyk/apis", "localhost", ADMIN_HEADER).status == 200


# ---- 10. ids and limits the stores cannot hold -------------------------------------------------

API = "lim"
BAD_IDS = ['a"b', "a\\b", "a\x01b", "a\tb", "a\x7fb"]


def api_rights(**limit) -> dict:
    """Access to the test API, with ``limit`` as its per-API limit when given."""
    return rights(API, limit=limit) if limit else rights(API)


def key_body(**fields) -> dict:
    return {"org_id": "default", "access_rights": api_rights(), **fields}


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def store_gw(request, tmp_path_factory, upstream):
    """One gateway per store for the module: its tests are refusals that store nothing, and keys
    under fresh random ids."""
    api = classic_api(API, "/lim/", upstream.url, use_keyless=False, auth={"auth_header_name": "Authorization"})
    yield from module_gateway(request.param, tmp_path_factory.mktemp("store-gw"), [api])


@pytest.mark.parametrize("org_id", BAD_IDS)
def test_org_ids_with_quotes_backslashes_or_control_characters_are_400(store_gw, org_id):
    status, body = store_gw.admin("POST", "/tyk/keys/create", key_body(org_id=org_id))
    assert status == 400 and "org_id" in body["message"], body
    status, body = store_gw.admin("POST", "/tyk/keys/customkey123", key_body(org_id=org_id))
    assert status == 400 and "org_id" in body["message"], body
    status, body = store_gw.admin("POST", "/tyk/policies", {"id": "p1", "org_id": org_id, "rate": 1, "per": 1,
                                                            "access_rights": api_rights()})
    assert status == 400 and "org_id" in body["message"], body
    quoted = org_id.replace('"', "%22").replace("\\", "%5C").replace("\x01", "%01").replace("\t", "%09").replace("\x7f", "%7F")
    for method in ("GET", "DELETE"):
        status, body = store_gw.admin(method, f"/tyk/keys/somekey?org_id={quoted}")
        assert status == 400 and "org_id" in body["message"], (method, body)


@pytest.mark.parametrize("key_id", BAD_IDS)
def test_key_ids_with_quotes_backslashes_or_control_characters_are_400(store_gw, key_id):
    quoted = key_id.replace('"', "%22").replace("\\", "%5C").replace("\x01", "%01").replace("\t", "%09").replace("\x7f", "%7F")
    for method, body in (("POST", key_body()), ("PUT", key_body()), ("GET", None), ("DELETE", None)):
        status, answer = store_gw.admin(method, f"/tyk/keys/{quoted}", body)
        assert status == 400, (method, status, answer)
        # An encoded backslash is refused by the listener already ({"error": ...}).
        assert "key id" in answer["message"] if "message" in answer else "error" in answer, answer
    # A good key still works on the same gateway afterwards.
    status, answer = store_gw.admin("POST", "/tyk/keys/create", key_body())
    assert status == 200, answer


LIMIT_CASES = [
    ("quota_renewal_rate", 2**62),
    ("quota_renewal_rate", 10**13),
    ("per", 1e300),
    ("per", 2**33),
    ("per", -1),
    ("rate", -2),
    ("rate", 1e300),
    ("quota_max", 2**63),
    ("quota_max", 2**53 + 1),
]


@pytest.mark.parametrize("field,value", LIMIT_CASES)
def test_limits_the_redis_limiter_cannot_run_are_400_naming_the_field(store_gw, field, value):
    fields = {"rate": 10, "per": 1, "quota_max": 100, "quota_renewal_rate": 60}
    fields[field] = value
    body = json.dumps(key_body(**fields)).encode()
    status, answer = store_gw.admin("POST", "/tyk/keys/create", body)
    assert status == 400 and field in answer["message"], answer
    # The same inside an access right, and in a policy (top level and per API).
    status, answer = store_gw.admin("POST", "/tyk/keys/create", key_body(access_rights=api_rights(**fields)))
    assert status == 400 and field in answer["message"], answer
    status, answer = store_gw.admin("POST", "/tyk/policies", {"id": "p", "org_id": "default", **fields,
                                                              "access_rights": api_rights()})
    assert status == 400 and field in answer["message"], answer
    status, answer = store_gw.admin("POST", "/tyk/policies", {"id": "p", "org_id": "default", "rate": 1, "per": 1,
                                                              "access_rights": api_rights(**fields)})
    assert status == 400 and field in answer["message"], answer
    assert store_gw.admin("GET", "/tyk/policies/p")[0] == 404  # nothing written


def test_non_finite_numbers_are_400(store_gw):
    for raw in (b'{"org_id":"default","rate":1e999,"per":1,"access_rights":{}}',
                b'{"org_id":"default","rate":NaN,"per":1,"access_rights":{}}',
                b'{"org_id":"default","rate":10,"per":-1e999,"access_rights":{}}'):
        status, answer = store_gw.admin("POST", "/tyk/keys/create", raw)
        assert status == 400, (raw, answer)


def test_limits_at_the_bounds_are_accepted_and_enforced(store_gw):
    fields = {"rate": 2, "per": 2**32, "quota_max": 2**53 - 1, "quota_renewal_rate": 9007199254740}
    status, answer = store_gw.admin("POST", "/tyk/keys/create", key_body(**fields))
    assert status == 200, answer
    key = answer["key"]
    codes = []
    for _ in range(3):
        with RawClient(store_gw.port) as c:
            codes.append(c.request("GET", "/lim/echo", host="localhost",
                                   headers=f"Authorization: {key}\r\nConnection: close\r\n").status)
    assert codes == [200, 200, 429]
    status, answer = store_gw.admin("GET", f"/tyk/keys/{key}")
    assert status == 200 and answer["quota_remaining"] == 2**53 - 3


def test_a_policy_file_with_a_limit_the_limiter_cannot_run_is_named_by_check(tmp_path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.json").write_text(json.dumps(
        {"bad": {"id": "bad", "org_id": "default", "rate": 10, "per": 1e300, "access_rights": {}}}))
    config = write_config(tmp_path, {"listen_port": free_port(), "secret": SECRET, "app_path": "apps",
                                     "policies": {"policy_path": "policies"}})
    out = run_cli("check", "--config", str(config))
    assert out.returncode == 1
    assert "bad.json" in out.stdout and "per" in out.stdout
