"""Tyk's API definition endpoints: ``/tyk/apis[/{apiID}]`` (Classic) and ``/tyk/apis/oas[/{id}]``.

The definition files in ``app_path`` are the source of truth for every endpoint here: reads
list and return the stored definitions, writes validate the body with the same decoder the
loader uses (``decode_definition``) and then replace ``<app_path>/<api_id>.json`` (or the file
that already holds the API) through a temporary file and a rename. As in Tyk, **a change is not
served until ``GET /tyk/reload``** (or ``/tyk/reload/group``, or SIGHUP); nothing here reloads.

Where fastgate differs from Tyk, on purpose:

- reads come from the files, so a written API shows up in ``GET`` before the reload makes it
  live (Tyk reads its loaded set); ``GET /tyk/apis`` and ``GET /tyk/apis/{id}`` return each
  definition as stored, an OAS document for an OAS API (Tyk converts it to Classic);
- ``POST`` refuses an ``api_id`` that already exists (Tyk overwrites the file) and, for active
  APIs, a domain + listen path another stored active API already uses (the loader would refuse
  one of them at the next reload); both are 400;
- a body without an id takes the one in the URL on ``PUT``; a different one is Tyk's 400;
- ``DELETE`` of an unknown id is 404 "API not found" (Tyk: the same when it is not loaded);
- error messages start with Tyk's text and say what is wrong after it, e.g.
  ``"Validation of API Definition failed. Reason: proxy.target_url: missing: every API needs an
  upstream URL."``;
- ``PATCH /tyk/apis/oas/{id}`` is kept simple: a body with ``x-tyk-api-gateway`` replaces the
  whole document (as PUT); a body without it replaces the OpenAPI part and keeps the stored
  ``x-tyk-api-gateway`` (and the stored ``servers`` when the body has none); the query
  parameters ``upstreamURL``, ``listenPath`` and ``customDomain`` then override those fields.
  Tyk's other PATCH parameters (``authentication``, ``validateRequest``, ...) are not supported.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import orjson

from fastgate.admin.common import ApiError, json_object, query_params
from fastgate.admin.policies import write_atomically
from fastgate.apidef.common import MAX_ID_LENGTH, check_upstream_host
from fastgate.apidef.loader import decode_definition, route_of
from fastgate.apidef.oas import EXTENSION
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth import check_auth_settings

if TYPE_CHECKING:
    from fastgate.admin.common import GatewayControl, Registrar
    from fastgate.http.request import Request

__all__ = ["register"]

log = logging.getLogger("fastgate.admin")

# Tyk's messages (apidef/api_definitions.go, gateway/api.go).
NOT_FOUND = "API not found"
INVALID_ID = "Invalid API ID"
ID_MISMATCH = "Request APIID does not match that in Definition! For Update operations these must match."
CLASSIC_EXPECTED = ("this API endpoint only supports Tyk Classic APIs; please use the appropriate "
                    "Tyk OAS API endpoint")
NOT_MIGRATED = "the supplied API definition is in OAS format, please use the Tyk classic format for this API"
OAS_GET_FOR_CLASSIC = "the requested API definition is in Tyk classic format, please use old api endpoint"
NO_EXTENSION = "the payload should contain x-tyk-api-gateway"
INVALID = "Validation of API Definition failed. Reason: {}."

Format = Literal["classic", "oas"]


def register(admin: "Registrar") -> None:
    """Add the API definition endpoints to ``admin``."""
    ep = ApiEndpoints(admin.gateway)
    admin.add("GET", "/tyk/apis", ep.list_apis)
    admin.add("POST", "/tyk/apis", ep.create)
    admin.add("GET", "/tyk/apis/{api_id}", ep.get)
    admin.add("POST", "/tyk/apis/{api_id}", ep.create)
    admin.add("PUT", "/tyk/apis/{api_id}", ep.update)
    admin.add("DELETE", "/tyk/apis/{api_id}", ep.delete)
    admin.add("GET", "/tyk/apis/oas", ep.list_oas)
    admin.add("POST", "/tyk/apis/oas", ep.create_oas)
    admin.add("GET", "/tyk/apis/oas/{api_id}", ep.get_oas)
    admin.add("PUT", "/tyk/apis/oas/{api_id}", ep.update_oas)
    admin.add("PATCH", "/tyk/apis/oas/{api_id}", ep.patch_oas)
    admin.add("DELETE", "/tyk/apis/oas/{api_id}", ep.delete)


@dataclass(frozen=True, slots=True)
class _Stored:
    """One valid definition file in ``app_path``."""

    file: Path
    spec: ApiSpec


class ApiEndpoints:
    """Handlers bound to one gateway's ``app_path``."""

    def __init__(self, gateway: "GatewayControl") -> None:
        self.gateway = gateway
        self.config = gateway.services.config

    # ---- Classic -----------------------------------------------------------------------------

    async def list_apis(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/apis``: every stored definition (Classic and OAS) as stored."""
        return 200, [s.spec.raw for s in self._stored().values()]

    async def get(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/apis/{id}``: the stored definition, or 404 "API not found"."""
        return 200, self._find(params["api_id"]).spec.raw

    async def create(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/apis[/{id}]``: store a new Classic API; served after ``/tyk/reload``."""
        raw = _parse(body)
        if EXTENSION in raw or "openapi" in raw:
            raise ApiError(400, CLASSIC_EXPECTED)
        url_id = _url_id(params["api_id"]) if "api_id" in params else None
        _fill_id(raw, "classic", url_id or uuid.uuid4().hex, url_id)
        return self._add(raw, "classic")

    async def update(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``PUT /tyk/apis/{id}``: replace a stored Classic API; served after ``/tyk/reload``."""
        api_id = _url_id(params["api_id"])
        stored = self._find(api_id)
        if stored.spec.format != "classic":
            raise ApiError(400, CLASSIC_EXPECTED)
        raw = _parse(body)
        if EXTENSION in raw or "openapi" in raw:
            raise ApiError(400, CLASSIC_EXPECTED)
        _fill_id(raw, "classic", api_id, api_id)
        return self._replace(raw, stored)

    async def delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``DELETE /tyk/apis/{id}`` (and ``/tyk/apis/oas/{id}``): remove every file defining the
        API; it keeps being served until ``/tyk/reload``."""
        api_id = _url_id(params["api_id"])
        self._find(api_id)
        try:
            for file in self._files_defining(api_id):
                file.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot delete API %r: %s", api_id, exc)
            raise ApiError(500, "Delete failed") from None
        return 200, {"key": api_id, "status": "ok", "action": "deleted"}

    # ---- OAS ---------------------------------------------------------------------------------

    async def list_oas(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/apis/oas``: every stored OAS document (``?mode=public``: without the
        ``x-tyk-api-gateway`` part)."""
        public = query_params(req).get("mode") == "public"
        return 200, [_public(s.spec.raw, public) for s in self._stored().values() if s.spec.format == "oas"]

    async def get_oas(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/apis/oas/{id}``: the stored OAS document; a Classic API is a 400, as in Tyk."""
        stored = self._find(params["api_id"])
        if stored.spec.format != "oas":
            raise ApiError(400, OAS_GET_FOR_CLASSIC)
        return 200, _public(stored.spec.raw, query_params(req).get("mode") == "public")

    async def create_oas(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/apis/oas``: store a new Tyk OAS API; served after ``/tyk/reload``."""
        raw = _parse(body)
        if EXTENSION not in raw:
            raise ApiError(400, NO_EXTENSION)
        _check_openapi(raw)
        _fill_id(raw, "oas", uuid.uuid4().hex, None)
        return self._add(raw, "oas")

    async def update_oas(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``PUT /tyk/apis/oas/{id}``: replace a stored OAS API; served after ``/tyk/reload``."""
        api_id = _url_id(params["api_id"])
        raw = _parse(body)
        if EXTENSION not in raw:
            raise ApiError(400, NO_EXTENSION)
        stored = self._find(api_id)
        if stored.spec.format != "oas":
            raise ApiError(400, NOT_MIGRATED)
        _check_openapi(raw)
        _fill_id(raw, "oas", api_id, api_id)
        return self._replace(raw, stored)

    async def patch_oas(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``PATCH /tyk/apis/oas/{id}``: a body with ``x-tyk-api-gateway`` replaces the document;
        one without keeps the stored ``x-tyk-api-gateway`` (and ``servers`` when it has none);
        ``?upstreamURL=``, ``?listenPath=``, ``?customDomain=`` override those fields. Served
        after ``/tyk/reload``."""
        api_id = _url_id(params["api_id"])
        raw = _parse(body)
        stored = self._find(api_id)
        if stored.spec.format != "oas":
            raise ApiError(400, NOT_MIGRATED)
        if EXTENSION not in raw:
            raw[EXTENSION] = copy.deepcopy(stored.spec.raw.get(EXTENSION, {}))
            if not raw.get("servers") and stored.spec.raw.get("servers"):
                raw["servers"] = copy.deepcopy(stored.spec.raw["servers"])
        _override(raw, query_params(req))
        _check_openapi(raw)
        _fill_id(raw, "oas", api_id, api_id)
        return self._replace(raw, stored)

    # ---- shared ------------------------------------------------------------------------------

    def add_new(self, raw: dict[str, Any], fmt: Format) -> tuple[int, Any]:
        """Store a new definition with the checks of ``POST`` (``admin/oas_import.py`` uses it)."""
        return self._add(raw, fmt)

    def _add(self, raw: dict[str, Any], fmt: Format) -> tuple[int, Any]:
        directory = self._directory()
        api_id = _id_of(raw, fmt)
        _check_id(api_id)
        stored = self._stored()
        target = directory / f"{api_id}.json"
        data, spec = _validate(raw, target, self.config.security.allow_link_local_upstreams)
        if api_id in stored:
            where = "/tyk/apis/oas/" if stored[api_id].spec.format == "oas" else "/tyk/apis/"
            raise ApiError(400, f"API with api_id {api_id!r} already exists ({stored[api_id].file.name}); "
                                f"update it with PUT {where}{api_id}")
        self._refuse_foreign_file(target, stored)
        _check_clash(spec, stored)
        self._write(target, data)
        return 200, {"key": api_id, "status": "ok", "action": "added"}

    def _replace(self, raw: dict[str, Any], current: _Stored) -> tuple[int, Any]:
        data, spec = _validate(raw, current.file, self.config.security.allow_link_local_upstreams)
        _check_clash(spec, self._stored())
        self._write(current.file, data)
        return 200, {"key": spec.api_id, "status": "ok", "action": "modified"}

    def _directory(self) -> Path:
        directory = self.config.resolve(self.config.app_path)
        if not directory.is_dir():
            raise ApiError(500, f"Unable to access app_path: {directory} is not a directory")
        return directory

    def _stored(self) -> dict[str, _Stored]:
        """Every valid definition in ``app_path`` by api_id, the first file winning as in the loader."""
        found: dict[str, _Stored] = {}
        for file, spec in self._scan():
            found.setdefault(spec.api_id, _Stored(file, spec))
        return found

    def _scan(self) -> list[tuple[Path, ApiSpec]]:
        directory = self.config.resolve(self.config.app_path)
        if not directory.is_dir():
            return []
        out: list[tuple[Path, ApiSpec]] = []
        for file in sorted(directory.glob("*.json")):
            try:
                out.append((file, decode_definition(file.read_bytes(), str(file))))
            except (DefinitionError, OSError):
                continue
        return out

    def _files_defining(self, api_id: str) -> list[Path]:
        return [file for file, spec in self._scan() if spec.api_id == api_id]

    def _find(self, url_id: str) -> _Stored:
        stored = self._stored().get(unquote(url_id))
        if stored is None:
            raise ApiError(404, NOT_FOUND)
        return stored

    def _refuse_foreign_file(self, target: Path, stored: dict[str, _Stored]) -> None:
        """``<api_id>.json`` exists and validly defines another API: refuse rather than destroy
        it. A file that is not a valid definition is taken to be a broken copy of this one."""
        if not target.exists():
            return
        for other in stored.values():
            if other.file == target:
                raise ApiError(400, f"app_path already has {target.name} defining API "
                                    f"{other.spec.api_id!r}; give this API another api_id")
        log.warning("replacing %s, which is not a valid API definition", target)

    def _write(self, target: Path, data: bytes) -> None:
        try:
            write_atomically(target, data)
        except OSError as exc:
            log.error("cannot write %s: %s", target, exc)
            raise ApiError(500, "file object creation failed, write error") from None


# ---- body checks -----------------------------------------------------------------------------


def _parse(body: bytes) -> dict[str, Any]:
    return json_object(body, "API definition")


def _url_id(value: str) -> str:
    api_id = unquote(value)
    _check_id(api_id)
    return api_id


def _check_id(api_id: str) -> None:
    """Tyk's path-component rule (no separators, not ``.``/``..``), plus no control characters
    and a length that fits a file name, since the id names the file."""
    decoded = api_id
    for _ in range(3):
        decoded = unquote(decoded)
    if (
        api_id in ("", ".", "..")
        or decoded in ("", ".", "..")
        or any(c in decoded for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in api_id)
        or len(api_id.encode()) > MAX_ID_LENGTH
    ):
        raise ApiError(400, INVALID_ID)


def _id_of(raw: dict[str, Any], fmt: Format) -> Any:
    if fmt == "classic":
        return raw.get("api_id")
    info = raw[EXTENSION].get("info") if isinstance(raw[EXTENSION], dict) else None
    return info.get("id") if isinstance(info, dict) else None


def _fill_id(raw: dict[str, Any], fmt: Format, default: str, url_id: str | None) -> None:
    """Give the body an id when it has none; with ``url_id``, the body's id must equal it."""
    current = _id_of(raw, fmt)
    if current in (None, ""):
        if fmt == "classic":
            raw["api_id"] = default
        else:
            ext = raw[EXTENSION]
            if not isinstance(ext, dict):
                raise ApiError(400, INVALID.format(f"{EXTENSION}: expected an object"))
            info = ext.setdefault("info", {})
            if not isinstance(info, dict):
                raise ApiError(400, INVALID.format(f"{EXTENSION}.info: expected an object"))
            info["id"] = default
        return
    if not isinstance(current, str):
        field = "api_id" if fmt == "classic" else f"{EXTENSION}.info.id"
        raise ApiError(400, INVALID.format(f"{field}: expected a string"))
    if url_id is not None and current != url_id:
        raise ApiError(400, ID_MISMATCH)


def _check_openapi(raw: dict[str, Any]) -> None:
    """The OpenAPI skeleton Tyk's schema check insists on: ``openapi`` 3.x, ``info`` with a
    title and version, and ``paths`` (an object; required before 3.1)."""
    version = raw.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise ApiError(400, INVALID.format('openapi: expected an OpenAPI 3 version string such as "3.0.3"'))
    info = raw.get("info")
    if not isinstance(info, dict):
        raise ApiError(400, INVALID.format("info: missing: an OpenAPI document needs info.title and info.version"))
    for name in ("title", "version"):
        if not isinstance(info.get(name), str):
            raise ApiError(400, INVALID.format(f"info.{name}: missing or not a string"))
    paths = raw.get("paths")
    if paths is None and version.startswith("3.0"):
        raise ApiError(400, INVALID.format("paths: missing: an OpenAPI 3.0 document needs paths (may be {})"))
    if paths is not None and not isinstance(paths, dict):
        raise ApiError(400, INVALID.format("paths: expected an object"))
    if not isinstance(raw[EXTENSION], dict):
        raise ApiError(400, INVALID.format(f"{EXTENSION}: expected an object"))


def _override(raw: dict[str, Any], query: dict[str, str]) -> None:
    """Tyk's PATCH query parameters ``upstreamURL``, ``listenPath`` and ``customDomain``."""
    upstream = query.get("upstreamURL", "").strip()
    listen = query.get("listenPath", "").strip()
    domain = query.get("customDomain", "").strip()
    if not (upstream or listen or domain):
        return
    ext = _object(raw, EXTENSION, EXTENSION)
    if upstream:
        _object(ext, "upstream", f"{EXTENSION}.upstream")["url"] = upstream
    if listen:
        server = _object(ext, "server", f"{EXTENSION}.server")
        _object(server, "listenPath", f"{EXTENSION}.server.listenPath")["value"] = listen
    if domain:
        _object(ext, "server", f"{EXTENSION}.server")["customDomain"] = {"enabled": True, "name": domain}


def _object(parent: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    child = parent.setdefault(key, {})
    if not isinstance(child, dict):
        raise ApiError(400, INVALID.format(f"{field}: expected an object"))
    return child


def _validate(raw: dict[str, Any], target: Path, allow_link_local: bool) -> tuple[bytes, ApiSpec]:
    """The bytes to write and what the loader will make of them (the same checks as a file in
    ``app_path`` gets), or a 400 saying what is wrong."""
    data = orjson.dumps(raw, option=orjson.OPT_INDENT_2)
    try:
        spec = decode_definition(data, str(target))
        check_auth_settings(spec)  # what loading would refuse, refused before it is written
        check_upstream_host(spec, allow_link_local)
        return data, spec
    except DefinitionError as exc:
        raise ApiError(400, INVALID.format(str(exc))) from None


def _check_clash(spec: ApiSpec, stored: dict[str, _Stored]) -> None:
    """An active API may not take the domain and listen path of another stored active API."""
    if not spec.active:
        return
    for other in stored.values():
        o = other.spec
        if o.api_id != spec.api_id and o.active and route_of(o) == route_of(spec):
            field = "proxy.listen_path" if spec.format == "classic" else f"{EXTENSION}.server.listenPath.value"
            where = f" on domain {spec.domain!r}" if spec.domain else ""
            raise ApiError(400, INVALID.format(
                f"{field}: {spec.listen_path!r}{where} is already used by API {o.api_id!r}"))


def _public(doc: dict[str, Any], public: bool) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != EXTENSION} if public else doc
