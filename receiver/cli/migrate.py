"""``agent-provision migrate``: bring an existing store to this release's schema, and
nothing else (an upgrade's one step, before the new ``serve`` starts; ``scripts/demo``
runs it on every start). ``serve`` and every command that writes migrate too; the
commands that only read do not (README "Command line").

Prints ``store URL: schema revision OLD -> NEW`` (or ``... is at revision NEW``), the URL
without its password. A missing store is an error (exit 2; nothing is created: ``org
add`` or ``serve --new-store`` makes one); 75 when it cannot be reached.
"""

from __future__ import annotations

import click

from receiver.cli._options import database_url_option, settings_from

__all__ = ["migrate"]


@click.command("migrate")
@database_url_option
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Migrate the store to this release's schema (nothing else changes)."""
    from sqlalchemy.engine import make_url

    from receiver.db import current_revision, open_existing
    from receiver.db import migrate as migrate_store
    from sf_metadata.errors import StoreOutdated

    url = settings_from(ctx).database_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = open_existing(url)
    except StoreOutdated:
        from receiver.db import make_engine

        engine = make_engine(url)
    try:
        before = current_revision(engine)
        migrate_store(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"store {shown} is at schema revision {after}")
    else:
        click.echo(f"store {shown}: schema revision {before} -> {after}")
