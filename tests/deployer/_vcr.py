"""vcrpy set-up for the deployer's cassettes (``cassettes/`` at the project root).

``record_mode="none"``: tests never touch the network. The recording hooks
(:class:`Scrubber`) remove session ids, SOAP login usernames / passwords, access tokens, client secrets, JWT assertions,
webhook tokens and real org ids / instance hosts before anything is written, and replace
the base64 deploy zip with the list of its files (so matching still sees what was sent).
vcrpy applies the request hook at playback too, so live requests match scrubbed ones.

The ``soap`` matcher compares the SOAPAction, the deploy options that matter (checkOnly,
ignoreWarnings), the zip's file list and the polled deploy id.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import vcr
from vcr.request import Request

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"
HOST = "orgname.my.salesforce.com"
ELIDED = "**Elided**"

_ORG_ID = re.compile(r"\b00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?\b")
_PLACEHOLDER_ORG = re.compile(r"^00D0{9}[0-9]{3}")
_SESSION_ID = re.compile(r"00D[0-9A-Za-z]{12,15}![0-9A-Za-z._]+")
_SF_HOST = re.compile(r"\b[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*\.(?:salesforce|force)\.com\b")
_KEEP_HOSTS = {HOST, "login.salesforce.com", "test.salesforce.com"}
_XML_SECRET = re.compile(
    r"<(?P<p>(?:[\w.-]+:)?(?:sessionId|password|username|securityToken))(?P<a>\s[^>]*)?>"
    r"[^<]*</(?P=p)\s*>"
)
_ZIP = re.compile(r"<(?P<p>(?:\w+:)?ZipFile)>(?P<zip>[^<]*)</(?P=p)>")
_JSON_SECRETS = ("access_token", "refresh_token", "signature", "id_token")
_FORM_SECRETS = ("client_secret", "client_id", "assertion", "password", "username")
_WEBHOOK_TOKEN = re.compile(r"(token=)(?!\*\*Elided\*\*)[^&\"'<\s]+")


class Scrubber:
    """Per-cassette scrubbing; real org ids map to placeholders ``00D000000000001``,
    ``00D000000000002``… in order of first sight, so distinct orgs stay distinct."""

    def __init__(self) -> None:
        self._orgs: dict[str, str] = {}

    def _org(self, match: re.Match[str]) -> str:
        value = match.group(0)
        if _PLACEHOLDER_ORG.match(value):
            return value
        key = value[:15]
        if key not in self._orgs:
            self._orgs[key] = f"00D{len(self._orgs) + 1:012d}"
        return self._orgs[key] + value[15:]

    def text(self, text: str) -> str:
        """Scrub one body or URI."""
        text = _SESSION_ID.sub(ELIDED, text)
        text = _XML_SECRET.sub(lambda m: f"<{m['p']}{m['a'] or ''}>{ELIDED}</{m['p']}>", text)
        text = _ZIP.sub(lambda m: f"<{m['p']}>{zip_listing(m['zip'])}</{m['p']}>", text)
        text = _WEBHOOK_TOKEN.sub(lambda m: m.group(1) + ELIDED, text)
        text = _ORG_ID.sub(self._org, text)
        return _SF_HOST.sub(lambda m: m.group(0) if m.group(0) in _KEEP_HOSTS else HOST, text)

    def _json(self, text: str) -> str:
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict) and any(k in data for k in _JSON_SECRETS):
            for key in _JSON_SECRETS:
                if key in data:
                    data[key] = ELIDED
            return json.dumps(data)
        return text

    def _form(self, text: str) -> str:
        if "=" not in text or text.lstrip().startswith(("<", "{")):
            return text
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, ELIDED if k in _FORM_SECRETS else v) for k, v in pairs])

    def request(self, request: Request) -> Request:
        """vcrpy ``before_record_request``."""
        parts = urlsplit(request.uri)
        netloc = parts.netloc if parts.hostname in _KEEP_HOSTS else HOST
        query = _WEBHOOK_TOKEN.sub(lambda m: m.group(1) + ELIDED, parts.query)
        request.uri = self.text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))
        body = request.body
        if body:
            text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
            request.body = self.text(self._form(text)).encode("utf-8")
        kept = {k: v for k, v in request.headers.items() if k.lower() in ("soapaction",)}
        request.headers = kept
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """vcrpy ``before_record_response``."""
        body = response["body"]["string"]
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        response["body"]["string"] = self.text(self._json(text)).encode("utf-8")
        headers = response.get("headers", {})
        response["headers"] = {k: v for k, v in headers.items() if k.lower() in ("content-type",)}
        return response


def zip_listing(encoded: str) -> str:
    """``files=a,b`` for a base64 zip (already-scrubbed text is returned unchanged)."""
    if encoded.startswith("files="):
        return encoded
    try:
        data = base64.b64decode(encoded, validate=True)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "files=" + ",".join(sorted(archive.namelist()))
    except (ValueError, zipfile.BadZipFile):
        return "files=?"


def _tag(body: Any, name: str) -> str | None:
    if not body:
        return None
    text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    match = re.search(rf"<(?:\w+:)?{name}>([^<]*)</(?:\w+:)?{name}>", text)
    return match.group(1) if match else None


def soap_matcher(r1: Request, r2: Request) -> None:
    """SOAPAction and the deploy options / zip files / deploy id must agree."""
    a1 = r1.headers.get("SOAPAction")
    a2 = r2.headers.get("SOAPAction")
    assert a1 == a2, f"SOAPAction {a1!r} != {a2!r}"
    for name in ("checkOnly", "ignoreWarnings", "ZipFile", "asyncProcessId"):
        assert _tag(r1.body, name) == _tag(r2.body, name), name


def make_vcr(scrubber: Scrubber | None = None) -> vcr.VCR:
    """The project's VCR: cassettes/, record_mode none, scrubbing hooks, soap matcher."""
    scrubber = scrubber or Scrubber()
    config = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=("method", "scheme", "host", "path", "query", "soap"),
        before_record_request=scrubber.request,
        before_record_response=scrubber.response,
        decode_compressed_response=True,
    )
    config.register_matcher("soap", soap_matcher)
    return config
