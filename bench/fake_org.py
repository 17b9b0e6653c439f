"""A fake Salesforce org over HTTPS on 127.0.0.1, for trying the reconcile as a new user
would (issue 10's "done when": ``org add``, ``org connect``, ``org enable``, then
``users --json`` and the Users page). Run from the repo root::

    .venv/bin/python -m bench.fake_org --users 300 --port 8443

It prints the ``REQUESTS_CA_BUNDLE`` to export (its certificate is self-signed for
127.0.0.1 and kept in ``$TMPDIR/agent-provision-fake-org/`` for two days, so a server
started with it once trusts every later run) and the commands to copy: ``org add`` with
the Salesforce org id to register and the dashboard's ``--base-url``, ``org connect``
(an existing session: ``--instance-url https://127.0.0.1:PORT --access-token ...``) and
``org enable``. It serves what a connect, a preflight and a reconcile read: ``GET /services/data/`` (versions), the Organization query, ``userinfo``,
``describe`` of User and UserPermissionAccess, the User query with ``nextRecordsUrl``
pages of the users of ``bench.reconcile.make_records`` (with ``WHERE Id IN (...)`` those
users, as the agent page's Sync now reads them); every other query is empty. It
cannot deploy: a Metadata API call gets a SOAP fault, so ``org enable``'s webhook
install fails (reported) and its first reconcile still runs. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import re
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reconcile import API, ORG_ID, make_records, render_pages, say  # noqa: E402

__all__ = ["main", "self_signed"]

USERNAME = "admin@bench.example.com"
_FAULT = (
    b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
    b'"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault>'
    b"<faultcode>sf:UNSUPPORTED_API_VERSION</faultcode><faultstring>the fake org "
    b"cannot deploy</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost (PEM files in ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake Salesforce org")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-org.pem", directory / "fake-org.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _handler(pages: list[bytes], records: list[dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    by_id = {r["Id"]: r for r in records}

    def chosen(soql: str) -> bytes:
        """The answer to ``... WHERE Id IN ('005...', ...)``: those users, one page."""
        ids = re.findall(r"'(005\w{15})'", soql.split(" WHERE Id IN (", 1)[1])
        found = [by_id[i] for i in sorted(set(ids)) if i in by_id]
        return body({"totalSize": len(found), "done": True, "records": found})

    organization = body(
        {
            "totalSize": 1,
            "done": True,
            "records": [{"Id": ORG_ID, "IsSandbox": False, "OrganizationType": "Enterprise"}],
        }
    )
    empty = body({"totalSize": 0, "done": True, "records": []})
    describe_user = body(
        {
            "fields": [
                {"name": "Team__c", "custom": True, "type": "string", "length": 80},
                {"name": "Skill_Level__c", "custom": True, "type": "double"},
            ]
        }
    )
    versions = body([{"version": API, "url": f"/services/data/v{API}"}])
    userinfo = body({"user_id": "005Be0000000000AAA", "preferred_username": USERNAME})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write("fake org: " + (format % args) + "\n")

        def _send(self, status: int, payload: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{kind};charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/")
            if path == "/services/data":
                return self._send(200, versions)
            if path.endswith("/oauth2/userinfo"):
                return self._send(200, userinfo)
            if path.endswith("/sobjects/User/describe"):
                return self._send(200, describe_user)
            if path.endswith("/describe"):
                return self._send(200, body({"fields": []}))
            if path.endswith("/query"):
                soql = parse_qs(parts.query).get("q", [""])[0]
                if "FROM Organization" in soql:
                    return self._send(200, organization)
                if "FROM User " in soql + " " and soql.startswith("SELECT Id, SystemModstamp"):
                    if " WHERE Id IN (" in soql:  # Sync now, reconcile run --user
                        return self._send(200, chosen(soql))
                    return self._send(200, pages[0])
                return self._send(200, empty)
            if "/query/01gBENCH-" in path:
                return self._send(200, pages[int(path.rsplit("-", 1)[1])])
            error = [{"errorCode": "NOT_FOUND", "message": f"the fake org has no {path}"}]
            return self._send(404, body(error))

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(500, _FAULT, "text/xml")

        do_PATCH = do_DELETE = do_POST

    return Handler


def _kept_certificate(directory: Path) -> tuple[Path, Path]:
    """The certificate and key in ``directory`` while valid for another hour (a server
    that trusts it keeps trusting the next run), else new ones (:func:`self_signed`)."""
    from cryptography import x509

    cert, key = directory / "fake-org.pem", directory / "fake-org.key"
    if cert.is_file() and key.is_file():
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
        if loaded.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1):
            return cert, key
    return self_signed(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A fake Salesforce org over HTTPS on 127.0.0.1, for trying the reconcile "
        "as a new user would: org add, org connect, org enable. Its certificate and key are "
        "kept in $TMPDIR/agent-provision-fake-org/ (TMPDIR=DIR puts them elsewhere)."
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--name", default="bench", help="the organization to register")
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000",
        help="where the dashboard and webhook are served (scripts/demo --port N: that port)",
    )
    args = parser.parse_args(argv)
    records = make_records(args.users)
    pages = render_pages(records, 2000)
    directory = Path(tempfile.gettempdir()) / "agent-provision-fake-org"
    directory.mkdir(mode=0o700, exist_ok=True)
    cert, key = _kept_certificate(directory)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(pages, records))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    say(f"fake Salesforce org {ORG_ID} with {args.users} users at {url}")
    cli = ".venv/bin/agent-provision"
    say(f"export REQUESTS_CA_BUNDLE={cert}")
    say(f"{cli} org add {args.name} --salesforce-org-id {ORG_ID} --base-url {args.base_url}")
    say(f"{cli} org connect {args.name} --instance-url {url} --access-token fake-token")
    say(f"{cli} org enable {args.name}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
