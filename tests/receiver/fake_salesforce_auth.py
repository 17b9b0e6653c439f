"""A tiny local fake of Salesforce's OAuth 2.0 endpoints (authorize with a consent page,
token with PKCE S256 checks and rotating refresh tokens, the identity URL, revoke), a
Starlette app the tests serve on loopback (``tests/receiver/_live.py``)."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

ORG_ID = "00D000000000001EAA"
USER_ID = "005000000000001AAA"
USERNAME = "admin@acme.example.com"


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))


@dataclass
class FakeAuthServer:
    """State of the fake; ``org_id`` is the org every sign-in lands in."""

    client_id: str = "3MVG9FakeClientId"
    org_id: str = ORG_ID
    instance_url: str = "https://orgname.my.salesforce.com"
    base_url: str = ""
    username: str = USERNAME
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    used_codes: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    revoked: list[str] = field(default_factory=list)
    token_calls: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/services/oauth2/authorize", self.authorize, methods=["GET"]),
                Route("/services/oauth2/token", self.token, methods=["POST"]),
                Route("/services/oauth2/revoke", self.revoke, methods=["POST"]),
                Route("/id/{org}/{user}", self.identity, methods=["GET"]),
            ]
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("code_challenge_method") != "S256":
            return HTMLResponse("<p role=alert>bad client or no PKCE</p>", status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
            "scope": q.get("scope", ""),
        }
        allow = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
        deny = (
            q["redirect_uri"]
            + "?"
            + urlencode(
                {
                    "error": "access_denied",
                    "error_description": "end-user denied authorization",
                    "state": q.get("state", ""),
                }
            )
        )
        page = (
            "<!doctype html><title>Allow Access?</title><h1>Allow Access?</h1>"
            f'<p><a href="{html.escape(allow)}">Allow</a> <a href="{html.escape(deny)}">Deny</a></p>'
        )
        return HTMLResponse(page)

    def _tokens(self) -> dict[str, Any]:
        access = "00Dfake!" + secrets.token_urlsafe(24)
        refresh = "5Aepfake" + secrets.token_urlsafe(24)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "instance_url": self.instance_url,
            "id": f"{self.base_url}/id/{self.org_id}/{USER_ID}",
            "token_type": "Bearer",
            "scope": "api id refresh_token",
            "issued_at": "1794052800000",
        }

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        self.token_calls.append({k: v for k, v in form.items() if k == "grant_type"})
        bad = JSONResponse(
            {"error": "invalid_grant", "error_description": "authentication failure"},
            status_code=400,
        )
        if form.get("client_id") != self.client_id:
            return JSONResponse({"error": "invalid_client_id"}, status_code=400)
        if form.get("grant_type") == "authorization_code":
            code = form.get("code", "")
            issued = self.codes.get(code)
            if issued is None or code in self.used_codes:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "invalid authorization code"},
                    status_code=400,
                )
            self.used_codes.add(code)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                challenge != issued["challenge"]
                or form.get("redirect_uri") != issued["redirect_uri"]
            ):
                return bad
            return JSONResponse(self._tokens())
        if form.get("grant_type") == "refresh_token":
            refresh = form.get("refresh_token", "")
            if refresh not in self.refresh_tokens:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "expired access/refresh token"},
                    status_code=400,
                )
            self.refresh_tokens.discard(refresh)  # rotation: the old one stops working
            return JSONResponse(self._tokens())
        return bad

    async def revoke(self, request: Request) -> Response:
        token = (await _form(request)).get("token", "")
        self.revoked.append(token)
        self.access_tokens.discard(token)
        self.refresh_tokens.discard(token)
        return Response(status_code=200)

    async def identity(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.access_tokens:
            return JSONResponse([{"errorCode": "INVALID_SESSION_ID"}], status_code=403)
        return JSONResponse(
            {
                "id": str(request.url),
                "organization_id": request.path_params["org"],
                "user_id": request.path_params["user"],
                "username": self.username,
                "display_name": "Acme Admin",
            }
        )
