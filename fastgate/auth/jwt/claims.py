"""What a verified token's claims say, by Tyk's rules: time validity, OAS claim checks, identity,
policies and scopes. Pure functions over the decoded claims; no I/O.

Time claims follow golang-jwt v4 as Tyk calls it (``exp``/``iat``/``nbf`` optional, numbers
truncated to whole seconds, ``0`` meaning absent, anything but a number failing): ``exp`` fails
when ``exp <= now - exp_skew``, ``iat`` when ``iat > now + iat_skew``, ``nbf`` when
``nbf > now + nbf_skew``; when several fail, the message of the last one checked (nbf, then iat,
then exp) is the one given, as in Tyk. Claim paths with dots are looked up literally first, then
as nested objects ("user.id").
"""

from __future__ import annotations

from typing import Any, Final, Sequence

from fastgate.auth.jwt.config import ClaimRule, JwtConfig

__all__ = [
    "NO_SUITABLE_ID", "TIME_OUT_OF_RANGE", "check_extra_claims", "check_times", "claim_string", "identity_of",
    "nested", "scope_claim_name", "scopes_in", "subject_of", "user_id",
]

TOKEN_EXPIRED: Final = "token has expired"
USED_BEFORE_ISSUED: Final = "token used before issued"
NOT_VALID_YET: Final = "token is not valid yet"
NO_SUITABLE_ID: Final = "no suitable claims for user ID were found"
EMPTY_SUB: Final = "found an empty user ID in sub claim"
TIME_OUT_OF_RANGE: Final = "a time claim (exp, iat or nbf) is out of range"
# Past 2**53 seconds (285 million years) a time claim is nonsense, and beyond 64 bits it would
# break whatever stores it (a session's ``expires``): refused (401) rather than a 500.
MAX_TIME_CLAIM: Final = 2**53


def check_times(claims: dict[str, Any], now: int, cfg: JwtConfig) -> str | None:
    """The reason the token's time claims refuse it at ``now`` (Unix seconds), or None."""
    if not times_in_range(claims):
        return TIME_OUT_OF_RANGE
    reason = None
    if "exp" in claims and not _before(now - cfg.exp_skew, claims["exp"]):
        reason = TOKEN_EXPIRED
    if "iat" in claims and not _not_before(claims["iat"], now + cfg.iat_skew):
        reason = USED_BEFORE_ISSUED
    if "nbf" in claims and not _not_before(claims["nbf"], now + cfg.nbf_skew):
        reason = NOT_VALID_YET
    return reason


def times_in_range(claims: dict[str, Any]) -> bool:
    """False when a numeric ``exp``/``iat``/``nbf`` is beyond ``MAX_TIME_CLAIM`` either way."""
    for name in ("exp", "iat", "nbf"):
        value: Any = claims.get(name)
        if type(value) in (int, float) and not -MAX_TIME_CLAIM <= value <= MAX_TIME_CLAIM:
            return False
    return True


def _seconds(value: Any) -> int | None:
    return int(value) if type(value) in (int, float) else None


def _before(cmp: int, value: Any) -> bool:
    seconds = _seconds(value)
    if seconds is None:
        return False  # present but not a number: refused, as golang-jwt does
    return seconds == 0 or cmp < seconds


def _not_before(value: Any, cmp: int) -> bool:
    seconds = _seconds(value)
    if seconds is None:
        return False
    return seconds == 0 or seconds <= cmp


def check_extra_claims(claims: dict[str, Any], header: dict[str, Any], cfg: JwtConfig) -> str | None:
    """OAS-only checks (issuer, audience, jti, subject, custom claims): a reason, or None."""
    if cfg.allowed_issuers:
        if "iss" not in claims:
            return "issuer claim is required but not present in token"
        iss = claims["iss"]
        if not isinstance(iss, str):
            return "issuer claim must be a string"
        if iss not in cfg.allowed_issuers:
            return f"invalid issuer claim: {iss}"
    if cfg.allowed_audiences:
        if "aud" not in claims:
            return "audience claim is required but not present in token"
        aud = claims["aud"]
        if isinstance(aud, str):
            audiences = [aud]
        elif isinstance(aud, list):
            audiences = [a for a in aud if isinstance(a, str)]
        else:
            return "invalid audience claim format"
        if not any(a in cfg.allowed_audiences for a in audiences):
            return f"no matching audience found in token: [{' '.join(audiences)}]"
    if cfg.jti_required and "jti" not in claims:
        return "JWT ID (jti) claim is required but not present in token"
    if cfg.allowed_subjects:
        subject, error = subject_of(header, claims, cfg)
        if error:
            return error
        if subject not in cfg.allowed_subjects:
            return f"invalid subject value: {subject}"
    for rule in cfg.custom_claims:
        reason = _check_rule(claims, rule)
        if reason is not None:
            return reason
    return None


def _check_rule(claims: dict[str, Any], rule: ClaimRule) -> str | None:
    exists, value = _json_path(claims, rule.path)
    if not exists and not rule.non_blocking:
        return f"custom claim {rule.path} is required but not present in token"
    if rule.type == "required":
        if value is None and not rule.non_blocking:
            return f"custom claim {rule.path} expects a non nil value"
    elif rule.type == "contains":
        if not _contains(rule.allowed, value) and not rule.non_blocking:
            return f"claim {rule.path} value does not contain any expected values"
    elif rule.type == "exact_match":
        if not any(_same(value, allowed) for allowed in rule.allowed) and not rule.non_blocking:
            return f"claim {rule.path} value does not match any expected values"
    return None


def _contains(allowed: Sequence[Any], value: Any) -> bool:
    for expected in allowed:
        if isinstance(value, str):
            if isinstance(expected, str) and expected in value:
                return True
        elif isinstance(value, list):
            if any(_same(expected, item) for item in value):
                return True
        elif _same(expected, value):
            return True
    return False


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but never a boolean equal to a number (Python's 1 == True)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _json_path(claims: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(exists, value) at a dotted path; list items by index ("roles.0")."""
    current: Any = claims
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


# ---- identity, policies, scopes -----------------------------------------------------------------


def nested(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted path through nested objects, or None."""
    current: Any = claims
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def claim_string(claims: dict[str, Any], name: str) -> str:
    """A non-empty string claim: the literal key first, then the dotted path; "" when none."""
    value = claims.get(name)
    if isinstance(value, str) and value:
        return value
    if "." in name:
        value = nested(claims, name)
        if isinstance(value, str) and value:
            return value
    return ""


def user_id(claims: dict[str, Any], field: str, fallback_to_sub: bool) -> tuple[str, str]:
    """(identity, "") or ("", Tyk's error text) from ``field`` (and ``sub`` when asked)."""
    if field:
        found = claim_string(claims, field)
        if found:
            return found, ""
        if claims.get(field) == "" or ("." in field and nested(claims, field) == ""):
            return "", f"found an empty user ID in predefined base claim, claim: {field}"
    if fallback_to_sub:
        sub = claims.get("sub")
        if isinstance(sub, str):
            return (sub, "") if sub else ("", EMPTY_SUB)
    return "", NO_SUITABLE_ID


def identity_of(claims: dict[str, Any], cfg: JwtConfig) -> tuple[str, str]:
    """The user identity claim (Classic: base field then ``sub``; OAS: subjectClaims in order)."""
    if not cfg.is_oas:
        return user_id(claims, cfg.identity_fields[0] if cfg.identity_fields else "", True)
    checked_sub = False
    for field in cfg.identity_fields:
        checked_sub = checked_sub or field == "sub"
        found, error = user_id(claims, field, False)
        if error != NO_SUITABLE_ID:
            return found, error
    if not checked_sub:
        return user_id(claims, "sub", False)
    return "", NO_SUITABLE_ID


def subject_of(header: dict[str, Any], claims: dict[str, Any], cfg: JwtConfig) -> tuple[str, str]:
    """Tyk's identity-from-token: the ``kid`` header unless ``skip_kid``, else ``identity_of``."""
    kid = header.get("kid")
    if not cfg.skip_kid and isinstance(kid, str):
        return kid, ""
    return identity_of(claims, cfg)


def scope_claim_name(claims: dict[str, Any], cfg: JwtConfig) -> str:
    """Which claim holds the scopes: Classic the configured one; OAS the first present; else ``scope``."""
    if not cfg.is_oas:
        return cfg.scope_claims[0] if cfg.scope_claims else "scope"
    for name in cfg.scope_claims:
        if name in claims:
            return name
    return "scope"


def scopes_in(claims: dict[str, Any], name: str) -> list[str]:
    """Scopes at claim ``name``: a space-separated string or (nested) arrays of strings."""
    found: list[str] = []
    _flatten(nested(claims, name), found, False)
    return found


def _flatten(value: Any, into: list[str], inside_list: bool) -> None:
    if isinstance(value, str):
        into.extend([value] if inside_list else value.split(" "))
    elif isinstance(value, list):
        for item in value:
            _flatten(item, into, True)
