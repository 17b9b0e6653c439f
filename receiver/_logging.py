"""Process logging for the receiver: access logs that never show a query string.

The webhook URL carries its secret in the query string (``?token=...``, CONTRACT section
3), and uvicorn's access logger formats the full path with its query. This module keeps
tokens out of every log line in two ways:

- :class:`StripQueryFilter` rewrites uvicorn access records (``record.args`` is
  ``(client_addr, method, full_path, http_version, status_code)``, see
  ``uvicorn.protocols.http.*`` ``access_logger.info('%s - "%s %s HTTP/%s" %d', ...)``)
  so the path is logged without its query string, and an agent session id in the path
  (``/v2/sessions/{sessionId}``, the host app's handle: CONTRACT 3 "Neither log holds
  SessionId values") as ``/v2/sessions/[redacted]``;
- :class:`RedactSecretsFilter` replaces any ``token=...`` / ``Bearer ...`` left in a
  formatted message by ``token=[redacted]`` (belt and braces, for every handler).

:func:`uvicorn_log_config` returns the ``log_config`` dict for ``uvicorn.run`` with both
filters installed and the ``agent_provision`` loggers routed to stderr.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

__all__ = [
    "LOGGER_NAME",
    "RedactSecretsFilter",
    "StripQueryFilter",
    "access_path",
    "redact",
    "strip_query",
    "uvicorn_log_config",
]

#: The receiver's process logger (webhook rejections, 503s, startup).
LOGGER_NAME = "agent_provision.receiver"

_SECRET_PATTERNS = (
    (re.compile(r"(?i)(token(?:=|%3D))[^&\s\"']*"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"']+"), r"\1[redacted]"),
)


def strip_query(path: str) -> str:
    """Return ``path`` without its query string (``/a/b?token=x`` -> ``/a/b``); a
    percent-encoded ``?`` (``%3F``) counts too, so a token pasted into the path is cut."""
    cut = path.split("?", 1)[0]
    encoded = cut.lower().find("%3f")
    return cut if encoded < 0 else cut[:encoded]


_SESSION_PATH = re.compile(r"^(/v2/sessions/)[^/]+")


def access_path(path: str) -> str:
    """The path as the access log shows it: :func:`strip_query`, then a session id in
    ``/v2/sessions/{sessionId}`` replaced by ``[redacted]``."""
    return _SESSION_PATH.sub(r"\1[redacted]", strip_query(path))


def redact(text: str) -> str:
    """Replace ``token=VALUE`` and ``Bearer VALUE`` in ``text`` by ``[redacted]``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class StripQueryFilter(logging.Filter):
    """Logging filter for ``uvicorn.access``: log :func:`access_path` of the path (no query
    string, no session id).

    Never rejects a record; only rewrites its third argument when it is a string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], access_path(args[2]), *args[3:])
        return True


class RedactSecretsFilter(logging.Filter):
    """Logging filter for any handler: formats the record's message once and redacts
    ``token=...`` and ``Bearer ...`` values from it. Never rejects a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """The ``log_config`` for ``uvicorn.run``: uvicorn's default config plus the two
    filters above on every handler, and a stderr handler for ``agent_provision``.

    ``level`` is a logging level name (``debug``, ``info``, ``warning``...).
    Source of the base: ``uvicorn.config.LOGGING_CONFIG``.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "strip_query": {"()": "receiver._logging.StripQueryFilter"},
        "redact": {"()": "receiver._logging.RedactSecretsFilter"},
    }
    config["handlers"]["access"]["filters"] = ["strip_query", "redact"]
    config["handlers"]["default"]["filters"] = ["redact"]
    config["loggers"]["agent_provision"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
