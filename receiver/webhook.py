"""The Outbound Message route (CONTRACT section 3): checks in order, one transaction, Ack.

``POST /v2/features/agent-auto-provision/organizations/{organization}/integrations/provider/webhook?token=``

Checks run in this order; the first that fails answers (a SOAP fault, so Salesforce keeps
retrying while an admin fixes the configuration; reference ``outbound-receiver-bugs.md``
B15/B16 and ``outbound-wire-format.md`` section 2.2):

==========================================================  ======  ==================
case                                                        status  body
==========================================================  ======  ==================
unknown ``{organization}``                                  404     SOAP fault
missing or wrong ``token`` (constant time)                  401     SOAP fault
body larger than ``Settings.max_body_bytes``                413     SOAP fault
:class:`~sf_metadata.errors.EnvelopeError` from the parser  400     SOAP fault
``OrganizationId`` not the registered org (first 15 chars)  403     SOAP fault
:class:`~sf_metadata.errors.StoreUnavailable`               503     SOAP fault
otherwise (applied in one transaction, committed)           200     ``notificationsResponse``/``Ack`` true
==========================================================  ======  ==================

Every message that passes the token check lands in the provisioning log: applied ones
through ``receiver.provisioning.apply_message``; the 413/400/403 rejections through
:func:`record_rejection` (outcome ``MessageOutcome.REJECTED``). Unauthenticated rejections and 503s go
to the process log only (logger ``agent_provision.receiver``); a missing or wrong token of
a registered organization also sets that organization's last refusal (at most once a
minute, ``receiver.webhook_refusals``), which the CRM page shows. No log line, fault or
record holds the token or a SessionId.

Blocking store work and the parse of the body run in a worker thread
(``starlette.concurrency.run_in_threadpool``), so a large body never blocks the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from receiver import metrics
from receiver._logging import LOGGER_NAME
from receiver.context import ReceiverContext
from receiver.db import transaction
from receiver.models import Organization
from receiver.outcomes import MessageOutcome
from receiver.provisioning import MessageResult, apply_message
from receiver.provisioning_log import record_message
from receiver.secrets import token_matches
from receiver.webhook_refusals import last_refusal, record_refusal, refusal_due
from sf_metadata.decision import read_user_changes
from sf_metadata.errors import (
    EnvelopeError,
    OrganizationNotFound,
    StoreUnavailable,
    TransactionConflict,
)
from sf_metadata.ids import same_org_id
from sf_metadata.outbound import OutboundMessage
from sf_metadata.soap import (
    ACK_CONTENT_TYPE,
    FAULT_CLIENT,
    FAULT_SERVER,
    parse_outbound_message,
    render_ack,
    render_fault,
)

__all__ = ["WEBHOOK_PATH", "read_limited_body", "record_rejection", "routes", "webhook"]

WEBHOOK_PATH = (
    "/v2/features/agent-auto-provision/organizations/{organization}/integrations/provider/webhook"
)

log = logging.getLogger(LOGGER_NAME)

_CLIENT = FAULT_CLIENT
_SERVER = FAULT_SERVER


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes


def _fault(status: int, message: str) -> _Answer:
    code = _SERVER if status >= 500 else _CLIENT
    return _Answer(status, render_fault(code, message))


def _respond(answer: _Answer) -> Response:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=None,
        headers={"content-type": ACK_CONTENT_TYPE},
    )


async def read_limited_body(request: Request, limit: int) -> bytes | None:
    """Read the request body, or return ``None`` as soon as it is longer than ``limit``
    bytes (a ``Content-Length`` above the limit is refused before reading anything).

    ``limit`` is in bytes. Never raises for an oversized body; a client that disconnects
    mid-body raises ``starlette.requests.ClientDisconnect``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            pass
    buffer = bytearray()
    async for chunk in request.stream():
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def webhook(request: Request) -> Response:
    """Handle one Outbound Message POST; see the module docstring for the table."""
    context: ReceiverContext = request.app.state.context
    name = _printable(request.path_params["organization"])
    started = time.perf_counter()
    try:
        answer = await _handle(context, request, name)
    except StoreUnavailable as error:
        log.warning(
            "webhook organization=%s: store unavailable, not acknowledged: %s", name, error.message
        )
        answer = _fault(
            503,
            "The agent store is unavailable; nothing was applied. "
            "Salesforce will retry the message.",
        )
    except ClientDisconnect:
        log.info("webhook organization=%s: client disconnected before the body ended", name)
        answer = _fault(400, "The request body ended early.")
    except Exception:  # noqa: BLE001 - never an Ack; the traceback names no secret
        log.exception("webhook organization=%s: unexpected error, not acknowledged", name)
        answer = _fault(
            500, "Internal error; nothing was acknowledged. Salesforce will retry the message."
        )
    _observe(answer.status, time.perf_counter() - started)
    return _respond(answer)


def _observe(status: int, seconds: float) -> None:
    """Metrics (``receiver.metrics``) of answers the applied path did not count."""
    if status == 200:
        metrics.observe_ack(seconds)
    elif status in (401, 404):
        metrics.observe_message("unauthenticated")
    elif status == 503:
        metrics.observe_message("unavailable")
    elif status >= 500:
        metrics.observe_message("error")
    else:
        metrics.observe_message("rejected")


def _printable(name: str) -> str:
    """``name`` for logs and faults: at most 80 characters, control characters escaped
    (the path parameter is attacker-controlled)."""
    cut = name[:80]
    return (
        cut
        if cut.isprintable() and cut == name
        else repr(cut)[1:-1] + ("..." if len(name) > 80 else "")
    )


async def _handle(context: ReceiverContext, request: Request, name: str) -> _Answer:
    tokens = request.query_params.getlist("token")
    token = tokens[0] if len(tokens) == 1 else None  # a repeated token is no token
    now = context.clock()
    registered, note = await run_in_threadpool(_authenticate, context.engine, name, token, now)
    if registered is _Refused.UNKNOWN_ORGANIZATION:
        log.info("webhook organization=%s: unknown organization (404)", name)
        return _fault(404, f"Organization {name} is not registered with this service.")
    if registered is _Refused.BAD_TOKEN:
        log.info("webhook organization=%s: missing or wrong token (401)", name)
        if note:
            await run_in_threadpool(_note_refusal, context.engine, name, token, now)
        return _fault(
            401,
            f"The webhook token for organization {name} is missing or wrong; "
            f"put the URL of 'agent-provision org url {name}' in the Outbound "
            "Message endpoint.",
        )

    limit = context.settings.max_body_bytes
    body = await read_limited_body(request, limit)
    if body is None:
        reason = (
            f"Request body is larger than the limit of {limit} bytes "
            "(setting AGENT_PROVISION_MAX_BODY_BYTES)."
        )
        return await _reject(context, name, 413, reason, None)

    # Parse, check and apply in ONE worker-thread hop, off the event loop (a large body
    # costs milliseconds: issue 12 item 6; one hop less per message: issue 11 item 4).
    outcome = await run_in_threadpool(_parse_and_apply, context, name, body, registered)
    if isinstance(outcome, _Rejected):
        return await _reject(context, name, outcome.status, outcome.reason, outcome.message)
    message, result = outcome
    metrics.observe_message(getattr(result, "outcome", "processed"), getattr(result, "counts", {}))
    log.info(
        "webhook organization=%s: %d notification(s), outcome %s",
        name,
        len(message.notifications),
        result.outcome,
    )
    # Pruning processed ids runs off the request path: receiver.maintenance.
    return _Answer(200, render_ack())


async def _reject(
    context: ReceiverContext, name: str, status: int, reason: str, message: OutboundMessage | None
) -> _Answer:
    log.info("webhook organization=%s: rejected (%d): %s", name, status, reason)
    await run_in_threadpool(
        record_rejection,
        context.engine,
        organization=name,
        now=context.clock(),
        reason=reason,
        message=message,
    )
    return _fault(status, reason)


# --- store glue (blocking; called in a worker thread) -----------------------------------


class _Refused(Enum):
    """Why :func:`_authenticate` found no org id."""

    UNKNOWN_ORGANIZATION = "unknown organization"
    BAD_TOKEN = "missing or wrong token"


#: What the token check reads of an organization: two columns, as a plain row (no ORM
#: object per request).
_CREDENTIALS = select(col(Organization.salesforce_org_id), col(Organization.token_hash)).where(
    col(Organization.id) == bindparam("name")
)


def _authenticate(
    engine: Engine, name: str, token: str | None, now: datetime
) -> tuple[str | _Refused, bool]:
    """The registered Salesforce org id of ``name``, or why there is none; and, for a bad
    token, whether the refusal is due to be recorded (``receiver.webhook_refusals``)."""
    with transaction(engine, read_only=True) as session:
        found = session.connection().execute(_CREDENTIALS, {"name": name}).one_or_none()
        if found is None:
            return _Refused.UNKNOWN_ORGANIZATION, False
        salesforce_org_id, token_hash = found
        if not token or not token_matches(token, token_hash):
            return _Refused.BAD_TOKEN, refusal_due(last_refusal(session, name), now)
        return str(salesforce_org_id), False


def _note_refusal(engine: Engine, name: str, token: str | None, now: datetime) -> None:
    """Record a 401 for the CRM page (at most once a minute per organization). The
    answer stays 401 whatever happens here: a failure is only logged."""
    reason = (
        "The webhook token is missing (401)"
        if not token
        else "The webhook token is wrong (401): not this organization's current token "
        "(rotated since the deploy, or a mistyped URL): deploy the current webhook URL "
        "(Refresh Webhook, or put the URL that `agent-provision org url` prints in the "
        "Outbound Message)"
    )
    try:
        with transaction(engine) as session:
            record_refusal(session, organization_id=name, now=now, reason=reason)
    except (StoreUnavailable, IntegrityError) as error:  # a concurrent worker wrote it first
        log.info("webhook organization=%s: refusal not recorded: %s", name, type(error).__name__)


#: Runs of one message's transaction when PostgreSQL aborts it to break a deadlock or a
#: serialization conflict (``TransactionConflict``) before the webhook answers 503.
CONFLICT_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class _Rejected:
    """A message refused after the token check: 400 (not an Outbound Message) or 403
    (another org's), with the reason for the fault and the provisioning log."""

    status: int
    reason: str
    message: OutboundMessage | None


def _parse_and_apply(
    context: ReceiverContext, name: str, body: bytes, registered: str
) -> _Rejected | tuple[OutboundMessage, MessageResult]:
    """Parse ``body``, check its OrganizationId against ``registered``, apply it (worker
    thread). Raises what :func:`_apply` raises."""
    try:
        message = parse_outbound_message(body)
    except EnvelopeError as error:
        return _Rejected(400, f"Not an acceptable Outbound Message: {error.message}", None)
    if not same_org_id(message.organization_id, registered):
        reason = (
            f"OrganizationId {message.organization_id} is not the Salesforce org "
            f"registered for organization {name} ({registered}); if the org changed "
            f"(sandbox refresh), run: agent-provision org update {name} "
            "--salesforce-org-id ID"
        )
        return _Rejected(403, reason, message)
    return message, _apply(context, name, message)


def _apply(context: ReceiverContext, name: str, message: OutboundMessage) -> MessageResult:
    # The mapping is pure and the costliest CPU part: do it before taking the write lock.
    changes = read_user_changes(message.notifications)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            with transaction(context.engine) as session:
                # apply_message locks and reads the organization row itself.
                return apply_message(
                    session,
                    organization=name,
                    message=message,
                    now=context.clock(),
                    hooks=context.hooks,
                    changes=changes,
                )
        except TransactionConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            log.info(
                "webhook organization=%s: transaction conflict (attempt %d), running it again",
                name,
                attempt,
            )
        except OrganizationNotFound:  # removed between the checks: let Salesforce retry
            raise StoreUnavailable(f"organization {name} disappeared during the request") from None
    raise AssertionError("unreachable")  # pragma: no cover


def record_rejection(
    engine: Engine,
    *,
    organization: str,
    now: datetime,
    reason: str,
    message: OutboundMessage | None,
) -> None:
    """Record a message rejected after the token check (413, 400, 403) in the provisioning
    log: one ``provisioning_message`` with outcome ``rejected`` and ``reason`` as detail.

    ``now`` is an aware UTC datetime. Raises :class:`StoreUnavailable` (the caller answers
    503 so Salesforce retries and the rejection is recorded then).
    """
    with transaction(engine) as session:
        record_message(
            session,
            organization_id=organization,
            received_at=now,
            outcome=MessageOutcome.REJECTED,
            action_id=message.action_id if message is not None else None,
            notification_count=len(message.notifications) if message is not None else 0,
            detail=reason,
        )


async def method_not_allowed(request: Request) -> Response:
    """A GET (or anything but POST) on the webhook path: a harmless 405 SOAP fault."""
    return Response(
        render_fault(_CLIENT, "Salesforce Outbound Messages are POSTed here."),
        status_code=405,
        headers={"allow": "POST", "content-type": ACK_CONTENT_TYPE},
    )


def routes() -> list[Route]:
    """The webhook route (POST) and its harmless 405 for other methods."""
    return [
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        Route(WEBHOOK_PATH, method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
    ]
