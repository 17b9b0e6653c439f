"""The dashboard test harness: an app on the test store with a movable clock, one
organization, one operator, and helpers to sign in, read a page's CSRF token and post forms
the way a browser does (Starlette's TestClient; the browser tests are in
``tests/browser``)."""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from receiver.app import create_app
from receiver.dashboard.operators import add_operator
from receiver.db import transaction
from receiver.organizations import webhook_path
from receiver.settings import Settings
from tests.conftest import MakeOrganization
from tests.factories import make_outbound_message

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = [
    "PASSWORD",
    "Clock",
    "Dash",
    "MakeDash",
    "browser",
    "csrf_of",
    "dash",
    "make_dash",
    "sign_in_with",
]

PASSWORD = "correct horse battery staple"
START = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Clock:
    """A clock the test moves: ``clock()`` is now; ``clock.advance(minutes=5)``."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def csrf_of(html: str) -> str:
    """The first CSRF token of a page (asserts there is one)."""
    match = _TOKEN.search(html)
    assert match is not None, "no csrf_token field on the page"
    return unescape(match.group(1))


@dataclass
class Dash:
    """A running dashboard: ``client`` (cookies kept), ``org`` (its name), ``token`` (its
    webhook token), ``sf_org`` (18-character Salesforce org id), ``clock``."""

    client: TestClient
    engine: Engine
    org: str
    token: str
    sf_org: str
    clock: Clock
    make_organization: Callable[..., Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def sign_in(
        self, username: str = "ops", password: str = PASSWORD, *, next_path: str | None = None
    ) -> Any:
        """Post the sign-in form (asked for with ``next_path`` as its ``next``, if given);
        the answer, not followed."""
        page = self.client.get("/login", params={"next": next_path} if next_path else None)
        assert page.status_code == 200
        data = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
        if next_path is not None:
            data["next"] = next_path
        return self.client.post("/login", data=data, follow_redirects=False)

    def vouch(self, url: str) -> None:
        """Give the client the flash cookie a POST's redirect to ``url`` would set (signed
        with this dashboard's secret), as if that POST had just happened."""
        from receiver.dashboard.rendering import vouching_cookie
        from receiver.dashboard.state import DashboardState

        app_state: Any = self.client.app.state  # type: ignore[attr-defined]
        state = getattr(app_state, "dashboard", None) or DashboardState.build(app_state.context)
        cookie = vouching_cookie(state, url)
        assert cookie is not None, url
        self.client.cookies.set(*cookie)

    def add_operator(self, username: str, *orgs: str, password: str = PASSWORD) -> None:
        with transaction(self.engine) as session:
            add_operator(session, username=username, password=password, organizations=orgs)

    def new_org(self, **kw: Any) -> str:
        with transaction(self.engine) as session:
            org, _ = self.make_organization(session, **kw)
            return str(org.id)

    def add_plan(self, plan_id: str, *, status: str = "planned") -> None:
        """Store an empty reconcile plan of this organization (made an hour before the
        clock's start) with ``status`` (``planned``, ``held``...)."""
        from receiver.reconcile.tables import ReconcilePlanRecord

        with transaction(self.engine) as session:
            session.add(
                ReconcilePlanRecord(
                    id=plan_id,
                    organization_id=self.org,
                    created_at=datetime(2026, 11, 29, 11, 0, tzinfo=UTC),
                    kind="full",
                    status=status,
                    rows=zlib.compress(b'{"rows": [], "notFound": []}'),
                )
            )

    def post_form(
        self, path: str, data: dict[str, str], *, page: str | None = None, **kw: Any
    ) -> Any:
        """POST ``data`` plus the CSRF token of ``page`` (GET first; default: ``path``'s
        page is not always a GET, so give it) without following the redirect."""
        source = self.client.get(page or path)
        return self.client.post(
            path, data={**data, "csrf_token": csrf_of(source.text)}, follow_redirects=False, **kw
        )

    def post_message(
        self,
        *notifications: dict[str, Any],
        org: str | None = None,
        salesforce_org_id: str | None = None,
    ) -> Any:
        """POST an Outbound Message of ``notifications`` to ``org``'s webhook (this
        organization's), from ``salesforce_org_id`` (its own; another one is rejected)."""
        body = make_outbound_message(
            list(notifications), organization_id=salesforce_org_id or self.sf_org
        )
        return self.client.post(
            webhook_path(org or self.org),
            params={"token": self.token},
            content=body,
            headers={"content-type": "text/xml; charset=UTF-8", "soapaction": '""'},
        )


MakeDash = Callable[..., Dash]


def browser(d: Dash, address: str, headers: dict[str, str] | None = None) -> TestClient:
    """Another browser on the same app whose requests come from ``address`` (its own, or
    a reverse proxy's with ``X-Forwarded-For`` in ``headers``)."""
    return TestClient(
        d.client.app, base_url="http://testserver", client=(address, 40000), headers=headers
    )


def sign_in_with(client: TestClient, username: str = "ops", password: str = PASSWORD) -> Any:
    """Post the sign-in form from ``client`` (its token from a GET first); the answer."""
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


@pytest.fixture
def make_dash(
    engine: Engine, database_url: str, make_organization: MakeOrganization, tmp_path: Any
) -> Iterator[MakeDash]:
    """Factory: ``make_dash(*, enabled=True, operator_orgs=None, **settings) -> Dash``: a
    new organization, an operator ``ops`` (every organization, or ``operator_orgs``)."""
    clients: list[TestClient] = []

    def factory(
        *,
        enabled: bool = True,
        operator_orgs: tuple[str, ...] | None = None,
        base_url: str = "http://testserver",
        **settings: Any,
    ) -> Dash:
        with transaction(engine) as session:
            org, token = make_organization(session, enabled=enabled)
            name, sf_org = str(org.id), str(org.salesforce_org_id)
        settings.setdefault("secret_key", "dashboard-test-key")
        app = create_app(
            Settings(database_url=database_url, **settings),
            engine=engine,
            clock=(clock := Clock()),
            run_scheduler=False,  # periodic tasks are tested on their own, not raced here
        )
        client = TestClient(app, base_url=base_url)
        client.__enter__()
        clients.append(client)
        d = Dash(client, engine, name, token, sf_org, clock, make_organization)
        if not clients[:-1]:
            d.add_operator("ops", *(operator_orgs if operator_orgs is not None else ()))
        return d

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def dash(make_dash: MakeDash) -> Dash:
    """An enabled organization and a signed-out client; operator ``ops`` of every org."""
    return make_dash()
