"""The on-enable action "install the webhook" (``receiver/feature_switch.py``): enabling
Agent Auto Provision for an organization that has a stored Salesforce connection and was
never deployed runs Refresh Webhook (``receiver/refresh.py``, the default trigger), in the
background from the dashboard, before ``org enable`` returns from the CLI."""

from __future__ import annotations

from typing import Any

from receiver.db import transaction
from receiver.deployments import components_to_remove
from receiver.feature_switch import FeatureFlip, register_on_enable
from receiver.salesforce_connection import connection_info
from sf_metadata.errors import JobBusy

__all__ = ["install_if_never_deployed"]


def install_if_never_deployed(flip: FeatureFlip) -> str | None:
    """Run Refresh Webhook when a connection is stored and nothing was ever deployed;
    return one line for the operator, or ``None`` when there is nothing to do."""
    from receiver.refresh import RefreshRequest, run_refresh, serve_timing
    from receiver.salesforce_login import salesforce_client
    from receiver.secrets import load_key

    engine, settings, org = flip.engine, flip.settings, flip.organization
    with transaction(engine, read_only=True) as session:
        connection = connection_info(session, org)
        if connection is None or components_to_remove(session, org):
            return None
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    key = load_key(settings.database_url, secret_key)
    secret = settings.salesforce_client_secret

    def connect() -> Any:
        return salesforce_client(
            engine,
            key,
            org,
            {},
            {},  # the stored connection only
            client_id=settings.salesforce_client_id,
            client_secret=secret.get_secret_value() if secret else None,
        ).client

    try:
        run = run_refresh(
            engine,
            key,
            RefreshRequest(
                organization=org, integration_user=connection.username, actor=flip.actor
            ),
            connect,
            background=flip.background,
            timing=serve_timing(settings),
        )
    except JobBusy:
        return "webhook install: a Refresh Webhook is already running"
    if flip.background:
        return "webhook install: started (see the CRM page)"
    if run.error is not None:
        return f"webhook install failed: {run.error.message}"
    if run.result is not None and run.result.succeeded:
        return "webhook install: deployed " + ", ".join(run.result.outcome.components)
    problems = run.result.outcome.problems if run.result is not None else ()
    if not problems:
        return "webhook install failed: see the CRM page"
    more = f" (and {len(problems) - 1} more on the CRM page)"
    return "webhook install failed: " + problems[0] + (more if len(problems) > 1 else "")


register_on_enable("install-webhook", install_if_never_deployed)
