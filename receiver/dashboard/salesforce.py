"""The CRM page's Salesforce connection and Refresh Webhook (CONTRACT sections 5 and 7).

Routes (each through ``receiver.dashboard.framework``: sign-in, organization access, CSRF):

- ``POST /organizations/{organization}/settings/crm/connect``: Connect to Salesforce; the
  ``environment`` (``production``, ``sandbox``, ``my-domain``) and ``my_domain_url`` fields
  give the login URL (``receiver.salesforce_oauth.login_url_for``); answers 303 to
  Salesforce's authorize URL (the CRM page's ``form-action`` allows Salesforce's login
  hosts and ``AGENT_PROVISION_SALESFORCE_LOGIN_URLS``).
- ``GET /oauth/salesforce/callback``: the end of the OAuth flow (signed in as the operator
  who pressed Connect, who must still manage the organization; another operator's state is
  refused as unknown and stays pending). Success: 303 to the CRM page;
  a refusal: a page with role ``alert`` (``receiver.salesforce_oauth.OAuthRefused``).
- ``POST .../settings/crm/disconnect``: forget the connection, revoke its OAuth token.
- ``POST .../settings/crm/refresh``: Refresh Webhook: ``receiver.refresh.run_refresh`` in
  the background with the stored connection and the default trigger (the same function as
  ``agent-provision deploy``); pressed while one runs, the page shows the running one.

:func:`salesforce_values` adds the connection, the current Refresh Webhook job and the
history to the CRM page; while a job runs the page reloads itself every 2 seconds (meta
refresh, no JavaScript; ``AGENT_PROVISION_DASHBOARD_RELOAD_SECONDS``). A Refresh Webhook
started here polls the deploy as ``receiver.refresh.serve_timing`` says
(``AGENT_PROVISION_DEPLOY_POLL_SECONDS``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from sqlmodel import Session
from starlette.responses import Response

from receiver.dashboard.framework import (
    OrgPage,
    SignedInPage,
    org_route,
    redirect,
    signed_in_route,
)
from receiver.dashboard.rendering import org_url, vouched
from receiver.db import transaction
from receiver.jobs import JobKind, JobView, latest_jobs
from receiver.refresh import RefreshRequest, run_refresh, serve_timing
from receiver.salesforce_connection import (
    ConnectionInfo,
    connection_info,
    delete_connection,
    read_secrets,
)
from receiver.salesforce_login import revoke_token, salesforce_client
from receiver.salesforce_oauth import CALLBACK_PATH, OAuthRefused, begin, complete, login_url_for
from receiver.secrets import load_key
from receiver.settings import Settings
from sf_metadata.errors import AgentProvisionError, JobBusy, UsageError

__all__ = ["ROUTES", "salesforce_values"]

_KIND_LABELS = {
    "oauth": "OAuth 2.0 web server flow (refresh token)",
    "jwt": "JWT bearer (certificate)",
    "client-credentials": "Client credentials",
    "session": "An existing session (cannot be refreshed)",
    "soap-login": "Legacy SOAP login (retired in Summer '27)",
}
_STEP_LABELS = {
    "preflight": "Preflight: checking the org, permissions, integration user and call centers",
    "deploying": "Deploying the Outbound Message and its trigger",
    "waiting for Salesforce": "Waiting for Salesforce to finish the deploy",
    "checking the flow is active": "Checking the flow is active",
}


def _key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    return load_key(settings.database_url, secret)


def _redirect_uri(page: SignedInPage) -> str:
    public = page.context.settings.public_url
    base = public.rstrip("/") if public else str(page.request.base_url).rstrip("/")
    return base + CALLBACK_PATH


def _job_summary(job: JobView) -> dict[str, Any]:
    result = job.result
    components = result.get("components") or []
    outcome = str(result.get("outcome") or "")
    if job.state.value == "running":
        headline = "Running"
    elif job.state.value == "succeeded":
        headline = "Succeeded"
    else:
        headline = "Failed"
    return {
        "job": job,
        "headline": headline,
        "outcome": outcome,
        "components": components,
        "retired": result.get("retired") or [],
        "warnings": result.get("warnings") or [],
        "problems": list(job.problems),
        "step": _STEP_LABELS.get(job.current_step or "", job.current_step or "Starting"),
        "steps": [(_STEP_LABELS.get(n, n), at) for n, at in job.steps],
        "trigger": result.get("trigger"),
        "deploy_id": job.deploy_id,
        # What to do next depends on what failed (``receiver.jobs.run_job``): no error
        # class is a preflight or deploy that Salesforce answered with problems.
        "error": result.get("error"),
        "unreachable": bool(result.get("unreachable")),
        "interrupted": job.state.value == "interrupted",
    }


def salesforce_values(session: Session, page: OrgPage) -> dict[str, Any]:
    """The connection (no secret), whether Connect to Salesforce is configured, the newest
    Refresh Webhook job and the history (newest first)."""
    org = page.organization.id
    jobs = latest_jobs(session, org, JobKind.REFRESH_WEBHOOK, limit=20, now=page.now)
    current = _job_summary(jobs[0]) if jobs else None
    connection: ConnectionInfo | None = connection_info(session, org)
    return {
        "connection": connection,
        "connection_kind": _KIND_LABELS.get(connection.kind, connection.kind)
        if connection
        else None,
        "oauth_configured": bool(page.context.settings.salesforce_client_id),
        "refresh": current,
        "history": [_job_summary(j) for j in jobs],
        "reload_seconds": page.context.settings.dashboard_reload_seconds
        if current and current["headline"] == "Running"
        else None,
        "notice": _NOTICES.get(vouched(page.request).get("notice", "")),
    }


_NOTICES = {
    "busy": "A Refresh Webhook is already running for this organization: its progress is below.",
    "connected": "Connected to Salesforce.",
    "no-connection": "Connect to Salesforce first: Refresh Webhook uses the stored connection.",
    "disconnected": "Disconnected from Salesforce: the stored connection is forgotten.",
}


def form_action_sources(settings: Settings) -> str:
    """The CRM page's CSP ``form-action``: this site, Salesforce's login hosts and the
    configured extra login URLs (Connect to Salesforce answers 303 to one of them)."""
    sources = ["'self'", "https://login.salesforce.com", "https://test.salesforce.com"]
    sources.append("https://*.my.salesforce.com")
    for url in settings.salesforce_login_urls.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme in ("http", "https") and parts.netloc:
            sources.append(f"{parts.scheme}://{parts.netloc}")
    return " ".join(sources)


def with_form_action(response: Response, settings: Settings) -> Response:
    """Allow the Connect form's redirect to Salesforce in the page's CSP."""
    csp = response.headers.get("content-security-policy", "")
    parts = [
        p.strip() for p in csp.split(";") if p.strip() and not p.strip().startswith("form-action")
    ]
    parts.append("form-action " + form_action_sources(settings))
    response.headers["content-security-policy"] = "; ".join(parts)
    return response


async def connect(page: OrgPage) -> Response:
    """Start the OAuth 2.0 web server flow (PKCE S256)."""
    settings = page.context.settings
    assert page.form is not None
    client_id = settings.salesforce_client_id
    if not client_id:
        return page.error(
            409,
            "Connect to Salesforce is not set up",
            "This service has no External Client App configured.",
            hint="Set AGENT_PROVISION_SALESFORCE_CLIENT_ID (see the README), or store a "
            f"connection with `agent-provision org connect {page.organization.id}`.",
        )
    try:
        login_url = login_url_for(
            str(page.form.get("environment") or ""),
            str(page.form.get("my_domain_url") or ""),
            settings.salesforce_login_urls,
        )
    except UsageError as error:
        return page.error(400, "Not a Salesforce login URL", error.message, hint=_AGAIN)
    engine, key = page.context.engine, _key(settings)
    organization, operator, now = page.organization.id, page.viewer.username, page.now

    def start() -> str:
        return begin(
            engine,
            key,
            organization=organization,
            login_url=login_url,
            client_id=client_id,
            redirect_uri=_redirect_uri(page),
            operator=operator,
            now=now,
        )

    from starlette.concurrency import run_in_threadpool

    return redirect(await run_in_threadpool(start))


_AGAIN = "Go back to the CRM page and press Connect to Salesforce again."


async def callback(page: SignedInPage) -> Response:
    """``GET /oauth/salesforce/callback``: finish the sign-in."""
    from starlette.concurrency import run_in_threadpool

    settings = page.context.settings
    params = {k: v for k, v in page.request.query_params.items()}
    engine, key = page.context.engine, _key(settings)
    secret = settings.salesforce_client_secret
    pending = _pending(engine, params.get("state", ""))
    if pending is not None and (
        not page.viewer.can_access(pending[0])
        or (pending[1] is not None and pending[1] != page.viewer.username)
    ):
        # another operator's sign-in (RFC 6749 10.12: the state is bound to who started
        # it): refused as unknown, and left pending for them
        params["state"] = _NO_SUCH_STATE

    def finish() -> ConnectionInfo:
        return complete(
            engine,
            key,
            params=params,
            client_id=settings.salesforce_client_id or "",
            client_secret=secret.get_secret_value() if secret else None,
            redirect_uri=_redirect_uri(page),
            extra_login_urls=settings.salesforce_login_urls,
            http=requests.Session(),
            now=page.now,
        )

    try:
        info = await run_in_threadpool(finish)
    except OAuthRefused as error:
        return page.error(400, "Salesforce did not connect", error.message, hint=_AGAIN)
    return redirect(
        org_url(info.organization, "/settings/crm", notice="connected"), vouch=page.request
    )


#: What the callback's state becomes when it is another operator's: no state hashes to it.
_NO_SUCH_STATE = "another operator's sign-in"


def _pending(engine: Any, state: str) -> tuple[str, str | None] | None:
    """The organization and the operator of the pending sign-in of ``state``, or ``None``."""
    import hashlib

    from receiver.salesforce_oauth import OAuthState

    if not state:
        return None
    with transaction(engine, read_only=True) as session:
        row = session.get(OAuthState, hashlib.sha256(state.encode()).hexdigest())
        return (row.organization_id, row.operator) if row is not None else None


async def disconnect(page: OrgPage) -> Response:
    """Forget the stored connection and revoke an OAuth token."""
    from starlette.concurrency import run_in_threadpool

    engine, key, org = page.context.engine, _key(page.context.settings), page.organization.id

    def forget() -> None:
        with transaction(engine) as session:
            row = delete_connection(session, org)
            secrets = read_secrets(row, key) if row is not None and row.kind == "oauth" else {}
            login_url = row.login_url if row is not None else None
        token = secrets.get("refresh_token") or secrets.get("access_token")
        if token and login_url:
            revoke_token(requests.Session(), login_url, token)

    await run_in_threadpool(forget)
    return redirect(page.url("/settings/crm", notice="disconnected"), vouch=page.request)


async def refresh(page: OrgPage) -> Response:
    """Refresh Webhook: start the deploy in the background (the same function as
    ``agent-provision deploy``), then show its progress."""
    from starlette.concurrency import run_in_threadpool

    settings = page.context.settings
    engine, key, org = page.context.engine, _key(settings), page.organization.id
    connection = await page.read(lambda s: connection_info(s, org))
    if connection is None:
        return redirect(page.url("/settings/crm", notice="no-connection"), vouch=page.request)
    # the integration user the page shows: the connection's user (CONTRACT section 4's
    # default for deploy, the user the credentials log in as)
    request = RefreshRequest(
        organization=org, integration_user=connection.username, actor=page.actor
    )
    secret = settings.salesforce_client_secret

    def connect_stored() -> Any:
        return salesforce_client(
            engine,
            key,
            org,
            {},
            {},  # the stored connection only: never the server's own environment
            client_id=settings.salesforce_client_id,
            client_secret=secret.get_secret_value() if secret else None,
        ).client

    def start() -> None:
        run_refresh(
            engine, key, request, connect_stored, background=True, timing=serve_timing(settings)
        )

    try:
        await run_in_threadpool(start)
    except JobBusy:
        return redirect(page.url("/settings/crm", notice="busy"), vouch=page.request)
    except AgentProvisionError as error:
        return page.error(400, "Refresh Webhook did not start", error.message)
    return redirect(page.url("/settings/crm"))


ROUTES = [
    org_route("/settings/crm/connect", connect, methods=["POST"]),
    org_route("/settings/crm/disconnect", disconnect, methods=["POST"]),
    org_route("/settings/crm/refresh", refresh, methods=["POST"]),
    signed_in_route(CALLBACK_PATH, callback),
]
