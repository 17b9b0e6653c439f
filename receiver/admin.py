"""The admin JSON API and the sessions API for the host app (CONTRACT section 3).

Every route needs ``Authorization: Bearer <AGENT_PROVISION_ADMIN_TOKEN>``; with no admin
token configured, or a missing or wrong one (compared in constant time), it answers 401.
Errors are JSON ``{"error": "..."}``.

=======  ======================================================  =====================
method   path                                                    answer
=======  ======================================================  =====================
GET      /v2/organizations/{organization}/users                  200 agent list (by crmId)
GET      /v2/organizations/{organization}/provisioning-log       200 page, newest first
         ``?limit=1..500`` (default 50) ``&before=<message id>``
POST     /v2/organizations/{organization}/users/{crmId}/sessions 201 ``{"sessionId"}``;
                                                                 400 not a User id;
                                                                 404 not provisioned;
                                                                 403 disabled
GET      /v2/sessions/{sessionId}                                200 active; 404 ended/unknown
DELETE   /v2/sessions/{sessionId}                                204 (ended, or already)
=======  ======================================================  =====================

An unknown organization answers 404. Store work runs in a worker thread; a
:class:`~sf_metadata.errors.StoreUnavailable` answers 503.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver._logging import LOGGER_NAME
from receiver.agents import list_agents
from receiver.context import ReceiverContext
from receiver.db import transaction
from receiver.organizations import get_organization
from receiver.provisioning_log import list_messages
from receiver.sessions import StartStatus, end_session, is_session_active, start_session
from sf_metadata.errors import InvalidSalesforceId, OrganizationNotFound, StoreUnavailable
from sf_metadata.ids import USER, canonical_id

__all__ = ["DEFAULT_LOG_LIMIT", "MAX_LOG_LIMIT", "is_authorized", "routes"]

log = logging.getLogger(LOGGER_NAME)

DEFAULT_LOG_LIMIT = 50
MAX_LOG_LIMIT = 500
#: Largest message id (``provisioning_message.id`` is a 32-bit INTEGER on PostgreSQL).
MAX_MESSAGE_ID = 2**31 - 1

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def is_authorized(request: Request, admin_token: str | None) -> bool:
    """True if the request carries ``Authorization: Bearer <admin_token>`` (constant-time
    comparison); always False when ``admin_token`` is ``None`` or empty."""
    if not admin_token:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), admin_token.encode("utf-8"))


_PARAM_NOUNS = {"organization": "organization", "crm_id": "agent", "session_id": "session"}


def _has_control(value: object) -> bool:
    """True if ``value`` is a str holding a C0/C1 control character (NUL included)."""
    return isinstance(value, str) and any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value)


def _guarded(handler: Handler) -> Handler:
    """Check the bearer token, then run ``handler``; map store errors to JSON answers."""

    async def wrapper(request: Request) -> Response:
        context: ReceiverContext = request.app.state.context
        secret = context.settings.admin_token
        if not is_authorized(request, secret.get_secret_value() if secret else None):
            return JSONResponse(
                {"error": "missing or wrong bearer token (AGENT_PROVISION_ADMIN_TOKEN)"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        bad = next((k for k, v in request.path_params.items() if _has_control(v)), None)
        if bad is not None:
            # No organization, user or session id holds a control character (PostgreSQL
            # text cannot even hold NUL): unknown, answered before touching the store.
            return _error(404, f"no such {_PARAM_NOUNS.get(bad, bad)}")
        try:
            return await handler(request)
        except OrganizationNotFound as error:
            return _error(404, error.message)
        except StoreUnavailable as error:
            log.warning(
                "admin %s %s: store unavailable: %s",
                request.method,
                request.url.path,
                error.message,
            )
            return _error(503, "the agent store is unavailable; retry")

    return wrapper


def _context(request: Request) -> ReceiverContext:
    context: ReceiverContext = request.app.state.context
    return context


async def users(request: Request) -> Response:
    """``GET /v2/organizations/{organization}/users``: the agent JSON list by crmId."""
    context = _context(request)
    name = request.path_params["organization"]

    def work() -> list[dict[str, Any]]:
        with transaction(context.engine, read_only=True) as session:
            agents = list_agents(session, organization_id=name)
        return [a.to_json() for a in agents]

    return JSONResponse(await run_in_threadpool(work))


def _int_param(
    request: Request, name: str, default: int | None, low: int, high: int | None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"query parameter {name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise ValueError(f"query parameter {name} must be {_bounds(low, high)}")
    return value


def _bounds(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f"at least {low}"


async def provisioning_log(request: Request) -> Response:
    """``GET /v2/organizations/{organization}/provisioning-log?limit=&before=``."""
    context = _context(request)
    name = request.path_params["organization"]
    try:
        limit = _int_param(request, "limit", DEFAULT_LOG_LIMIT, 1, MAX_LOG_LIMIT)
        before = _int_param(request, "before", None, 1, MAX_MESSAGE_ID)
    except ValueError as error:
        return _error(400, str(error))

    def work() -> Any:
        with transaction(context.engine, read_only=True) as session:
            get_organization(session, name)
            page = list_messages(
                session, organization_id=name, limit=limit or DEFAULT_LOG_LIMIT, before_id=before
            )
        return page.to_json()

    return JSONResponse(await run_in_threadpool(work))


async def start(request: Request) -> Response:
    """``POST /v2/organizations/{organization}/users/{crmId}/sessions``."""
    context = _context(request)
    name = request.path_params["organization"]
    crm_id = request.path_params["crm_id"]
    try:
        canonical_id(crm_id, USER)
    except InvalidSalesforceId as error:  # bad input, not an unknown agent
        return _error(400, f"crmId: {error.message}")

    def work() -> Any:
        with transaction(context.engine) as session:
            return start_session(session, organization_id=name, crm_id=crm_id, now=context.clock())

    result = await run_in_threadpool(work)
    if result.status is StartStatus.STARTED:
        return JSONResponse({"sessionId": result.session_id}, status_code=201)
    if result.status is StartStatus.DISABLED:
        return _error(
            403,
            f"agent {crm_id} of organization {name} is disabled "
            "(inactive or without a call center)",
        )
    return _error(404, f"agent {crm_id} is not provisioned in organization {name}")


async def session_status(request: Request) -> Response:
    """``GET /v2/sessions/{sessionId}``: 200 while active, else 404."""
    context = _context(request)
    session_id = request.path_params["session_id"]

    def work() -> bool:
        with transaction(context.engine, read_only=True) as session:
            return is_session_active(session, session_id)

    if await run_in_threadpool(work):
        return JSONResponse({"sessionId": session_id, "active": True})
    return _error(404, "no such active session")


async def session_end(request: Request) -> Response:
    """``DELETE /v2/sessions/{sessionId}``: end it (204, also when already ended)."""
    context = _context(request)
    session_id = request.path_params["session_id"]

    def work() -> bool:
        with transaction(context.engine) as session:
            return end_session(
                session, session_id=session_id, now=context.clock(), hooks=context.hooks
            )

    await run_in_threadpool(work)
    return Response(status_code=204)


def routes() -> list[Route]:
    """The admin and sessions routes, each behind the bearer token check."""
    return [
        Route("/v2/organizations/{organization}/users", _guarded(users), methods=["GET"]),
        Route(
            "/v2/organizations/{organization}/provisioning-log",
            _guarded(provisioning_log),
            methods=["GET"],
        ),
        Route(
            "/v2/organizations/{organization}/users/{crm_id}/sessions",
            _guarded(start),
            methods=["POST"],
        ),
        Route("/v2/sessions/{session_id}", _guarded(session_status), methods=["GET"]),
        Route("/v2/sessions/{session_id}", _guarded(session_end), methods=["DELETE"]),
    ]
