"""Classic ``fastgate_security`` and Tyk OAS compliant mode into ``SecuritySettings``."""

from __future__ import annotations

from typing import Any, Final

from fastgate.apidef.security_settings import METHOD_NAMES, AnonymousSettings, SecuritySettings
from fastgate.apidef.spec import DefinitionError
from fastgate.validation import as_dict

__all__ = ["classic_security", "oas_requirement_names", "oas_security"]

EXTENSION: Final = "x-tyk-api-gateway"
CLASSIC_FIELD: Final = "fastgate_security"
_VENDOR_SCHEMES: Final = {"hmac": "hmac", "custom": "custom", "oidc": "oidc", "anonymous": "anonymous"}


def classic_security(raw: dict[str, Any], use_keyless: bool) -> SecuritySettings | None:
    """fastgate's Classic extension: ``fastgate_security`` {``requirements``: [[method, ...], ...],
    ``anonymous``: {``policy_id``, ``identity``}}; None when absent (every method required)."""
    conf = raw.get(CLASSIC_FIELD)
    if conf is None or use_keyless:
        return None
    if not isinstance(conf, dict):
        raise DefinitionError(CLASSIC_FIELD, "must be an object {requirements, anonymous}")
    requirements = conf.get("requirements")
    if not isinstance(requirements, list) or not requirements:
        raise DefinitionError(f"{CLASSIC_FIELD}.requirements", "must be a non-empty list of lists of method names")
    found: list[tuple[str, ...]] = []
    for i, requirement in enumerate(requirements):
        field = f"{CLASSIC_FIELD}.requirements[{i}]"
        if not isinstance(requirement, list) or not requirement:
            raise DefinitionError(field, "must be a non-empty list of method names")
        for name in requirement:
            if name not in METHOD_NAMES:
                raise DefinitionError(field, f"{name!r} is not an auth method (one of {', '.join(METHOD_NAMES)})")
        if "anonymous" in requirement and len(requirement) > 1:
            raise DefinitionError(field, "anonymous stands alone in its requirement")
        found.append(tuple(sorted(set(requirement), key=METHOD_NAMES.index)))
    anonymous = _anonymous(conf.get("anonymous"), f"{CLASSIC_FIELD}.anonymous", "policy_id", found)
    return SecuritySettings(requirements=tuple(found), field=f"{CLASSIC_FIELD}.requirements", anonymous=anonymous)


def oas_requirement_names(raw: dict[str, Any]) -> list[list[str]]:
    """The scheme names of each requirement Tyk enforces: the document's ``security`` (legacy
    mode: its first requirement only), then in compliant mode the vendor ``security``."""
    auth = as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("server")).get("authentication"))
    compliant = auth.get("securityProcessingMode") == "compliant"
    security = raw.get("security") if isinstance(raw.get("security"), list) else []
    names = [_names(r) for r in security]
    if not compliant:
        return names[:1]
    vendor = auth.get("security") if isinstance(auth.get("security"), list) else []
    return [n for n in names + [_names(r) for r in vendor] if n]


def oas_security(raw: dict[str, Any], use_keyless: bool) -> SecuritySettings | None:
    """Compliant mode's requirements as method names; None in legacy mode (the default)."""
    auth = as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("server")).get("authentication"))
    if use_keyless or auth.get("securityProcessingMode") != "compliant":
        return None
    schemes = as_dict(as_dict(raw.get("components")).get("securitySchemes"))
    vendor = as_dict(auth.get("securitySchemes"))
    found: list[tuple[str, ...]] = []
    unconfigured = ""
    for names in oas_requirement_names(raw):
        methods: list[str] = []
        for name in names:
            method = _method_of(name, as_dict(schemes.get(name)), as_dict(vendor.get(name)), name in schemes)
            if method is None:
                unconfigured = unconfigured or name
            elif method not in methods:
                methods.append(method)
        if methods:
            found.append(tuple(sorted(methods, key=METHOD_NAMES.index)))
    if not found and not unconfigured:
        return None
    where = f"{EXTENSION}.server.authentication"
    anonymous = _anonymous(auth.get("fastgateAnonymous"), f"{where}.fastgateAnonymous", "policyId", found)
    return SecuritySettings(requirements=tuple(found), field=f"{where}.securityProcessingMode",
                            unconfigured=unconfigured, anonymous=anonymous)


def _method_of(name: str, scheme: dict[str, Any], vendor: dict[str, Any], declared: bool) -> str | None:
    if not declared:
        return _VENDOR_SCHEMES.get(name)
    kind = scheme.get("type")
    if kind == "apiKey":
        return "auth_token"
    if kind == "http":
        http = str(scheme.get("scheme", "")).lower()
        if http == "basic":
            return "basic"
        if http == "bearer" and scheme.get("bearerFormat") == "JWT":
            return "jwt"
        return None
    if kind == "oauth2":
        return "external_oauth" if vendor.get("providers") else "oauth"
    return None


def _anonymous(conf: Any, field: str, policy_key: str, requirements: list[tuple[str, ...]]) -> AnonymousSettings | None:
    used = any("anonymous" in r for r in requirements)
    if conf is None:
        if used:
            raise DefinitionError(field, f"missing: the anonymous requirement needs {{{policy_key}}}")
        return None
    if not isinstance(conf, dict) or not isinstance(conf.get(policy_key), str) or not conf.get(policy_key):
        raise DefinitionError(f"{field}.{policy_key}", "missing: the policy anonymous requests get")
    identity = conf.get("identity", "anonymous")
    if not isinstance(identity, str) or not identity.replace("-", "").replace("_", "").isalnum():
        raise DefinitionError(f"{field}.identity", "letters, digits, '-' and '_' only")
    return AnonymousSettings(policy_id=conf[policy_key], identity=identity)


def _names(requirement: Any) -> list[str]:
    if isinstance(requirement, dict):
        return [str(k) for k in requirement]
    if isinstance(requirement, list):
        return [str(k) for k in requirement]
    return []

