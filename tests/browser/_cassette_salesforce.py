"""A cassette-backed fake Salesforce for the browser tests: a Starlette app served over
TLS on loopback (a self-signed certificate made for the test; ``serve`` trusts it through
``REQUESTS_CA_BUNDLE``) that answers each request with the next recorded response of a
vcrpy cassette from ``cassettes/synthetic/`` (or its recording in ``cassettes/recorded/``) (method and path must agree; SOAP calls their
SOAPAction), so a live ``serve`` can deploy against the same exchanges the CLI tests use."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.deployer._vcr import cassette_path


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for ``127.0.0.1`` (PEM files in ``folder``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake-sf.crt", folder / "fake-sf.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class CassetteSalesforce:
    """Replays ``load``-ed cassettes in order; ``misses`` lists requests nothing matched."""

    interactions: list[dict[str, Any]] = field(default_factory=list)
    played: int = 0
    misses: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, *names: str) -> None:
        """Queue the interactions of these cassettes (``cassettes/synthetic/<name>.yaml``,
        or its recording: ``tests.deployer._vcr.cassette_path``)."""
        with self.lock:
            self.interactions = []
            self.played = 0
            for name in names:
                data = yaml.safe_load(
                    Path(cassette_path(f"{name}.yaml")).read_text(encoding="utf-8")
                )
                self.interactions.extend(data["interactions"])

    @property
    def all_played(self) -> bool:
        return self.played == len(self.interactions)

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/{path:path}", self.answer, methods=["GET", "POST", "PATCH", "DELETE"])]
        )

    async def answer(self, request: Request) -> Response:
        await request.body()
        action = request.headers.get("soapaction", "").strip('"')
        with self.lock:
            if self.played >= len(self.interactions):
                self.misses.append(f"{request.method} {request.url.path} (cassette used up)")
                return JSONResponse([{"errorCode": "NOT_RECORDED"}], status_code=599)
            recorded = self.interactions[self.played]
            wanted = recorded["request"]
            want_path = urlsplit(wanted["uri"]).path
            want_action = (wanted.get("headers") or {}).get("SOAPAction", [""])
            want_action = want_action[0] if isinstance(want_action, list) else want_action
            if (
                wanted["method"] != request.method
                or want_path != request.url.path
                or (want_action and want_action != action)
            ):
                self.misses.append(
                    f"{request.method} {request.url.path} != {wanted['method']} {want_path}"
                )
                return JSONResponse([{"errorCode": "NOT_RECORDED"}], status_code=599)
            self.played += 1
        answer = recorded["response"]
        body = answer["body"]["string"]
        headers = {
            k: (v[0] if isinstance(v, list) else v)
            for k, v in (answer.get("headers") or {}).items()
            if k.lower() == "content-type"
        }
        return Response(
            body.encode("utf-8") if isinstance(body, str) else body,
            status_code=int(answer["status"]["code"]),
            headers=headers,
        )
