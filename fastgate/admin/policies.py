"""Tyk's policy endpoints: ``/tyk/policies`` list, get, create, update and delete.

Policies are files under ``[policies] policy_path``. A write is validated with the ``Policy``
model before anything is touched, goes to the file that already holds the policy (else
``<policy_path>/<id>.json``) through a temporary file and a rename, and then this node reloads
its policies at once and announces ``PolicyChanged`` on the cluster channel so the other nodes
reload too: a policy change applies to existing keys on their next request. That is one
deliberate difference from Tyk, which only writes the file and waits for a reload.

Other choices where Tyk is silent or answers a client mistake with a 5xx:

- error messages start with Tyk's text and add what is wrong after ``": "``
  (``"Request malformed: rate: Expected `int | float`, got `str`"``);
- a body without ``id`` takes the id in the URL; a body ``id`` that differs from the URL is a 400
  on POST as well as on PUT (Tyk silently uses the body's id on POST);
- ``DELETE`` of an unknown policy is 404 "Policy not found" (Tyk: 500 "Delete failed");
- ``PUT`` of a policy that does not exist yet creates it (``"action": "modified"``), as Tyk does;
- ``policy_path`` unset, or ``policy_source = "service"``: writes get a 500, because the
  gateway's configuration, not the request, is what is wrong (Tyk answers 500 for the service
  source and silently writes into its working directory when the path is unset).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import unquote

import msgspec
import orjson

from fastgate.admin.common import ApiError, json_object, malformed
from fastgate.sessions.policies import Policy, decode_policy, decode_policy_file, encode_policy, policy_problems
from fastgate.services import reload_policies
from fastgate.store import CLUSTER_CHANNEL, NOTICE_POLICY_CHANGED, StoreError, encode_event

if TYPE_CHECKING:
    from fastgate.admin.common import GatewayControl, Registrar
    from fastgate.http.request import Request

__all__ = ["register", "write_atomically"]

log = logging.getLogger("fastgate.admin")

NOT_FOUND = "Policy not found"
ID_MISMATCH = "Request ID does not match that in policy! For Update operations these must match."
INVALID_ID = "Invalid Policy ID: Allowed characters: a-z, A-Z, 0-9, ., _, -, ~"
MAX_ID_LENGTH = 200  # the file name <id>.json must fit the file system's 255 bytes
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-~")


def register(admin: "Registrar") -> None:
    """Add the policy endpoints to ``admin``."""
    ep = PolicyEndpoints(admin.gateway)
    admin.add("GET", "/tyk/policies", ep.list_policies)
    admin.add("POST", "/tyk/policies", ep.create)
    admin.add("PUT", "/tyk/policies", ep.no_id_update)
    admin.add("DELETE", "/tyk/policies", ep.no_id_delete)
    admin.add("GET", "/tyk/policies/{id}", ep.get)
    admin.add("POST", "/tyk/policies/{id}", ep.create)
    admin.add("PUT", "/tyk/policies/{id}", ep.update)
    admin.add("DELETE", "/tyk/policies/{id}", ep.delete)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never half.

    The temporary file sits beside the target with a name not ending in ``.json``, so a
    directory loader never picks it up. Raises ``OSError``; nothing is left behind on failure.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class PolicyEndpoints:
    """Handlers bound to one gateway's config and loaded policies."""

    def __init__(self, gateway: "GatewayControl") -> None:
        self.services = gateway.services
        self.config = gateway.services.config

    # ---- reads -------------------------------------------------------------------------------

    async def list_policies(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/policies``: every policy loaded on this node, as Tyk writes them."""
        return 200, [_wire(p) for p in self._loaded().values()]

    async def get(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/policies/{id}``: one loaded policy, or 404 "Policy not found"."""
        policy = self._loaded().get(unquote(params["id"]))
        if policy is None:
            raise ApiError(404, NOT_FOUND)
        return 200, _wire(policy)

    # ---- writes ------------------------------------------------------------------------------

    async def create(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/policies[/{id}]``: write the policy (a known id is overwritten, as in Tyk)."""
        return await self._write(body, params.get("id"), "added")

    async def update(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``PUT /tyk/policies/{id}``: write the policy; the body's id must match the URL's."""
        return await self._write(body, params["id"], "modified")

    async def delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``DELETE /tyk/policies/{id}``: remove the policy from every file that holds it."""
        pid = unquote(params["id"])
        directory = self._directory(for_write=False)
        holders = [] if directory is None else _index(directory).get(pid, [])
        if not holders:
            raise ApiError(404, NOT_FOUND)
        try:
            for file, single in holders:
                _remove(file, pid, single)
        except OSError as exc:
            log.error("cannot delete policy %r: %s", pid, exc)
            raise ApiError(500, "Delete failed") from None
        await self._changed(pid)
        return 200, {"key": pid, "status": "ok", "action": "deleted"}

    async def no_id_update(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        raise ApiError(400, "Must specify an apiID to update")  # Tyk's words, "apiID" and all

    async def no_id_delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        raise ApiError(400, "Must specify an apiID to delete")

    async def _write(self, body: bytes, url_id: str | None, action: str) -> tuple[int, Any]:
        directory = self._directory(for_write=True)
        assert directory is not None
        policy = _decode(body)
        pid = _policy_id(policy, None if url_id is None else unquote(url_id))
        policy.id = pid
        wire = _wire(policy)
        holders = _index(directory).get(pid)
        try:
            if holders:
                file, single = holders[0]
                _put(file, pid, wire, single)
            else:
                target = directory / f"{pid}.json"
                _refuse_foreign_file(target, pid)
                write_atomically(target, encode_policy(policy))
        except OSError as exc:
            log.error("cannot write policy %r: %s", pid, exc)
            raise ApiError(500, "Failed to create file!") from None
        await self._changed(pid)
        return 200, {"key": pid, "status": "ok", "action": action}

    # ---- helpers -----------------------------------------------------------------------------

    def _loaded(self) -> Mapping[str, Policy]:
        return self.services.policies

    def _directory(self, *, for_write: bool) -> Path | None:
        """The policy directory, or ``None`` (reads) / a 500 (writes) when there is none."""
        cfg = self.config.policies
        if for_write and cfg.policy_source == "service":
            raise ApiError(500, "Due to enabled service policy source, please use the Dashboard API")
        if not cfg.policy_path:
            if for_write:
                raise ApiError(500, "Policies cannot be written: [policies] policy_path is not set "
                                    "in the gateway config")
            return None
        directory = self.config.resolve(cfg.policy_path)
        if not directory.is_dir():
            if for_write:
                raise ApiError(500, f"Unable to access policy storage: {directory} is not a directory")
            return None
        return directory

    async def _changed(self, pid: str) -> None:
        """Reload here at once, then tell every other node to reload."""
        reload_policies(self.services)
        try:
            await self.services.store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_POLICY_CHANGED, pid))
        except StoreError as exc:
            # The file is written and this node uses it; others pick it up on their next reload.
            log.warning("policy %r changed but other nodes were not told (store: %s)", pid, exc)


def _decode(body: bytes) -> Policy:
    raw = json_object(body, "policy")
    try:
        policy = decode_policy(raw)
    except msgspec.ValidationError as exc:
        raise malformed(exc) from None
    problems = policy_problems(policy)
    if problems:
        raise ApiError(400, "Request malformed: " + "; ".join(problems))
    return policy


def _policy_id(policy: Policy, url_id: str | None) -> str:
    pid = policy.id or policy.mid
    if url_id is not None:
        if pid and pid != url_id:
            raise ApiError(400, ID_MISMATCH)
        pid = pid or url_id
    if not pid:
        raise ApiError(400, "Unable to create policy without id.")
    if not set(pid) <= _SAFE:
        raise ApiError(400, INVALID_ID)
    if len(pid) > MAX_ID_LENGTH:
        raise ApiError(400, f"Invalid Policy ID: at most {MAX_ID_LENGTH} characters")
    return pid


def _wire(policy: Policy) -> Any:
    return orjson.loads(encode_policy(policy))


def _index(directory: Path) -> dict[str, list[tuple[Path, bool]]]:
    """Policy id -> the files holding it, in load order (the first one is the live copy), each
    with whether it is a single-policy file (else a map of id -> policy)."""
    found: dict[str, list[tuple[Path, bool]]] = {}
    for file in sorted(directory.glob("*.json")):
        try:
            data = file.read_bytes()
        except OSError:
            continue
        policies, _ = decode_policy_file(data, file.stem)
        if not policies:
            continue
        single = _is_single(data)
        for pid in policies:
            found.setdefault(pid, []).append((file, single))
    return found


_POLICY_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(Policy))


def _is_single(data: bytes) -> bool:
    """The same test ``decode_policy_file`` makes (the file is known to be a valid object)."""
    return any(k in _POLICY_FIELDS for k in orjson.loads(data))


def _put(file: Path, pid: str, wire: Any, single: bool) -> None:
    if single:
        write_atomically(file, orjson.dumps(wire, option=orjson.OPT_INDENT_2))
        return
    entries = orjson.loads(file.read_bytes())
    entries[pid] = wire
    write_atomically(file, orjson.dumps(entries, option=orjson.OPT_INDENT_2))


def _remove(file: Path, pid: str, single: bool) -> None:
    if single:
        file.unlink(missing_ok=True)
        return
    entries = orjson.loads(file.read_bytes())
    entries.pop(pid, None)
    if entries:
        write_atomically(file, orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    else:
        file.unlink(missing_ok=True)


def _refuse_foreign_file(target: Path, pid: str) -> None:
    """``<id>.json`` exists but holds other valid policies: refuse rather than destroy them.
    A file that holds no valid policy at all is taken to be a broken copy of this one."""
    if not target.exists():
        return
    try:
        others, _ = decode_policy_file(target.read_bytes(), target.stem)
    except OSError:
        others = {}
    if others:
        raise ApiError(400, f"policy_path already has {target.name} holding other policies "
                            f"({', '.join(sorted(others))}); give this policy another id")
    log.warning("replacing %s, which holds no valid policy, with policy %r", target, pid)
