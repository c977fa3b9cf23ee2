"""Config: Tyk's names in TOML, FASTGATE_* overrides, and mistakes stopped with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastgate.config import Config, ConfigError, config_from_mapping, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults_file():
    config = load_config(ROOT / "conf" / "fastgate.toml", environ={})
    assert (config.listen_address, config.listen_port) == ("127.0.0.1", 8080)
    assert config.storage.url == "memory://"
    assert config.workers == 1
    assert config.control_api_port == 0
    assert config.resolve(config.app_path) == ROOT / "conf" / "apps"
    assert config.resolve(config.policies.policy_path) == ROOT / "conf" / "policies"
    opts = config.http_server_options
    assert opts.max_header_bytes == 65536 and opts.max_request_body_bytes == 0


def test_issue_keys_all_exist_with_tyk_names():
    config = config_from_mapping(
        {
            "listen_address": "0.0.0.0",
            "listen_port": 9000,
            "secret": "s-0123456789abcdef",
            "app_path": "/defs",
            "policies": {"policy_path": "/pols"},
            "storage": {"url": "redis://127.0.0.1:6379/0"},
            "control_api_port": 9001,
            "workers": 4,
            "http_server_options": {
                "read_header_timeout": 1,
                "read_timeout": 2,
                "write_timeout": 3,
                "upstream_timeout": 4,
                "idle_timeout": 5,
                "max_header_bytes": 2048,
                "max_request_body_bytes": 10,
            },
        },
        environ={},
    )
    assert config.listen_address == "0.0.0.0" and config.listen_port == 9000
    assert config.control_api_port == 9001 and config.workers == 4
    assert config.policies.policy_path == "/pols"
    assert config.resolve(config.app_path) == Path("/defs")
    opts = config.http_server_options
    assert (opts.read_header_timeout, opts.read_timeout, opts.write_timeout) == (1.0, 2.0, 3.0)
    assert (opts.upstream_timeout, opts.idle_timeout) == (4.0, 5.0)
    assert (opts.max_header_bytes, opts.max_request_body_bytes) == (2048, 10)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "gw.toml"
    path.write_text('app_path = "defs"\n')
    config = load_config(path, environ={})
    assert config.resolve(config.app_path) == tmp_path / "sub" / "defs"


# ---- environment -----------------------------------------------------------------------------


def test_environment_overrides_top_level_and_section_keys():
    config = config_from_mapping(
        {"listen_port": 8080, "http_server_options": {"idle_timeout": 30.0}},
        environ={
            "FASTGATE_LISTEN_PORT": "9100",
            "FASTGATE_SECRET": "from-env-0123456789",
            "FASTGATE_HASH_KEYS": "false",
            "FASTGATE_HTTP_SERVER_OPTIONS_IDLE_TIMEOUT": "2.5",
            "FASTGATE_HTTP_SERVER_OPTIONS_MAX_HEADER_BYTES": "4096",
            "FASTGATE_STORAGE_URL": "redis://r:6379/1",
            "FASTGATE_POLICIES_POLICY_PATH": "pols",
            "UNRELATED": "ignored",
        },
    )
    assert config.listen_port == 9100
    assert config.secret == "from-env-0123456789"
    assert config.hash_keys is False
    assert config.http_server_options.idle_timeout == 2.5
    assert config.http_server_options.max_header_bytes == 4096
    assert config.storage.url == "redis://r:6379/1"
    assert config.policies.policy_path == "pols"


def test_environment_keeps_the_rest_of_a_section():
    config = config_from_mapping(
        {"http_server_options": {"idle_timeout": 7.0, "read_timeout": 8.0}},
        environ={"FASTGATE_HTTP_SERVER_OPTIONS_IDLE_TIMEOUT": "1"},
    )
    assert config.http_server_options.idle_timeout == 1.0
    assert config.http_server_options.read_timeout == 8.0


@pytest.mark.parametrize(
    "environ,message",
    [
        ({"FASTGATE_LISTEN_PROT": "1"}, "environment FASTGATE_LISTEN_PROT: no such config key"),
        ({"FASTGATE_STORAGE_NOPE": "1"}, "environment FASTGATE_STORAGE_NOPE: no such config key"),
        ({"FASTGATE_LISTEN_PORT": "http"}, "environment FASTGATE_LISTEN_PORT: listen_port: Expected `int`, got `str`"),
        (
            {"FASTGATE_HTTP_SERVER_OPTIONS_READ_TIMEOUT": "soon"},
            "environment FASTGATE_HTTP_SERVER_OPTIONS_READ_TIMEOUT: http_server_options.read_timeout: Expected `float`",
        ),
    ],
)
def test_bad_environment_override(environ, message):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({}, source="gw.toml", environ=environ)
    assert str(info.value).startswith("gw.toml: ")
    assert message in str(info.value)


# ---- mistakes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"listen_prot": 1}, "gw.toml: listen_prot: unknown key"),
        ({"http_server_options": {"idle": 1}}, "gw.toml: http_server_options.idle: unknown key"),
        ({"storage": {"host": "r"}}, "gw.toml: storage.host: unknown key"),
        ({"listen_port": "80"}, "gw.toml: listen_port: Expected `int`, got `str`"),
        ({"hash_keys": "false"}, "gw.toml: hash_keys: Expected `bool`, got `str`"),
        ({"http_server_options": {"idle_timeout": "5"}}, "gw.toml: http_server_options.idle_timeout: Expected `float`, got `str`"),
        ({"workers": 1.5}, "gw.toml: workers: Expected `int`, got `float`"),
        ({"http_server_options": {"max_header_bytes": "big"}}, "gw.toml: http_server_options.max_header_bytes: Expected `int`"),
        ({"storage": "memory://"}, "gw.toml: storage: Expected `object`, got `str`"),
        ({"listen_port": 70000}, "gw.toml: listen_port: 70000 is not a TCP port"),
        ({"workers": 0}, "gw.toml: workers: must be at least 1"),
        ({"workers": 2}, "gw.toml: storage.url: memory:// is a single-process store; with workers > 1 use redis://"),
        ({"storage": {"url": "postgres://db"}}, "gw.toml: storage.url: 'postgres://db' is neither memory:// nor redis://"),
        ({"http_server_options": {"idle_timeout": 0}}, "gw.toml: http_server_options.idle_timeout: must be greater than 0"),
        ({"http_server_options": {"max_header_bytes": 100}}, "gw.toml: http_server_options.max_header_bytes: must be at least 1024"),
        ({"http_server_options": {"max_request_body_bytes": -1}}, "gw.toml: http_server_options.max_request_body_bytes: must be 0"),
    ],
)
def test_config_mistakes_name_the_file_and_key(raw, message):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, source="gw.toml", environ={})
    assert message in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_mapping(
            {"listen_port": 70000, "workers": 0, "http_server_options": {"read_timeout": -1}}, source="gw.toml", environ={}
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("gw.toml: ") for line in lines)


def test_integers_are_accepted_for_seconds():
    config = config_from_mapping({"http_server_options": {"idle_timeout": 5}}, environ={})
    assert config.http_server_options.idle_timeout == 5.0


def test_workers_with_redis_is_accepted():
    config = config_from_mapping({"workers": 2, "storage": {"url": "redis://127.0.0.1:6379/14"}}, environ={})
    assert config.workers == 2


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("listen_port = = 1\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid TOML"):
        load_config(bad, environ={})


def test_config_is_frozen():
    config = config_from_mapping({}, environ={})
    with pytest.raises(AttributeError):
        config.listen_port = 1  # type: ignore[misc]
    assert isinstance(config, Config)
