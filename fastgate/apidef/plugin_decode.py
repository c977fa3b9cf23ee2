"""Classic and OAS plugin sections into ``fastgate.apidef.plugin_settings`` (see its doc)."""

from __future__ import annotations

import re
from typing import Any, Final

from fastgate.apidef.plugin_settings import EXTRACT_FROM, EXTRACT_WITH, HookRef, IdExtractor, PluginSettings
from fastgate.apidef.spec import DefinitionError
from fastgate.validation import as_dict

__all__ = ["classic_plugins", "oas_plugins"]

EXTENSION: Final = "x-tyk-api-gateway"


def classic_plugins(raw: dict[str, Any], use_keyless: bool) -> PluginSettings | None:
    """The plugin settings of a Classic definition, or None when it uses no plugin."""
    custom = raw.get("custom_middleware")
    custom = custom if isinstance(custom, dict) else {}
    auth_enabled = not use_keyless and any(
        raw.get(flag) is True for flag in ("custom_plugin_auth_enabled", "enable_coprocess_auth", "use_go_plugin_auth"))
    auth_check = None
    if auth_enabled:
        entry = custom.get("auth_check")
        entry = entry if isinstance(entry, dict) else {}
        if entry.get("disabled") is not True:
            auth_check = _ref(entry, "custom_middleware.auth_check", required=True)
    hooks = {kind: _refs(custom.get(kind), f"custom_middleware.{kind}") for kind in ("pre", "post_key_auth", "post", "response")}
    if use_keyless:
        hooks["post_key_auth"] = ()  # never runs without a session, as in Tyk
    extractor = None
    if auth_check is not None:
        extractor = _classic_extractor(custom.get("id_extractor"))
    settings = PluginSettings(driver=str(custom.get("driver") or ""), auth_check=auth_check, id_extractor=extractor,
                              config_data=raw.get("config_data") if isinstance(raw.get("config_data"), dict) else None,
                              **hooks)
    return _checked(settings, "custom_middleware.driver")


def oas_plugins(raw: dict[str, Any], use_keyless: bool) -> PluginSettings | None:
    """The plugin settings of a Tyk OAS document, or None when it uses no plugin."""
    ext = as_dict(raw.get(EXTENSION))
    glob = as_dict(as_dict(ext.get("middleware")).get("global"))
    where = f"{EXTENSION}.middleware.global"
    auth = as_dict(as_dict(ext.get("server")).get("authentication"))
    custom = as_dict(auth.get("custom"))
    auth_check = None
    extractor = None
    if not use_keyless and custom.get("enabled") is True:
        config = as_dict(custom.get("config"))
        field = f"{EXTENSION}.server.authentication.custom.config"
        if config.get("enabled") is not False:
            auth_check = _ref({"name": config.get("functionName"), "path": config.get("path")}, field, required=True)
            extractor = _oas_extractor(as_dict(config.get("idExtractor")), f"{field}.idExtractor")
    hooks: dict[str, tuple[HookRef, ...]] = {}
    for kind, names in (("pre", ("prePlugins", "prePlugin")), ("post_key_auth", ("postAuthenticationPlugins", "postAuthenticationPlugin")),
                        ("post", ("postPlugins", "postPlugin")), ("response", ("responsePlugins", "responsePlugin"))):
        found: list[HookRef] = []
        for name in names:
            value = glob.get(name)
            entries = value.get("plugins") if isinstance(value, dict) else value
            for i, entry in enumerate(entries if isinstance(entries, list) else ()):
                if isinstance(entry, dict) and entry.get("enabled") is not False:
                    ref = _ref({"name": entry.get("functionName"), "path": entry.get("path")}, f"{where}.{name}[{i}]", required=True)
                    if ref is not None:
                        found.append(ref)
        hooks[kind] = tuple(found)
    if use_keyless:
        hooks["post_key_auth"] = ()
    driver = str(as_dict(glob.get("pluginConfig")).get("driver") or "")
    data = as_dict(as_dict(glob.get("pluginConfig")).get("data"))
    settings = PluginSettings(driver=driver, auth_check=auth_check, id_extractor=extractor,
                              config_data=as_dict(data.get("value")) if data.get("enabled") else None, **hooks)
    return _checked(settings, f"{where}.pluginConfig.driver")


def _checked(settings: PluginSettings, driver_field: str) -> PluginSettings | None:
    if not settings.hooks:
        return None
    if settings.driver != "python":
        raise DefinitionError(driver_field, f"{settings.driver or 'empty'}: only the \"python\" plugin driver is "
                              "implemented (the API's plugins may restrict access, so it is refused rather than served without them)")
    return settings


def _ref(entry: dict[str, Any], field: str, *, required: bool = False) -> HookRef | None:
    name, path = entry.get("name"), entry.get("path")
    if not name or not isinstance(name, str):
        if required:
            raise DefinitionError(f"{field}.name", "missing: the hook's function name is required")
        return None
    if not path or not isinstance(path, str):
        raise DefinitionError(f"{field}.path", f"missing: the Python file that defines {name!r} is required")
    if not name.isidentifier():
        raise DefinitionError(f"{field}.name", f"{name!r} is not a Python function name")
    return HookRef(name=name, path=path, field=field)


def _refs(value: Any, field: str) -> tuple[HookRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DefinitionError(field, "must be a list of {name, path} hooks")
    found = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise DefinitionError(f"{field}[{i}]", "must be an object {name, path}")
        if entry.get("disabled") is True:
            continue
        ref = _ref(entry, f"{field}[{i}]", required=True)
        if ref is not None:
            found.append(ref)
    return tuple(found)


def _classic_extractor(value: Any) -> IdExtractor | None:
    field = "custom_middleware.id_extractor"
    conf = as_dict(value)
    if not conf or conf.get("disabled") is True or not conf.get("extract_from"):
        return None
    cfg = as_dict(conf.get("extractor_config"))
    source, kind = str(conf.get("extract_from")), str(conf.get("extract_with") or "value")
    name = str(cfg.get("header_name") or cfg.get("param_name") or "")
    return _extractor(source, kind, name, str(cfg.get("regex_expression") or ""), cfg.get("regex_match_index") or 0, field)


def _oas_extractor(conf: dict[str, Any], field: str) -> IdExtractor | None:
    if conf.get("enabled") is not True:
        return None
    cfg = as_dict(conf.get("config"))
    source = str(conf.get("source") or "")
    name = str(cfg.get("headerName") or cfg.get("formParamName") or cfg.get("paramName") or "")
    return _extractor(source, str(conf.get("with") or "value"), name, str(cfg.get("regexp") or ""),
                      cfg.get("regexpMatchIndex") or 0, field)


def _extractor(source: str, kind: str, name: str, regexp: str, index: Any, field: str) -> IdExtractor:
    if source not in EXTRACT_FROM:
        raise DefinitionError(f"{field}.extract_from", f"{source!r}: one of {', '.join(EXTRACT_FROM)}")
    if kind not in EXTRACT_WITH:
        raise DefinitionError(f"{field}.extract_with", f"{kind!r}: one of {', '.join(EXTRACT_WITH)} (xpath is not implemented)")
    if source in ("header", "form", "querystring") and not name:
        raise DefinitionError(f"{field}.extractor_config", "names no header or parameter to read the id from")
    if kind == "regex" and not regexp:
        raise DefinitionError(f"{field}.extractor_config.regex_expression", "missing: required with extract_with regex")
    try:
        re.compile(regexp)
    except re.error as exc:
        raise DefinitionError(f"{field}.extractor_config.regex_expression", f"not a valid regular expression: {exc}") from None
    if not isinstance(index, int) or index < 0:
        raise DefinitionError(f"{field}.extractor_config.regex_match_index", "must be a number, 0 or more")
    return IdExtractor(source=source, kind=kind, name=name, regexp=regexp, match_index=index, field=field)

