"""A plain OpenAPI 3 description in, a Tyk OAS API definition out (``fastgate import-oas`` and
``POST /tyk/apis/oas/import``).

The definition is the document itself plus an ``x-tyk-api-gateway`` part, as Tyk's import makes
it: ``info`` (id, the document's title as name, active), ``upstream.url`` (given, else the first
``servers`` URL), ``server.listenPath`` (given, else ``/``; stripped), and with ``authentication``
the schemes of the first root ``security`` requirement enabled under
``server.authentication.securitySchemes`` (apiKey -> auth token in its header/query/cookie, http
basic -> basic, http bearer JWT -> JWT, oauth2 -> OAuth, openIdConnect -> OIDC). Whatever cannot
be mapped is an ``ImportProblem`` naming the RFC 6901 JSON pointer of the part at fault, e.g.
``/swagger`` for a Swagger 2.0 document or ``/security/0/ghost_scheme`` for a requirement naming
no scheme. Pure functions: no files, no sockets.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from fastgate.apidef.oas import EXTENSION

__all__ = ["ImportOptions", "ImportProblem", "import_openapi", "parse_document", "pointer"]

# An OpenAPI document bigger than this is refused before parsing (the Gateway API's body limit
# is larger; a description this size is already far beyond any real one).
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
_DEFAULT_SOURCE = "Authorization"  # Tyk's default credential header on import
_SERVER_VARIABLE = re.compile(r"\{([^{}]+)\}")
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ImportProblem(ValueError):
    """What cannot be imported, at which JSON pointer of the input document."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where or '(document)'}: {what}")
        self.where = where
        self.what = what


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Tyk's import parameters (``upstreamURL``, ``listenPath``, ``customDomain``,
    ``authentication``, ``allowList``, ``validateRequest``) and the id to give the API."""

    upstream_url: str = ""
    listen_path: str = ""
    custom_domain: str = ""
    authentication: bool = False
    allow_list: bool = False
    validate_request: bool = False
    api_id: str = ""


def pointer(*parts: str | int) -> str:
    """The RFC 6901 JSON pointer of ``parts`` (``~`` and ``/`` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def parse_document(data: bytes, *, yaml_hint: bool = False) -> dict[str, Any]:
    """The document in ``data``: JSON, or YAML (tried when JSON fails or ``yaml_hint``). YAML is
    read with the safe loader and anchors/aliases are refused (a few bytes of aliases would
    otherwise expand to gigabytes once written out as JSON)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ImportProblem("", f"the document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are accepted")
    doc: Any
    if not yaml_hint:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            if data.lstrip()[:1] in (b"{", b"["):
                raise ImportProblem("", "not valid JSON") from None
            doc = _load_yaml(data)
    else:
        doc = _load_yaml(data)
    if not isinstance(doc, dict):
        raise ImportProblem("", "an OpenAPI document must be an object (a mapping) at the top level")
    return doc


def import_openapi(doc: dict[str, Any], options: ImportOptions) -> dict[str, Any]:
    """The Tyk OAS definition for the OpenAPI 3.0/3.1 document ``doc`` (not modified), or
    ``ImportProblem``."""
    _check_version(doc)
    if EXTENSION in doc:
        raise ImportProblem(pointer(EXTENSION), "the document already is a Tyk OAS definition; "
                                                "import takes a plain OpenAPI document (use POST /tyk/apis/oas)")
    title = _title(doc)
    paths = doc.get("paths")
    if paths is not None and not isinstance(paths, dict):
        raise ImportProblem(pointer("paths"), "expected an object")
    out = copy.deepcopy(doc)
    server: dict[str, Any] = {"listenPath": {"value": _listen_path(options.listen_path), "strip": True}}
    if options.custom_domain:
        server["customDomain"] = {"enabled": True, "name": options.custom_domain.strip()}
    if options.authentication:
        server["authentication"] = {"enabled": True, "securitySchemes": _security(doc)}
    ext: dict[str, Any] = {
        "info": {"id": options.api_id or uuid.uuid4().hex, "name": title, "state": {"active": True}},
        "upstream": {"url": options.upstream_url.strip() or _server_url(doc)},
        "server": server,
    }
    operations = _operations(out, options) if (options.allow_list or options.validate_request) else {}
    if operations:
        ext["middleware"] = {"operations": operations}
    out[EXTENSION] = ext
    return out


# ---- pieces --------------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ImportProblem("", f"YAML aliases are not accepted (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _load_yaml(data: bytes) -> Any:
    try:
        return yaml.load(data, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ImportProblem("", f"neither JSON nor valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ImportProblem("", "the document nests too deeply") from None


def _check_version(doc: dict[str, Any]) -> None:
    version = doc.get("openapi")
    if version is None:
        if "swagger" in doc:
            raise ImportProblem(pointer("swagger"), f"Swagger {doc['swagger']} is not OpenAPI 3: convert the "
                                                    "document to OpenAPI 3.0 or 3.1 first")
        raise ImportProblem(pointer("openapi"), "missing: not an OpenAPI 3 document")
    if not isinstance(version, str) or not re.fullmatch(r"3\.[01](\.\d+)?(-[\w.]+)?", version):
        raise ImportProblem(pointer("openapi"), f"{version!r}: only OpenAPI 3.0 and 3.1 can be imported")


def _title(doc: dict[str, Any]) -> str:
    info = doc.get("info")
    if not isinstance(info, dict):
        raise ImportProblem(pointer("info"), "missing: an OpenAPI document needs info.title and info.version")
    title = info.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ImportProblem(pointer("info", "title"), "missing or not a string: it names the API")
    if not isinstance(info.get("version"), str):
        raise ImportProblem(pointer("info", "version"), "missing or not a string")
    return title.strip()


def _listen_path(given: str) -> str:
    value = given.strip() or "/"
    if not value.startswith("/"):
        raise ImportProblem("", f"listen path {value!r}: must start with '/'")
    return value


def _server_url(doc: dict[str, Any]) -> str:
    """The first ``servers`` URL with its variables' defaults, when it is absolute."""
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        raise ImportProblem(pointer("servers"), "no upstream: give one (--upstream, ?upstreamURL=) or a servers "
                                                "entry with an absolute URL")
    url = servers[0].get("url")
    variables = servers[0].get("variables") if isinstance(servers[0].get("variables"), dict) else {}
    if not isinstance(url, str):
        raise ImportProblem(pointer("servers", 0, "url"), "missing or not a string")

    def default(match: re.Match[str]) -> str:
        var = variables.get(match.group(1))
        if not isinstance(var, dict) or not isinstance(var.get("default"), str):
            raise ImportProblem(pointer("servers", 0, "variables", match.group(1), "default"),
                                "a server variable needs a default")
        return var["default"]

    url = _SERVER_VARIABLE.sub(default, url)
    if not re.match(r"https?://[^/]", url):
        raise ImportProblem(pointer("servers", 0, "url"), f"{url!r} is not an absolute http(s) URL: give the "
                                                          "upstream (--upstream, ?upstreamURL=)")
    return url


def _security(doc: dict[str, Any]) -> dict[str, Any]:
    """The vendor entries for the schemes of the first root security requirement (Tyk imports
    that one only)."""
    security = doc.get("security")
    if not isinstance(security, list) or not security:
        raise ImportProblem(pointer("security"), "authentication was asked for but the document has no root "
                                                 "security requirement naming a scheme")
    requirement = security[0]
    if not isinstance(requirement, dict) or not requirement:
        raise ImportProblem(pointer("security", 0), "expected an object naming at least one security scheme")
    components = doc.get("components") if isinstance(doc.get("components"), dict) else {}
    schemes = components.get("securitySchemes") if isinstance(components.get("securitySchemes"), dict) else {}
    return {name: _vendor_scheme(name, schemes.get(name)) for name in requirement}


def _vendor_scheme(name: str, scheme: Any) -> dict[str, Any]:
    where = pointer("components", "securitySchemes", name)
    if scheme is None:
        raise ImportProblem(pointer("security", 0, name), f"names no scheme of {pointer('components', 'securitySchemes')}")
    if not isinstance(scheme, dict):
        raise ImportProblem(where, "expected an object")
    if "$ref" in scheme:
        raise ImportProblem(where + "/$ref", "references in security schemes are not followed; inline the scheme")
    kind = scheme.get("type")
    authorization = {"enabled": True, "name": _DEFAULT_SOURCE}
    if kind == "apiKey":
        location = scheme.get("in")
        if location not in ("header", "query", "cookie"):
            raise ImportProblem(where + "/in", f"{location!r}: an apiKey is in a header, query or cookie")
        key_name = scheme.get("name")
        if not isinstance(key_name, str) or not key_name:
            raise ImportProblem(where + "/name", "missing: an apiKey scheme names its header, parameter or cookie")
        return {"enabled": True, location: {"enabled": True, "name": key_name}}
    if kind == "http":
        http_scheme = str(scheme.get("scheme", "")).lower()
        if http_scheme == "basic":
            return {"enabled": True, "header": authorization}
        if http_scheme == "bearer" and scheme.get("bearerFormat") == "JWT":
            return {"enabled": True, "header": authorization}
        if http_scheme == "bearer":
            raise ImportProblem(where + "/bearerFormat", "only JWT bearer tokens can be mapped (bearerFormat: JWT); "
                                                         "for opaque tokens declare an apiKey scheme")
        raise ImportProblem(where + "/scheme", f"{scheme.get('scheme')!r}: only the basic and bearer HTTP "
                                               "schemes can be mapped")
    if kind in ("oauth2", "openIdConnect"):
        return {"enabled": True, "header": authorization}
    raise ImportProblem(where + "/type", f"{kind!r}: cannot be mapped (apiKey, http basic, http bearer JWT, "
                                         "oauth2 and openIdConnect can)")


def _operations(doc: dict[str, Any], options: ImportOptions) -> dict[str, Any]:
    """``middleware.operations`` for ``allowList`` / ``validateRequest``, keyed by operationId
    (one is written into the document where an operation has none, as Tyk does)."""
    found: dict[str, Any] = {}
    paths = doc.get("paths") if isinstance(doc.get("paths"), dict) else {}
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            op_id = operation.get("operationId")
            if not isinstance(op_id, str) or not op_id:
                op_id = operation["operationId"] = str(path).lstrip("/") + method.upper()
            entry: dict[str, Any] = {}
            if options.allow_list:
                entry["allow"] = {"enabled": True}
            if options.validate_request:
                entry["validateRequest"] = {"enabled": True, "errorResponseCode": 422}
            found[op_id] = entry
    return found
