"""Dashboard page times at scale: the Users page (first page, a deep page, Next/Previous,
searches through the trigram index that match 10 %, one agent, none or every agent, and
searches of 1 or 2 characters, shorter than a trigram) and the Provisioning log (first
page, failed only, one Salesforce user, a date range, older pages), the agent page and
the CRM page, on a store holding ``--agents`` agents (default 100,000) and ``--log-rows``
notification rows (default 1,000,000, in messages of 10 notifications).

Each page is requested ``--rounds`` times through the real app (Starlette TestClient,
signed in, full stack: cookie check, org check, query, template); prints p50 and p95 in
milliseconds per page. Stores: ``sqlite`` (a temporary file) and, when
``AGENT_PROVISION_TEST_POSTGRES_URL`` is set, ``postgresql`` (a new database, dropped
afterwards)::

    .venv/bin/python -m bench.dashboard_pages [--agents 100000] [--log-rows 1000000]
        [--rounds 30] [--store sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from pydantic import SecretStr

from bench._messages import sf_id
from bench._stores import fresh_store, postgres_server_url
from receiver.agent_search import insert_agents
from receiver.app import create_app
from receiver.dashboard.operators import add_operator, use_hasher
from receiver.db import make_engine, migrate, transaction
from receiver.models import ProvisioningEvent, ProvisioningMessage
from receiver.organizations import add_organization
from receiver.secrets import new_token
from receiver.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ORG = "bench"
ORG_ID = "00D000000000001EAA"
PASSWORD = "bench password long enough"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Niklaus",
    "Radia",
]
_LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Wirth",
    "Perlman",
]


def say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - a bench prints its figures


def _seed(url: str, agents: int, log_rows: int) -> None:
    engine = make_engine(url)
    migrate(engine)
    with transaction(engine) as session:
        add_organization(session, name=ORG, salesforce_org_id=ORG_ID, key=_key())
        add_operator(session, username="ops", password=PASSWORD)
    message = ProvisioningMessage.__table__  # type: ignore[attr-defined]
    event = ProvisioningEvent.__table__  # type: ignore[attr-defined]
    batch = 5000
    for start in range(0, agents, batch):
        rows = []
        for i in range(start, min(agents, start + batch)):
            crm = sf_id("005", i)
            name = f"{_FIRST[i % 10]} {_LAST[(i // 10) % 10]} {i:06d}"
            rows.append(
                {
                    "id": f"{i:032x}",
                    "organization_id": ORG,
                    "crm_id": crm,
                    "username": f"user{i:06d}@acme.com",
                    "username_key": f"user{i:06d}@acme.com",
                    "system_modstamp": T0,
                    "data": {
                        "username": f"user{i:06d}@acme.com",
                        "crmId": crm,
                        "name": name,
                        "disabled": i % 7 == 0,
                        "inboundEnabled": i % 7 != 0,
                        "crm": {"callCenterId": None if i % 7 == 0 else sf_id("04v", 1)},
                    },
                    "created_at": T0,
                    "updated_at": T0,
                }
            )
        with transaction(engine) as session:
            insert_agents(session, rows)
    per_message = 10
    messages = log_rows // per_message
    mid = 0
    for start in range(0, messages, batch // per_message * 10):
        mrows, erows = [], []
        for m in range(start, min(messages, start + batch // per_message * 10)):
            mid = m + 1
            mrows.append(
                {
                    "id": mid,
                    "organization_id": ORG,
                    "received_at": T0 + timedelta(seconds=30 * m),
                    "outcome": "processed",
                    "notification_count": per_message,
                }
            )
            for p in range(per_message):
                n = m * per_message + p
                failed = n % 997 == 0
                erows.append(
                    {
                        "message_id": mid,
                        "position": p,
                        "notification_id": sf_id("04l", n),
                        "crm_id": sf_id("005", n % max(agents, 1)),
                        "action": "failed" if failed else ("updated" if n % 3 else "created"),
                        "reason": "IsActive is missing"
                        if failed
                        else "IsActive is true: agent updated",
                    }
                )
        with transaction(engine) as session:
            session.execute(message.insert(), mrows)
            session.execute(event.insert(), erows)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _key() -> bytes:
    from cryptography.fernet import Fernet

    return Fernet.generate_key()


def _client(url: str) -> TestClient:
    app = create_app(Settings(database_url=url, secret_key=SecretStr(new_token())))
    client = TestClient(app)
    client.__enter__()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    signed = client.post(
        "/login",
        data={"username": "ops", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    return client


def _next_link(html: str, label: str) -> str | None:
    match = re.search(rf'href="([^"]+)">{label}<', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _time(client: TestClient, path: str, rounds: int) -> tuple[float, float, int]:
    samples = []
    status = 0
    for _ in range(rounds):
        t = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        status = response.status_code
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return statistics.median(samples), p95, status


def run(kind: str, agents: int, log_rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_store(kind, Path(tmp)) as url:
        t = time.perf_counter()
        _seed(url, agents, log_rows)
        say(
            f"{kind}: seeded {agents:,} agents and {log_rows:,} log rows in {time.perf_counter() - t:.0f} s"
        )
        client = _client(url)
        base = f"/organizations/{ORG}"
        users = client.get(base + "/users").text
        page2 = _next_link(users, "Next") or base + "/users"
        deep = base + "/users?after=" + _cursor("radia perlman 099", "")
        log = client.get(base + "/provisioning-log").text
        older = _next_link(log, "Older") or base + "/provisioning-log"
        pages = {
            "users: first page": base + "/users",
            "users: Next": page2,
            "users: deep page (keyset)": deep,
            "users: search 'hopper' (10% match)": base + "/users?q=hopper",
            "users: search 'user099999' (one match)": base + "/users?q=user099999",
            "users: search 'zzz' (no match)": base + "/users?q=zzz",
            "users: search 'acme' (every agent)": base + "/users?q=acme",
            "users: search 'zq' (2 characters, no match)": base + "/users?q=zq",
            "users: search 'a' (1 character, most match)": base + "/users?q=a",
            "agent page (timeline)": base + "/users/" + sf_id("005", 4242),
            "log: first page": base + "/provisioning-log",
            "log: Older": older,
            "log: failed only": base + "/provisioning-log?action=failed",
            "log: one Salesforce user": base + "/provisioning-log?user=" + sf_id("005", 4242),
            "log: one day": base + "/provisioning-log?from=2026-01-20&to=2026-01-20",
            "crm page": base + "/settings/crm",
        }
        say(f"{'page':<46} {'p50 ms':>8} {'p95 ms':>8}")
        for label, path in pages.items():
            p50, p95, status = _time(client, path, rounds)
            flag = "" if status == 200 else f"  (HTTP {status})"
            say(f"{label:<46} {p50:>8.1f} {p95:>8.1f}{flag}")
        client.__exit__(None, None, None)


def _cursor(name_key: str, crm_id: str) -> str:
    from receiver.dashboard.directory import encode_cursor

    return encode_cursor(name_key, crm_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args(argv)
    use_hasher(PasswordHasher.from_parameters(CHEAPEST))
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    for kind in kinds:
        if kind == "postgresql" and postgres_server_url() is None:
            say("postgresql: skipped (AGENT_PROVISION_TEST_POSTGRES_URL is not set)")
            continue
        run(kind, args.agents, args.log_rows, args.rounds)


if __name__ == "__main__":
    main()
