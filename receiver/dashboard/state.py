"""Per-app state of the dashboard, built on first use from ``app.state.context``.

- ``secret``: the dashboard key (32 bytes), HMAC-SHA256 of the store's Fernet key
  (``receiver.secrets.load_key``) with a fixed label, so it survives restarts, is shared by
  every ``serve`` worker, and changes when the store's key is rotated.
- ``templates``: the Jinja environment of ``templates/dashboard/`` (shipped as package data
  of ``deployer.templates``, the package the top-level ``templates/`` directory is), with
  autoescape on for every template, and bidirectional control characters shown as their
  code point (``[U+202E]``).
- ``public_origin`` and ``secure_cookie`` from ``AGENT_PROVISION_PUBLIC_URL``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
from starlette.requests import Request

from receiver.dashboard.csrf import origin_of

if TYPE_CHECKING:
    from receiver.context import ReceiverContext

__all__ = ["SHOWN_AS_CODE_POINTS", "DashboardState", "get_state", "templates_dir"]


def templates_dir() -> Path:
    """The directory of the dashboard's templates and stylesheet."""
    return Path(str(importlib.resources.files("deployer.templates").joinpath("dashboard")))


def _localtime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _isotime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: Characters shown as their code point (``[U+202E]``) on the pages and in the CSV
#: downloads (the JSON downloads keep the text as stored): the bidirectional embeddings,
#: overrides and isolates (U+202A-U+202E, U+2066-U+2069), which in a Salesforce Name would
#: reorder what the page shows (``\u202emoc.elpmaxe@nimda`` reads as ``admin@example.com``),
#: the bidirectional marks (U+200E, U+200F, U+061C), and the invisible characters that
#: make two names look the same: the C1 controls (U+0080-U+009F), the soft hyphen
#: (U+00AD), the combining grapheme joiner (U+034F), the Hangul fillers (U+115F, U+1160,
#: U+3164, U+FFA0), the Khmer inherent vowels (U+17B4, U+17B5), the Mongolian vowel
#: separator (U+180E), the zero-width space (U+200B), the line and paragraph separators
#: (U+2028, U+2029), the invisible operators (U+2060-U+2064), the byte order mark (U+FEFF)
#: and the tag characters (U+E0000-U+E007F). Left alone, because names need them: the
#: joiners (U+200C, U+200D: Persian, Hindi, emoji) and the variation selectors (emoji,
#: ideographic variants of Japanese names).
SHOWN_AS_CODE_POINTS = {
    c: f"[U+{c:04X}]"
    for c in (
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        0x200E,
        0x200F,
        0x061C,
        *range(0x80, 0xA0),
        0xAD,
        0x034F,
        0x115F,
        0x1160,
        0x3164,
        0xFFA0,
        0x17B4,
        0x17B5,
        0x180E,
        0x200B,
        0x2028,
        0x2029,
        *range(0x2060, 0x2065),
        0xFEFF,
        *range(0xE0000, 0xE0080),
    )
}


def _action_pill(action: str | None) -> str:
    """The pill colour of a provisioning log action, the same on every page: ``ok`` for
    what was applied (created, updated, restored), ``bad`` for failed, ``off`` for the rest
    (deprovisioned, duplicate, stale, ignored)."""
    if action == "failed":
        return "bad"
    return "ok" if action in ("created", "updated", "restored") else "off"


#: What a reconcile plan's kind reads as on the pages.
_PLAN_KINDS = {"full": "full", "incremental": "incremental", "chosen": "chosen users: Sync now"}


def _plan_kind(kind: str) -> str:
    """A plan's kind as the pages name it (``chosen``: a Sync now, or ``reconcile run
    --user``)."""
    return _PLAN_KINDS.get(kind, kind)


def _shown(value: Any) -> Any:
    """Every ``{{ value }}``: text with its bidirectional controls and invisible characters
    made visible (:data:`SHOWN_AS_CODE_POINTS`; markup the templates build, such as the CSRF field,
    as it is)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return value.translate(SHOWN_AS_CODE_POINTS)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        finalize=_shown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _localtime
    env.filters["iso"] = _isotime
    env.filters["action_pill"] = _action_pill
    env.filters["plan_kind"] = _plan_kind
    return env


@dataclass(frozen=True, slots=True)
class DashboardState:
    """See the module docstring. Lifetimes are ``timedelta``."""

    secret: bytes
    templates: jinja2.Environment
    public_origin: str | None
    secure_cookie: bool
    idle_lifetime: timedelta
    absolute_lifetime: timedelta

    @classmethod
    def build(cls, context: ReceiverContext) -> DashboardState:
        """Read the key and settings of ``context``. Raises
        :class:`~sf_metadata.errors.CredentialsError` when the key cannot be read."""
        from receiver.secrets import load_key

        settings = context.settings
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        key = load_key(settings.database_url, secret)
        public = settings.public_url
        return cls(
            secret=hmac.new(key, b"agent-provision dashboard v1", hashlib.sha256).digest(),
            templates=_environment(),
            public_origin=origin_of(public) if public else None,
            secure_cookie=bool(public and public.lower().startswith("https://")),
            idle_lifetime=timedelta(minutes=settings.dashboard_idle_minutes),
            absolute_lifetime=timedelta(hours=settings.dashboard_session_hours),
        )


def get_state(request: Request) -> DashboardState:
    """The app's :class:`DashboardState` (built once per app)."""
    app_state: Any = request.app.state
    state = getattr(app_state, "dashboard", None)
    if state is None:
        state = DashboardState.build(app_state.context)
        app_state.dashboard = state
    return state
