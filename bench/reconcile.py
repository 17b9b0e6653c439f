"""Reconcile benchmark (issue 10). Run from the repo root::

    .venv/bin/python -m bench.reconcile                 # 50,000 users, SQLite
    .venv/bin/python -m bench.reconcile --users 5000 --page-size 2000

Generates N User records (SOQL JSON as the REST query resource returns them: every field
of the Outbound Message, two custom fields, unique usernames, 5 % inactive) as pages of
``--page-size`` records with ``nextRecordsUrl``, serves them over HTTP on 127.0.0.1 (a
``ThreadingHTTPServer`` with the pages rendered beforehand), and measures, on a temporary
SQLite store with one enabled organization:

- ``floor``: fetch every page with ``requests`` and ``json.loads`` it (nothing else: the
  least a reconcile must do);
- ``full run``: ``receiver.reconcile.run.reconcile`` on an empty store (read, map, plan,
  store the plan, decide again under the lock, apply through ``apply_decisions``);
- ``second run``: the same read again with nothing changed.

Prints each time, its ratio to the floor (targets: full run <= 2x, second run <= 1.2x),
the same in process CPU seconds (a loaded machine stretches wall clock, not CPU), the
seconds per phase (reading / planning / applying) and per step (the functions of
``receiver.reconcile`` timed in place), the API calls counted, the peak RSS of this
process (``resource.getrusage``, includes the generated pages) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
import requests  # noqa: E402

from deployer.users import CallCounter, StaticSession, UserReader  # noqa: E402
from sf_metadata.ids import checksum_suffix  # noqa: E402

__all__ = ["main", "make_records"]

ORG_ID15 = "00DBe0000000042"
ORG_ID = ORG_ID15 + checksum_suffix(ORG_ID15)
API = "62.0"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _id(prefix: str, n: int) -> str:
    id15 = f"{prefix}Be{n:010d}"
    return id15 + checksum_suffix(id15)


def make_records(n: int) -> list[dict[str, Any]]:
    """``n`` User records (module docstring), ordered by Id."""
    stamp = "2026-11-20T10:00:00.000+0000"
    call_center = _id("04v", 1)
    profile = _id("00e", 1)
    role = _id("00E", 1)
    out = []
    for i in range(1, n + 1):
        user_id = _id("005", i)
        out.append(
            {
                "attributes": {
                    "type": "User",
                    "url": f"/services/data/v{API}/sobjects/User/{user_id}",
                },
                "Id": user_id,
                "SystemModstamp": stamp,
                "LastModifiedDate": stamp,
                "CallCenterId": call_center if i % 3 else None,
                "Email": f"agent{i}@acme-corp.com",
                "FirstName": "Agent",
                "IsActive": i % 20 != 0,
                "LanguageLocaleKey": "en_US",
                "LastName": f"Number{i}",
                "MobilePhone": f"+1 415 555 {i % 10000:04d}",
                "Name": f"Agent Number{i}",
                "Phone": None,
                "ProfileId": profile,
                "SmallPhotoUrl": f"https://acme-corp.file.force.com/profilephoto/005/T/{i}",
                "UserRoleId": role if i % 2 else None,
                "UserType": "Standard",
                "Username": f"agent{i}@acme-corp.com",
                "Team__c": f"team-{i % 40}",
                "Skill_Level__c": i % 5,
            }
        )
    return out


def render_pages(records: list[dict[str, Any]], page_size: int) -> list[bytes]:
    pages = []
    for start in range(0, len(records), page_size):
        chunk = records[start : start + page_size]
        end = start + len(chunk)
        page: dict[str, Any] = {
            "totalSize": len(records),
            "done": end >= len(records),
            "records": chunk,
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{API}/query/01gBENCH-{end // page_size}"
        pages.append(json.dumps(page).encode())
    return pages


@contextmanager
def serve(pages: list[bytes]) -> Iterator[str]:
    """Serve the pages (and the Organization check, describe User) on 127.0.0.1."""
    org = json.dumps({"totalSize": 1, "done": True, "records": [{"Id": ORG_ID}]}).encode()
    describe = json.dumps(
        {
            "fields": [
                {"name": "Team__c", "custom": True, "type": "string", "length": 80},
                {"name": "Skill_Level__c", "custom": True, "type": "double"},
            ]
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this a small answer (the
        # Organization check, describe) waits for the client's delayed ACK (about 40 ms).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.endswith("/sobjects/User/describe"):
                body = describe
            elif parts.path.endswith("/query"):
                soql = parse_qs(parts.query)["q"][0]
                body = org if "FROM Organization" in soql else pages[0]
            else:
                body = pages[int(parts.path.rsplit("-", 1)[1])]
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: Process CPU seconds of the best floor measured (the server thread's included, as in a
#: run), for the CPU ratios printed beside the wall-clock ones.
FLOOR_CPU: list[float] = []


def floor(base_url: str, loads: Any = json.loads) -> float:
    """Seconds to fetch every page and ``json.loads`` it (or ``loads`` it); the process
    CPU seconds of the fastest call are kept in :data:`FLOOR_CPU`."""
    http = requests.Session()
    started, cpu = time.perf_counter(), time.process_time()
    path: str | None = f"/services/data/v{API}/query?q=SELECT+Id+FROM+User"
    while path is not None:
        body = loads(http.get(base_url + path, headers={"Accept": "application/json"}).content)
        path = None if body["done"] else body["nextRecordsUrl"]
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if loads is json.loads and (not FLOOR_CPU or cpu < FLOOR_CPU[0]):
        FLOOR_CPU[:] = [cpu]
    return elapsed


class Phases:
    """A ProgressSink recording when each phase started."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def phase(self, name: str) -> None:
        self.marks.append((name, time.perf_counter()))

    def total(self, users: int) -> None:
        pass

    def advance(self, users: int) -> None:
        pass

    def report(self, end: float) -> str:
        parts = []
        for (name, at), (_, nxt) in zip(self.marks, [*self.marks[1:], ("", end)], strict=True):
            parts.append(f"{name} {nxt - at:.2f}s")
        return ", ".join(parts)


class Steps:
    """Wall and process CPU seconds spent in the named steps of a run (the functions of
    ``receiver.reconcile`` and the reader's page fetch wrapped in place for the run;
    none called per record, which the timing itself would slow)."""

    NAMES = (
        ("receiver.reconcile.run", "load_snapshot", "load digests"),
        ("receiver.reconcile.run", "read_users", "read (fetch, digest, map)"),
        ("deployer.users", "UserReader._fetch", "of which fetch"),
        ("receiver.reconcile.state", "revouch", "vouch again"),
        ("receiver.reconcile.state", "load_vouched", "load vouched + roster"),
        ("receiver.reconcile.run", "load_reconcile_state", "load state"),
        ("receiver.reconcile.run", "plan_users", "decide"),
        ("receiver.reconcile.run", "save_plan", "store plan"),
        ("receiver.reconcile.apply", "apply_decisions", "write agents + log"),
        ("receiver.reconcile.apply", "record_digests", "record digests"),
    )

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Steps:
        import importlib

        for module_name, path, label in self.NAMES:
            owner: Any = importlib.import_module(module_name)
            *outer, attr = path.split(".")
            for name in outer:
                owner = getattr(owner, name)
            original = getattr(owner, attr)
            self._undo.append((owner, attr, original))
            setattr(owner, attr, self._wrap(original, label))
        return self

    def __exit__(self, *exc: object) -> None:
        for module, attr, original in reversed(self._undo):
            setattr(module, attr, original)

    def _wrap(self, fn: Any, label: str) -> Any:
        spent = self.spent.setdefault(label, [0.0, 0.0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - wall
                spent[1] += time.process_time() - cpu

        return timed

    def report(self) -> str:
        return ", ".join(
            f"{label} {wall:.2f}s ({cpu:.2f}s CPU)"
            for label, (wall, cpu) in self.spent.items()
            if wall >= 0.005
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=2000)
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    from receiver.db import make_engine, migrate, transaction
    from receiver.organizations import add_organization, set_enabled
    from receiver.reconcile.run import reconcile

    records = make_records(args.users)
    pages = render_pages(records, args.page_size)
    del records
    megabytes = sum(len(p) for p in pages) / 1e6
    say(f"users: {args.users}, pages: {len(pages)} of {args.page_size}, {megabytes:.1f} MB JSON")
    with tempfile.TemporaryDirectory() as tmp, serve(pages) as base_url:
        floors = [floor(base_url) for _ in range(3)]
        best_floor = min(floors)
        floor_cpu = FLOOR_CPU[0]
        say(f"floor (fetch + json.loads): {best_floor:.2f}s, {floor_cpu:.2f}s CPU (best of 3)")
        fast = min(floor(base_url, loads=orjson.loads) for _ in range(3))
        say(f"  (fetch + orjson.loads, as the reader parses: {fast:.2f}s)")
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        now = datetime.now(UTC)
        with transaction(engine) as session:
            add_organization(
                session,
                name="bench",
                salesforce_org_id=ORG_ID,
                base_url="http://127.0.0.1:8000",
                key=Fernet.generate_key(),
                now=now,
            )
            set_enabled(session, name="bench", enabled=True, now=now)
        results = []
        for label in ("full run", "second run"):
            http = requests.Session()
            reader = UserReader(http, StaticSession(base_url, "bench-token"), API, CallCounter())
            phases = Phases()
            with Steps() as steps:
                started, cpu = time.perf_counter(), time.process_time()
                result = reconcile(engine, "bench", reader, progress=phases)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            results.append(elapsed)
            counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
            say(
                f"{label}: {elapsed:.2f}s = {elapsed / best_floor:.2f}x floor, "
                f"{cpu:.2f}s CPU = {cpu / floor_cpu:.2f}x floor CPU "
                f"({result.status}: {counts}; {result.api_calls} API calls)"
            )
            say(f"  phases: {phases.report(started + elapsed)}")
            say(f"  steps: {steps.report()}")
        engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(f"peak RSS: {peak:.0f} MB")
    say("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    full, second = results
    say(
        f"targets: full run <= 2x floor: {'met' if full <= 2 * best_floor else 'NOT met'}; "
        f"second run <= 1.2x floor: {'met' if second <= 1.2 * best_floor else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
