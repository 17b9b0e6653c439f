"""``agent-provision org connect | disconnect`` (CONTRACT section 7): store or forget the
organization's Salesforce connection.

``connect`` logs in with the first complete credential set from the flags or the
environment (never from a stored connection), checks that it reaches the organization's
registered Salesforce org (else exit 5 and nothing is stored, the connection stored before
is kept), asks Salesforce who it is, and stores it encrypted. ``disconnect`` forgets it and
revokes an OAuth refresh token. Heavy imports happen inside the commands so that the
``org`` group stays fast to load.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from receiver.cli._credentials import credential_options
from receiver.cli._options import (
    database_url_option,
    json_option,
    organization_argument,
    secret_key_from,
    store_engine,
)

__all__ = ["connect", "disconnect"]


def _login_url(domain: str) -> str:
    return f"https://{domain}.salesforce.com"


def _secrets(credentials: Any) -> dict[str, str | None]:
    """What a stored connection keeps of each credential kind (encrypted)."""
    from sf_metadata.errors import CredentialsError

    c = credentials
    if c.kind == "session":
        return {"access_token": c.access_token}
    if c.kind == "jwt":
        try:
            key = Path(c.private_key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise CredentialsError(
                f"--private-key-file/SF_PRIVATE_KEY_FILE: cannot read {c.private_key_file}"
            ) from None
        return {
            "username": c.username,
            "consumer_key": c.consumer_key,
            "private_key": key,
            "domain": c.domain,
        }
    if c.kind == "client-credentials":
        return {
            "consumer_key": c.consumer_key,
            "consumer_secret": c.consumer_secret,
            "domain": c.domain,
        }
    return {
        "username": c.username,
        "password": c.password,
        "security_token": c.security_token,
        "domain": c.domain,
    }


@click.command("connect")
@organization_argument
@credential_options
@json_option
@database_url_option
@click.pass_context
def connect(ctx: click.Context, /, organization: str, as_json: bool, **options: str | None) -> None:
    """Log in to Salesforce with the credential flags and store the connection."""
    from deployer.client import OrgClient
    from deployer.credentials import resolve_credentials
    from deployer.package import PINNED_API_VERSION
    from deployer.preflight import check_org
    from receiver.db import transaction
    from receiver.organizations import get_organization
    from receiver.salesforce_connection import connection_info, connection_json, save_connection
    from sf_metadata.errors import PreflightError, SalesforceError

    with store_engine(ctx, organization) as engine:
        key = secret_key_from(ctx)
        with transaction(engine, read_only=True) as session:
            expected = get_organization(session, organization).salesforce_org_id
        credentials = resolve_credentials(options, os.environ)
        secrets = _secrets(credentials)
        client = OrgClient(credentials, api_version=PINNED_API_VERSION)
        org_id, sandbox, problems = check_org(client, expected)
        if problems:
            raise PreflightError(problems[0], problems=problems)
        try:
            info = client.userinfo()
        except SalesforceError:
            info = {}
        instance_url = f"https://{client.instance_host}"
        login_url = (
            instance_url if credentials.kind == "session" else _login_url(credentials.domain)
        )
        with transaction(engine) as session:
            save_connection(
                session,
                organization=organization,
                kind=credentials.kind,
                instance_url=instance_url,
                salesforce_org_id=org_id or expected,
                is_sandbox=bool(sandbox),
                username=info.get("preferred_username") or credentials.username,
                user_id=info.get("user_id"),
                login_url=login_url,
                secrets=secrets,
                key=key,
                now=datetime.now(UTC),
            )
            stored = connection_info(session, organization)
    out = connection_json(stored)
    assert out is not None and stored is not None
    if as_json:
        payload = {
            "organization": organization,
            "salesforceConnection": out,
            "salesforceOrgId": stored.salesforce_org_id,
            "isSandbox": stored.is_sandbox,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    where = "sandbox" if stored.is_sandbox else "production org"
    click.echo(
        f"connected {organization} to the {where} {stored.salesforce_org_id} at "
        f"{out['instanceUrl']} as {out['username'] or 'an unknown user'} ({out['kind']})"
    )


@click.command("disconnect")
@organization_argument
@database_url_option
@click.pass_context
def disconnect(ctx: click.Context, /, organization: str) -> None:
    """Forget the stored Salesforce connection (and revoke an OAuth token)."""
    import requests

    from receiver.db import transaction
    from receiver.organizations import get_organization
    from receiver.salesforce_connection import delete_connection, read_secrets
    from receiver.salesforce_login import revoke_token

    with store_engine(ctx, organization) as engine:
        key = secret_key_from(ctx)
        with transaction(engine) as session:
            get_organization(session, organization)
            row = delete_connection(session, organization)
            secrets = read_secrets(row, key) if row is not None and row.kind == "oauth" else {}
            login_url = row.login_url if row is not None else None
    if row is None:
        click.echo(f"{organization} has no stored Salesforce connection: nothing to forget")
        return
    token = secrets.get("refresh_token") or secrets.get("access_token")
    if token and login_url:
        revoked = revoke_token(requests.Session(), login_url, token)
        if not revoked:
            click.echo(
                "warning: Salesforce did not confirm the token's revocation: revoke it in "
                "Setup > Connected Apps OAuth Usage",
                err=True,
            )
    click.echo(f"disconnected {organization} from Salesforce")
