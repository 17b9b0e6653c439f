"""How the dashboard sets and clears its cookies (a leaf module): every one ``HttpOnly``,
``SameSite=Lax`` and, when served over https, ``Secure``; cleared with the same attributes
it was set with, since a browser ignores the clearing of a ``__Host-`` cookie that lacks
``Secure`` (RFC 6265bis 4.1.3.2) and keeps the old one."""

from __future__ import annotations

from starlette.responses import Response

__all__ = ["clear_private_cookie", "set_private_cookie"]


def set_private_cookie(
    response: Response, name: str, value: str, *, max_age: int, path: str, secure: bool
) -> None:
    """Set cookie ``name`` for ``path``; ``max_age`` in seconds; ``secure``: served over
    https."""
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="lax", secure=secure
    )


def clear_private_cookie(response: Response, name: str, *, path: str, secure: bool) -> None:
    """Clear cookie ``name`` as :func:`set_private_cookie` set it."""
    response.delete_cookie(name, path=path, httponly=True, samesite="lax", secure=secure)
