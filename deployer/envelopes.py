"""Metadata API SOAP envelopes (Jinja-rendered) and their answers (parsed with defusedxml).

Calls: ``deploy(ZipFile, DeployOptions)`` and ``checkDeployStatus(asyncProcessId,
includeDetails)`` at ``/services/Soap/m/{version}``, see
https://developer.salesforce.com/docs/platform/api-metadata/references/file-based-calls/meta-checkdeploystatus.html
(DeployOptions / DeployResult / DeployMessage shapes from the WSDL bundled with
simple-salesforce, reference ``metadata-deploy.md`` section 3). simple-salesforce's own
deploy helpers render booleans as ``True``, insert literal ``None`` and drop ``errorMessage``,
``fullName`` and line numbers (reference ``metadata-simple-salesforce.md`` section 2), so the
deployer renders and parses these itself.

A ``componentFailures`` element may come once or many times (reference
``metadata-deploy-bugs.md`` #14): every list here is read with ``findall``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from deployer._render import render_template
from sf_metadata.errors import SalesforceError

__all__ = [
    "DeployMessage",
    "DeployResult",
    "SoapFault",
    "parse_check_deploy_status",
    "parse_deploy_response",
    "parse_soap_fault",
    "render_check_deploy_status",
    "render_deploy",
]

SOAPENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MD_NS = "http://soap.sforce.com/2006/04/metadata"
_MD = f"{{{MD_NS}}}"


def render_deploy(
    session_id: str, zip_bytes: bytes, *, check_only: bool, ignore_warnings: bool = False
) -> bytes:
    """The ``deploy`` envelope: base64 zip, rollbackOnError and singlePackage true,
    allowMissingFiles/autoUpdatePackage/performRetrieve/purgeOnDelete false, no testLevel
    (NoTestRun is refused in production, reference ``metadata-deploy-bugs.md`` #11)."""
    return render_template(
        "soap_deploy.xml.j2",
        session_id=session_id,
        zip_base64=base64.b64encode(zip_bytes).decode("ascii"),
        check_only=check_only,
        ignore_warnings=ignore_warnings,
    )


def render_check_deploy_status(session_id: str, deploy_id: str) -> bytes:
    """The ``checkDeployStatus`` envelope with ``includeDetails`` true."""
    return render_template(
        "soap_check_deploy_status.xml.j2",
        session_id=session_id,
        deploy_id=deploy_id,
        include_details=True,
    )


@dataclass(frozen=True)
class SoapFault:
    """A SOAP fault: ``code`` without prefix (``INVALID_SESSION_ID``), ``message``."""

    code: str
    message: str

    @property
    def expired_session(self) -> bool:
        """True for ``sf:INVALID_SESSION_ID`` (expired or revoked session)."""
        return self.code == "INVALID_SESSION_ID"


@dataclass(frozen=True)
class DeployMessage:
    """One DeployMessage of ``componentSuccesses``/``componentFailures``."""

    component_type: str
    full_name: str
    file_name: str
    problem: str
    problem_type: str
    line_number: int | None
    column_number: int | None
    created: bool
    deleted: bool

    @property
    def component(self) -> str:
        """``"Type:FullName"``."""
        return f"{self.component_type}:{self.full_name}"

    def describe(self) -> str:
        """One line: ``component (file line L, col C): problemType: problem``."""
        where = self.file_name or "package"
        if self.line_number is not None:
            where += f" line {self.line_number}"
            if self.column_number is not None:
                where += f", col {self.column_number}"
        what = self.component_type or "component"
        name = self.full_name or self.file_name
        return f"{what} {name} ({where}): {self.problem_type or 'Error'}: {self.problem}"


@dataclass(frozen=True)
class DeployResult:
    """The parsed DeployResult of ``checkDeployStatus``.

    ``status`` one of Pending, InProgress, Succeeded, SucceededPartial, Failed, Canceling,
    Canceled.
    """

    deploy_id: str
    done: bool
    status: str
    success: bool
    check_only: bool
    error_message: str | None
    error_status_code: str | None
    state_detail: str | None
    component_successes: tuple[DeployMessage, ...]
    component_failures: tuple[DeployMessage, ...]


def _parse(body: bytes) -> Element:
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise SalesforceError(
            f"the Metadata API answered with something that is not XML ({exc.__class__.__name__})"
        ) from None
    return root


def parse_soap_fault(body: bytes) -> SoapFault | None:
    """The SOAP fault in ``body``, or ``None`` when it holds none (or is not XML)."""
    try:
        root = _parse(body)
    except SalesforceError:
        return None
    fault = root.find(f"{{{SOAPENV_NS}}}Body/{{{SOAPENV_NS}}}Fault")
    if fault is None:
        return None
    texts = {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in fault}
    code = texts.get("faultcode", "")
    message = texts.get("faultstring", "")
    return SoapFault(code=code.rpartition(":")[2], message=message)


def _result(body: bytes, response: str) -> Element:
    root = _parse(body)
    result = root.find(f"{{{SOAPENV_NS}}}Body/{_MD}{response}/{_MD}result")
    if result is None:
        raise SalesforceError(f"the Metadata API answer holds no {response} result")
    return result


def _text(element: Element, name: str) -> str | None:
    child = element.find(f"{_MD}{name}")
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _bool(element: Element, name: str) -> bool:
    return _text(element, name) == "true"


def _int(element: Element, name: str) -> int | None:
    value = _text(element, name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def parse_deploy_response(body: bytes) -> str:
    """The deploy id (``0Af…``) from a ``deployResponse``; raises :class:`SalesforceError`
    when there is none."""
    result = _result(body, "deployResponse")
    deploy_id = _text(result, "id")
    if not deploy_id:
        raise SalesforceError("the Metadata API accepted the deploy but gave no deploy id")
    return deploy_id


def _message(element: Element) -> DeployMessage:
    return DeployMessage(
        component_type=_text(element, "componentType") or "",
        full_name=_text(element, "fullName") or "",
        file_name=_text(element, "fileName") or "",
        problem=_text(element, "problem") or "",
        problem_type=_text(element, "problemType") or "",
        line_number=_int(element, "lineNumber"),
        column_number=_int(element, "columnNumber"),
        created=_bool(element, "created"),
        deleted=_bool(element, "deleted"),
    )


def parse_check_deploy_status(body: bytes) -> DeployResult:
    """Parse a ``checkDeployStatusResponse``; raises :class:`SalesforceError` when the
    answer has no result or no ``done``."""
    result = _result(body, "checkDeployStatusResponse")
    if _text(result, "done") is None:
        raise SalesforceError("the checkDeployStatus answer has no <done> element")
    details = result.find(f"{_MD}details")
    successes: tuple[DeployMessage, ...] = ()
    failures: tuple[DeployMessage, ...] = ()
    if details is not None:
        successes = tuple(_message(e) for e in details.findall(f"{_MD}componentSuccesses"))
        failures = tuple(_message(e) for e in details.findall(f"{_MD}componentFailures"))
    return DeployResult(
        deploy_id=_text(result, "id") or "",
        done=_bool(result, "done"),
        status=_text(result, "status") or "",
        success=_bool(result, "success"),
        check_only=_bool(result, "checkOnly"),
        error_message=_text(result, "errorMessage"),
        error_status_code=_text(result, "errorStatusCode"),
        state_detail=_text(result, "stateDetail"),
        component_successes=successes,
        component_failures=failures,
    )
