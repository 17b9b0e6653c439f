"""One typed settings object, read once at startup (pydantic-settings).

Every value comes from a constructor argument (the CLI passes its flags), else from the
environment variable named beside it, else from the default. Nothing mutates a
:class:`Settings` after it is built.

| field | environment variable | default |
|---|---|---|
| ``database_url`` | ``AGENT_PROVISION_DATABASE_URL`` | ``sqlite:///agent_provision.db`` (relative to the working directory) |
| ``admin_token`` | ``AGENT_PROVISION_ADMIN_TOKEN`` | none: the admin JSON API answers 401 |
| ``max_body_bytes`` | ``AGENT_PROVISION_MAX_BODY_BYTES`` | 5 MiB (5,242,880 bytes) |
| ``processed_retention_hours`` | ``AGENT_PROVISION_PROCESSED_RETENTION_HOURS`` | 168 (7 days); at least 48 |
| ``header_timeout`` | ``AGENT_PROVISION_HEADER_TIMEOUT`` | 10 s: a connection's request line and headers must arrive within it (``receiver.http_limits``) |
| ``max_connections`` | ``AGENT_PROVISION_MAX_CONNECTIONS`` | none: the file-descriptor limit minus a reserve, at most 4096 per worker |
| ``provisioning_log_retention_days`` | ``AGENT_PROVISION_PROVISIONING_LOG_RETENTION_DAYS`` | 90; more than 0 (``receiver.maintenance``) |
| ``secret_key`` | ``AGENT_PROVISION_SECRET_KEY`` | none: a Fernet key is generated and kept beside the store (see ``receiver.secrets``) |
| ``salesforce_client_id`` | ``AGENT_PROVISION_SALESFORCE_CLIENT_ID`` | none: Connect to Salesforce is off; the External Client App's consumer key |
| ``salesforce_client_secret`` | ``AGENT_PROVISION_SALESFORCE_CLIENT_SECRET`` | none (a public client with PKCE) |
| ``salesforce_login_urls`` | ``AGENT_PROVISION_SALESFORCE_LOGIN_URLS`` | none: comma-separated login URLs accepted beside Salesforce's own hosts (CONTRACT section 7) |
| ``log_level`` | ``AGENT_PROVISION_LOG_LEVEL`` | ``info`` (one of critical, error, warning, info, debug) |
| ``public_url`` | ``AGENT_PROVISION_PUBLIC_URL`` | none: ``http://{host}:{port}`` of ``serve``; the dashboard cookie is ``Secure`` when it is https |
| ``dashboard_idle_minutes`` | ``AGENT_PROVISION_DASHBOARD_IDLE_MINUTES`` | 60: a dashboard session unused this long ends; at least 1 |
| ``dashboard_session_hours`` | ``AGENT_PROVISION_DASHBOARD_SESSION_HOURS`` | 12: a dashboard session ends this long after sign-in; more than 0 |
| ``dashboard_reload_seconds`` | ``AGENT_PROVISION_DASHBOARD_RELOAD_SECONDS`` | 2: while a Refresh Webhook runs, the CRM page reloads itself this often (whole seconds, a meta refresh); at least 1 |
| ``trusted_proxies`` | ``AGENT_PROVISION_TRUSTED_PROXIES`` | none: comma-separated addresses or networks of reverse proxies whose ``X-Forwarded-For`` (and ``X-Forwarded-Proto``) give the client's address (the sign-in throttle, the switch's audit); anyone else's are ignored |
| ``deploy_poll_seconds`` | ``AGENT_PROVISION_DEPLOY_POLL_SECONDS`` | 1.0: a Refresh Webhook started by the CRM page's button or by the install on enable first waits this long between two ``checkDeployStatus`` calls, each next wait 1.5 times longer, up to 15 s (``deployer.deploy.Timing``); more than 0 |
"""

from __future__ import annotations

import math

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.store_probe import DEFAULT_DATABASE_URL

__all__ = ["DEFAULT_DATABASE_URL", "LOG_LEVELS", "Settings", "psycopg_url"]


def psycopg_url(url: str) -> str:
    """``url`` with ``postgres://`` / ``postgresql://`` rewritten to the psycopg 3 driver
    (``postgresql+psycopg://``, the driver this project installs); any other URL as is."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class Settings(BaseSettings):
    """The receiver's and CLI's configuration. Frozen once built."""

    model_config = SettingsConfigDict(env_prefix="AGENT_PROVISION_", frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    processed_retention_hours: float = Field(default=168.0, ge=48.0)
    provisioning_log_retention_days: float = Field(default=90.0, gt=0.0)
    header_timeout: float = Field(default=10.0, gt=0.0)
    max_connections: int | None = Field(default=None, gt=0)
    secret_key: SecretStr | None = None
    log_level: str = "info"
    public_url: str | None = None
    dashboard_idle_minutes: float = 60.0
    dashboard_session_hours: float = 12.0
    dashboard_reload_seconds: int = Field(default=2, ge=1)
    deploy_poll_seconds: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_login_urls: str = ""
    trusted_proxies: str = ""

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        """Rewrite ``postgres://`` and ``postgresql://`` to the psycopg 3 driver URL."""
        return psycopg_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        """Comma-separated IP addresses or networks, normalised (``192.0.2.1/24`` reads as
        ``192.0.2.0/24``); no host names and no ``*``: a proxy is trusted by address."""
        import ipaddress

        items = []
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                items.append(
                    str(ipaddress.ip_network(item, strict=False))
                    if "/" in item
                    else str(ipaddress.ip_address(item))
                )
            except ValueError:
                raise ValueError(
                    f"trusted proxies are IP addresses or networks (such as 10.0.0.7 or "
                    f"10.0.0.0/24), not {item[:60]!r}"
                ) from None
        return ",".join(items)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """One of uvicorn's and logging's level names, lower case."""
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("dashboard_idle_minutes")
    @classmethod
    def _idle_minutes(cls, value: float) -> float:
        """At least one minute, finite: a shorter idle lifetime would end sessions while
        their operator reads a page (and fractions of a minute are easy to mistype for
        hours or seconds)."""
        if not math.isfinite(value) or value < 1:
            raise ValueError(
                f"the dashboard idle lifetime is in minutes and must be at least 1 (got {value:g})"
            )
        return value

    @field_validator("dashboard_session_hours")
    @classmethod
    def _session_hours(cls, value: float) -> float:
        """More than 0 and finite."""
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"the dashboard session lifetime is in hours and must be more than 0 (got {value:g})"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        """An absolute http(s) URL without a trailing slash, or ``None``."""
        if value is None or not value.strip():
            return None
        from urllib.parse import urlsplit

        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the public URL must be an absolute http or https URL")
        return url

    @field_validator(
        "admin_token",
        "secret_key",
        "salesforce_client_id",
        "salesforce_client_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value
