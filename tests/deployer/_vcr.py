"""vcrpy set-up for the deployer's cassettes (``cassettes/`` at the project root).

- ``cassettes/synthetic/``: built by ``tests/deployer/cassette_builder.py``,
  ``tests/deployer/reconcile_cassettes.py`` and ``tests/receiver/connection_cassette_builder.py``
  from Salesforce's published response shapes, not recorded from an org
  (``cassettes/README.md``).
- ``cassettes/recorded/``: what ``pytest --sf-org ALIAS_OR_URL`` records from a real org
  (CumulusCI's ``--org`` pattern): :func:`start_recording` switches :func:`make_vcr` from
  ``record_mode="none"`` to ``"once"`` (or ``--sf-record-mode new_episodes``/``all``) and
  the tests' session credentials to the org's (:func:`live_session`). A recorded cassette
  is played back instead of the synthetic one of the same name.

Without ``--sf-org`` tests never touch the network. Every interaction written, built or
recorded, passes through one :class:`Scrubber` (the builders call it; vcrpy calls it as
``before_record_request``/``before_record_response``): it removes session ids, SOAP login
usernames / passwords / security tokens, access and refresh tokens, client secrets, JWT
assertions, webhook tokens, cookies and every header but SOAPAction and Content-Type, maps
real org ids and org-specific hosts to placeholders, keeps only the API version the client
uses (:data:`API_VERSION`) in a version listing, and replaces the base64 deploy zip with
the list of its files (so matching still sees what was sent). vcrpy applies the request
hook at playback too, so live requests match scrubbed ones.

The ``soap`` matcher compares the SOAPAction, the deploy options that matter (checkOnly,
ignoreWarnings), the zip's file list and the polled deploy id.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import vcr
from vcr.request import Request

from deployer.package import PINNED_API_VERSION

CASSETTE_ROOT = Path(__file__).resolve().parents[2] / "cassettes"
#: Built from published response shapes (cassettes/README.md), not recorded.
CASSETTES = CASSETTE_ROOT / "synthetic"
#: Recorded from a real org by ``pytest --sf-org``.
RECORDED = CASSETTE_ROOT / "recorded"
HOST = "orgname.my.salesforce.com"
ELIDED = "**Elided**"
#: The one API version in the cassettes: the one the client pins (deployer/package.py).
API_VERSION = PINNED_API_VERSION
RECORD_MODES = ("once", "new_episodes", "all")

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
        if _is_version_listing(data):
            return json.dumps(_one_version(data))
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
        query = parts.query
        if "=" in query:  # decoded first: an org id quoted in a SOQL query (%27 00D...%27)
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, self.text(v)) for k, v in pairs])
        query = _WEBHOOK_TOKEN.sub(lambda m: m.group(1) + ELIDED, query)
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


def _is_version_listing(data: Any) -> bool:
    """``GET /services/data/``: a JSON list of ``{"version": "NN.0", "url": ...}``."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(e, dict) and "version" in e and "url" in e for e in data)
    )


def _one_version(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listing cut to :data:`API_VERSION` (an org that has it; the client then uses it),
    else to the org's newest (an older org: the client uses that)."""
    pinned = [e for e in listing if e["version"] == API_VERSION]
    return pinned or [max(listing, key=lambda e: float(e["version"]))]


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


@dataclass(frozen=True)
class LiveSession:
    """The org a recording talks to: its instance URL, an access token, its org id."""

    instance_url: str
    access_token: str = ""
    org_id: str = ""


@dataclass(frozen=True)
class Recording:
    """``--sf-org`` (an sf CLI alias or an instance URL) and the vcrpy record mode."""

    org: str
    mode: str = "once"


_recording: Recording | None = None


def start_recording(org: str, mode: str = "once") -> None:
    """Record from ``org`` for the rest of this process (``tests/conftest.py`` calls it)."""
    global _recording
    if mode not in RECORD_MODES:
        raise ValueError(f"record mode {mode!r} is not one of {', '.join(RECORD_MODES)}")
    _recording = Recording(org, mode)


def recording() -> Recording | None:
    """The recording in force, or ``None`` (playback only: never the network)."""
    return _recording


def live_session(org: str, environ: dict[str, str] | None = None) -> LiveSession:
    """The session of ``org``: an ``https://`` instance URL with ``SF_ACCESS_TOKEN`` from
    the environment, or an sf CLI alias (``sf org display --target-org ALIAS --json``:
    ``result.instanceUrl``, ``result.accessToken``, ``result.id``)."""
    env = os.environ if environ is None else environ
    if org.startswith("https://"):
        token = env.get("SF_ACCESS_TOKEN", "")
        if not token:
            raise RuntimeError("--sf-org URL needs SF_ACCESS_TOKEN (an access token of that org)")
        return LiveSession(org.rstrip("/"), token, env.get("SF_ORG_ID", ""))
    sf = shutil.which("sf")
    if sf is None:
        raise RuntimeError("--sf-org ALIAS needs the sf CLI (or pass the instance URL)")
    shown = subprocess.run(
        [sf, "org", "display", "--target-org", org, "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(shown.stdout)["result"]
    return LiveSession(result["instanceUrl"], result["accessToken"], result.get("id", ""))


@functools.cache
def _live(org: str) -> LiveSession:
    return live_session(org)


def live_args(args: list[str], org_id: str | None = None) -> list[str]:
    """``args`` with the tests' placeholder session (``https://`` :data:`HOST`,
    ``test-access-token``) and ``org_id`` replaced by the recorded org's while recording;
    unchanged otherwise."""
    if _recording is None:
        return args
    live = _live(_recording.org)
    swap = {f"https://{HOST}": live.instance_url, "test-access-token": live.access_token}
    if org_id is not None and live.org_id:
        swap[org_id] = live.org_id
    return [swap.get(a, a) for a in args]


def cassette_path(name: str) -> str:
    """Where cassette ``name`` (``deploy_flow.yaml``, ``reconcile/pages.yaml``) is read and
    written: ``cassettes/recorded/`` while recording or when a recording of it exists,
    else ``cassettes/synthetic/``."""
    if Path(name).is_absolute():
        return name
    recorded = RECORDED / name
    if _recording is not None:
        recorded.parent.mkdir(parents=True, exist_ok=True)
        return str(recorded)
    if recorded.exists():
        return str(recorded)
    return str(CASSETTES / name)


def make_vcr(scrubber: Scrubber | None = None, *, record_mode: str | None = None) -> vcr.VCR:
    """The project's VCR: cassettes (:func:`cassette_path`), ``record_mode="none"`` unless
    recording (:func:`start_recording`) or ``record_mode`` says otherwise, the scrubbing
    hooks, the soap matcher."""
    scrubber = scrubber or Scrubber()
    if record_mode is None:
        record_mode = _recording.mode if _recording is not None else "none"
    config = vcr.VCR(
        path_transformer=cassette_path,
        record_mode=record_mode,
        match_on=("method", "scheme", "host", "path", "query", "soap"),
        before_record_request=scrubber.request,
        before_record_response=scrubber.response,
        decode_compressed_response=True,
    )
    config.register_matcher("soap", soap_matcher)
    return config
