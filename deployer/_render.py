"""The Jinja environment for the deployer's templates (package data ``deployer.templates``).

XML autoescaping is always on (an ``&`` in an endpoint URL becomes ``&amp;``); undefined
variables are errors; ``xsdbool`` renders booleans in xsd:boolean's canonical lowercase form
(simple-salesforce renders Python's ``True``/``False``: reference
``metadata-simple-salesforce.md`` section 2).
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from typing import Any

import jinja2

__all__ = ["render_template"]


def _xsdbool(value: object) -> str:
    if not isinstance(value, bool):
        raise TypeError(f"xsdbool needs a bool, got {type(value).__name__}")
    return "true" if value else "false"


def _load(name: str) -> str:
    resource = importlib.resources.files("deployer.templates").joinpath(name)
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError as exc:  # pragma: no cover - packaging error
        raise jinja2.TemplateNotFound(name) from exc


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["xsdbool"] = _xsdbool
    return env


def render_template(name: str, **context: Any) -> bytes:
    """Render the template ``name`` (a file in ``templates/``) to UTF-8 bytes."""
    return _environment().get_template(name).render(**context).encode("utf-8")
