"""The JSON types of a definition's containers, checked before any decoder walks them.

The decoders read optional parts of a definition with ``.get`` chains (``components`` →
``securitySchemes`` → each scheme); a definition whose ``components`` is a number would make them
raise AttributeError, a 500 on the Gateway API and a crash at load. This check runs first and
refuses such a definition with ``DefinitionError`` naming the field and the type it must have.
Containers are checked here (objects and arrays), and the few strings that are read before the
decoders' own typed checks (an OAS security scheme's ``type``, ``name``, ``in``).
"""

from __future__ import annotations

from typing import Any, Final

from fastgate.apidef.spec import DefinitionError

__all__ = ["check_shape"]

OBJECT: Final = dict
ARRAY: Final = list
STRING: Final = str
_NAMES: Final = {dict: "an object", list: "an array", str: "a string"}

# field -> the type it must have when present, and (for containers) the shape of what it holds;
# "*" is every member of an object or every item of an array.
_Shape = dict[str, Any]
_X = "x-tyk-api-gateway"
_AUTH_METHOD: Final[_Shape] = {"": OBJECT}
_OAS: Final[_Shape] = {
    "info": {"": OBJECT},
    "paths": {"": OBJECT, "*": {"": OBJECT}},
    "security": {"": ARRAY, "*": {"": OBJECT, "*": {"": ARRAY}}},
    "components": {"": OBJECT, "securitySchemes": {"": OBJECT, "*": {
        "": OBJECT, "type": {"": STRING}, "name": {"": STRING}, "in": {"": STRING}, "scheme": {"": STRING},
        "bearerFormat": {"": STRING}}}},
    _X: {"": OBJECT,
         "info": {"": OBJECT}, "upstream": {"": OBJECT},
         "server": {"": OBJECT, "listenPath": {"": OBJECT},
                    "authentication": {"": OBJECT, "securitySchemes": {"": OBJECT, "*": {"": OBJECT}},
                                       "hmac": _AUTH_METHOD, "oidc": _AUTH_METHOD, "custom": _AUTH_METHOD,
                                       "baseIdentityProvider": {}}},
         "middleware": {"": OBJECT, "global": {"": OBJECT, "contextVariables": {"": OBJECT}},
                        "operations": {"": OBJECT, "*": {"": OBJECT}}}},
}
_CLASSIC: Final[_Shape] = {
    "auth": {"": OBJECT},
    "auth_configs": {"": OBJECT, "*": {"": OBJECT}},
    "basic_auth": {"": OBJECT},
    "external_oauth": {"": OBJECT},
    "version_data": {"": OBJECT, "versions": {"": OBJECT, "*": {"": OBJECT}}},
    "custom_middleware": {"": OBJECT},
    "graphql": {"": OBJECT},
    "global_rate_limit": {"": OBJECT},
    "openid_options": {"": OBJECT},
    "jwt_default_policies": {"": ARRAY},
    "client_certificates": {"": ARRAY},
    "hmac_allowed_algorithms": {"": ARRAY},
    "hmac_required_headers": {"": ARRAY},
    "tags": {"": ARRAY},
}


def check_shape(raw: dict[str, Any], oas: bool) -> None:
    """Raise ``DefinitionError`` when a container field of ``raw`` has the wrong JSON type."""
    _check(raw, _OAS if oas else _CLASSIC, "")


def _check(value: Any, shape: _Shape, where: str) -> None:
    for name, inner in shape.items():
        if name == "":
            continue
        if name == "*":
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                _at(item, inner, f"{where}.{key}" if where else str(key))
        elif isinstance(value, dict) and name in value:
            _at(value[name], inner, f"{where}.{name}" if where else name)


def _at(value: Any, shape: _Shape, where: str) -> None:
    wanted = shape.get("")
    if value is None or wanted is None:
        return
    if not isinstance(value, wanted):
        raise DefinitionError(where, f"must be {_NAMES[wanted]}, not {_json_type(value)}")
    _check(value, shape, where)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"
