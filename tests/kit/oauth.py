"""Builders for OAuth 2.0 server tests: OAuth API definitions, clients, the login app's approval,
token requests (contract auth-wave2 §A)."""

from __future__ import annotations

import requests

from tests.kit.apis import classic_api, rights
from tests.kit.gateway_api import ADMIN

__all__ = ["ALL_GRANTS", "LOGIN", "POLICIES", "REDIRECT", "approve", "get", "make_client", "oauth_api", "token_post"]

LOGIN = "https://login.example.test/consent"
REDIRECT = "https://client.example.test/cb"
ALL_GRANTS = ["authorization_code", "refresh_token", "password", "client_credentials"]


def oauth_api(api_id: str, upstream_url: str, access_types: list[str], **fields):
    fields.setdefault("oauth_meta", {"allowed_access_types": access_types, "allowed_authorize_types": ["code", "token"],
                                     "auth_login_redirect": LOGIN})
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False, use_oauth2=True, **fields)


POLICIES = {
    "opol": {"id": "opol", "org_id": "default", "rate": 1000, "per": 1, "quota_max": -1,
             "access_rights": rights("o", "o2", "pk")},
    "slow": {"id": "slow", "org_id": "default", "rate": 3, "per": 60, "quota_max": -1, "access_rights": rights("o")},
}


def make_client(gw, api_id: str = "o", policy_id: str = "opol", **extra) -> dict:
    body = {"redirect_uri": REDIRECT, "api_id": api_id, "policy_id": policy_id, **extra}
    status, answer = gw.admin("POST", "/tyk/oauth/clients/create", body)
    assert status == 200, answer
    return answer


def approve(gw, query: dict, api_id: str = "o", admin: bool = True) -> requests.Response:
    """The login app approving an authorization request."""
    return requests.post(f"{gw.url}/{api_id}/tyk/oauth/authorize-client", data=query,
                         headers=ADMIN if admin else {}, timeout=10)


def get(gw, path: str, token: str | None = None, **headers) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(gw.url + path, headers=headers, timeout=10)


def token_post(gw, data, api_id: str = "o", auth=None, **kwargs) -> requests.Response:
    return requests.post(f"{gw.url}/{api_id}/oauth/token", data=data, auth=auth, timeout=10, **kwargs)
