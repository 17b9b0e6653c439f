"""``agent-provision users ORGANIZATION [--json]``: the provisioned agents (CONTRACT
section 4). ``--json`` prints a JSON array of agent objects (CONTRACT section 2) sorted by
``crmId`` in byte order; otherwise a human table."""

from __future__ import annotations

import json

import click

from receiver.agents import list_agents
from receiver.cli._options import (
    database_url_option,
    json_option,
    organization_argument,
    read_session,
)
from sf_metadata.mapping import AgentRecord

__all__ = ["users"]


def _phones(agent: AgentRecord) -> str:
    return ", ".join(f"{p.type} {p.number}" for p in agent.phone_numbers) or "-"


@click.command()
@organization_argument
@json_option
@database_url_option
@click.pass_context
def users(ctx: click.Context, organization: str, as_json: bool) -> None:
    """List the provisioned agents of ORGANIZATION."""
    with read_session(ctx, organization) as session:
        agents = list_agents(session, organization_id=organization)
    if as_json:
        click.echo(json.dumps([a.to_json() for a in agents], indent=2, ensure_ascii=False))
        return
    if not agents:
        click.echo(f"organization {organization} has no provisioned agents")
        return
    rows = [
        (
            a.crm_id,
            a.username or "-",
            a.name or "-",
            "disabled" if a.disabled else "enabled",
            _phones(a),
        )
        for a in agents
    ]
    header = ("CRM ID", "USERNAME", "NAME", "STATUS", "PHONES")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(4)]
    click.echo(
        "  ".join(h.ljust(w) for h, w in zip(header[:4], widths, strict=True)) + "  " + header[4]
    )
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
