"""An organization's name and webhook address (CONTRACT sections 1 and 3), with the
standard library only, so that the CLI checks a name and prints a webhook URL without
loading the store's models (``receiver.quick_read``). ``receiver.organizations`` uses and
re-exports these."""

from __future__ import annotations

import re

from sf_metadata.errors import InvalidOrganizationName

__all__ = ["DEFAULT_BASE_URL", "validate_organization_name", "webhook_path", "webhook_url_for"]

#: Where Salesforce reaches this service unless ``org add --base-url`` says otherwise.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def validate_organization_name(name: str) -> str:
    """``name`` unchanged if it is 1-63 of ``[a-z0-9-]`` starting with ``[a-z0-9]``.

    Raises :class:`~sf_metadata.errors.InvalidOrganizationName`.
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidOrganizationName(
            f"organization name {name!r} is invalid: use 1 to 63 lowercase letters, digits and "
            "hyphens, starting with a letter or digit"
        )
    return name


def webhook_path(name: str) -> str:
    """The route path for organization ``name`` (no query string)."""
    return f"/v2/features/agent-auto-provision/organizations/{name}/integrations/provider/webhook"


def webhook_url_for(base_url: str, name: str, token: str) -> str:
    """The endpoint URL Salesforce posts to, token included (a secret: print, never log)."""
    return f"{base_url}{webhook_path(name)}?token={token}"
