"""The admin dashboard (CONTRACT section 5): server-rendered Jinja pages, plain forms,
Post/Redirect/Get, a CSRF token in every form, one stylesheet, no JavaScript needed.

Modules:

- ``tables``: the store tables of the dashboard (operators, their organizations, signed-in
  sessions, failed sign-ins) and the extra indexes the pages read through.
- ``operators``: operator store functions (add, list, remove, set password, verify).
- ``auth``: the session cookie, sign-in and sign-out, the throttle of wrong passwords.
- ``csrf``: the form token and the Origin / Sec-Fetch-Site check.
- ``framework``: :func:`~receiver.dashboard.framework.render`,
  :func:`~receiver.dashboard.framework.org_route` (sign-in, organization access, CSRF, in
  that order) and the error pages; how another module adds a page is in its docstring.
- ``site``: every dashboard route, collected for ``receiver.app.create_app``.
- pages: ``home``, ``users``, ``features``, ``log``, ``crm``, ``reconcile``.

This package's ``__init__`` imports nothing, so that ``receiver.migrations.env`` can import
``receiver.dashboard.tables`` without loading Starlette or Jinja.
"""
