"""``POST /tyk/apis/oas/import``: store a Tyk OAS API made from a plain OpenAPI 3.0/3.1 document.

The body is the document, JSON or YAML (``Content-Type: application/yaml``, ``application/x-yaml``
or ``text/yaml``; a body that is not JSON is also tried as YAML). Tyk's query parameters:
``upstreamURL``, ``listenPath``, ``customDomain``, ``authentication=true``, ``allowList=true``,
``validateRequest=true``. The definition is made by ``fastgate.apidef.import_oas`` and stored as
``POST /tyk/apis/oas`` stores one (the same checks, the same file, served after
``/tyk/reload``). What cannot be imported is a 400 whose message names the JSON pointer of the
part at fault (``/swagger``, ``/security/0/<name>``, ...); nothing is stored then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastgate.admin.apis import ApiEndpoints
from fastgate.admin.common import ApiError, query_params
from fastgate.apidef.import_oas import ImportOptions, ImportProblem, import_openapi, parse_document

if TYPE_CHECKING:
    from fastgate.admin.common import Registrar
    from fastgate.http.request import Request

__all__ = ["register"]

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_TRUE = ("true", "1", "yes")


def register(admin: "Registrar") -> None:
    """Add ``POST /tyk/apis/oas/import`` to ``admin``."""
    endpoints = ApiEndpoints(admin.gateway)

    async def import_oas(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        query = query_params(req)
        content_type = (req.header(b"content-type") or b"").split(b";", 1)[0].strip().lower().decode("latin-1")
        options = ImportOptions(
            upstream_url=query.get("upstreamURL", ""),
            listen_path=query.get("listenPath", ""),
            custom_domain=query.get("customDomain", ""),
            authentication=query.get("authentication", "").lower() in _TRUE,
            allow_list=query.get("allowList", "").lower() in _TRUE,
            validate_request=query.get("validateRequest", "").lower() in _TRUE,
        )
        if not body.strip():
            raise ApiError(400, "Request malformed: the body must be an OpenAPI 3 document (JSON or YAML)")
        try:
            doc = parse_document(body, yaml_hint=content_type in _YAML_TYPES)
            definition = import_openapi(doc, options)
        except ImportProblem as exc:
            raise ApiError(400, f"Import failed: {exc}") from None
        return endpoints.add_new(definition, "oas")

    admin.add("POST", "/tyk/apis/oas/import", import_oas)
