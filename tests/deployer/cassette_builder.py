# ruff: noqa: E501  (recorded-shape data: one exchange per line reads best)
"""Builds the deployer's cassettes in ``cassettes/synthetic/`` from the real response shapes of
``reference/samples/metadata/`` (DeployResult, deployResponse, SOAP faults, SOQL JSON,
OAuth token JSON), written as our own bodies for our own components.

Every interaction goes through the same recording hooks as a live recording
(``tests.deployer._vcr.Scrubber``), so what lands on disk is scrubbed. Regenerate with::

    .venv/bin/python -m tests.deployer.cassette_builder

Each scenario lists the HTTP exchanges in the order the deployer makes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from deployer.envelopes import render_check_deploy_status, render_deploy
from deployer.kinds import Trigger
from deployer.package import (
    FLOW,
    OUTBOUND_MESSAGE,
    WORKFLOW_RULE,
    PackageSpec,
    render_deploy_package,
    render_removal_package,
    zip_package,
)
from sf_metadata.ids import to_18
from sf_metadata.metadata_names import FLOW_NAME, OUTBOUND_MESSAGE_NAME
from tests.deployer._vcr import API_VERSION, CASSETTES, Scrubber

Interaction = tuple[Request, dict[str, Any]]

#: The one API version of the cassettes: the client's pinned one (deployer/package.py).
V = API_VERSION
#: What a live recording would see before scrubbing (hosts, session ids are made up).
LIVE_HOST = "acme-dev-ed.develop.my.salesforce.com"
LIVE_SESSION = "00D000000000001!AQ0AQFakeSessionForCassettesOnly.abcdefghijklmnop"
ORG_ID = to_18("00D000000000001")
OTHER_ORG_ID = to_18("00D000000000002")
DEPLOYING_USER = "admin@acme.example.com"
INTEGRATION_USER = "integration@acme.example.com"
DEPLOY_ID = "0Af000000000001AAA"
WEBHOOK = "https://hooks.example.com/v2/features/agent-auto-provision/organizations/acme/integrations/provider/webhook?token=t0ken"
FLOW_DEF_ID = "300000000000001AAA"
FLOW_V1 = "301000000000001AAA"
FLOW_V2 = "301000000000002AAA"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MD_NS = "http://soap.sforce.com/2006/04/metadata"
STAMP = "2026-11-02T10:00:00.000Z"


def _response(
    body: str, status: int = 200, content_type: str = "application/json"
) -> dict[str, Any]:
    message = {200: "OK", 204: "No Content", 401: "Unauthorized", 500: "Server Error"}[status]
    return {
        "status": {"code": status, "message": message},
        "headers": {
            "Content-Type": [f"{content_type};charset=UTF-8"],
            "Sforce-Limit-Info": ["api-usage=10/15000"],
            "Set-Cookie": ["sid=" + LIVE_SESSION],
        },
        "body": {"string": body.encode("utf-8")},
    }


def _get(path: str, params: dict[str, str] | None = None) -> Request:
    uri = f"https://{LIVE_HOST}{path}"
    if params:
        uri += "?" + urlencode(params)
    return Request("GET", uri, None, {"Authorization": "Bearer " + LIVE_SESSION})


def rest(
    path: str, payload: Any, status: int = 200, params: dict[str, str] | None = None
) -> Interaction:
    return _get(path, params), _response(json.dumps(payload, indent=2), status)


def soql(query: str, records: Sequence[dict[str, Any]], sobject: str) -> Interaction:
    rows = [
        {"attributes": {"type": sobject, "url": f"/services/data/v{V}/sobjects/{sobject}/x"}, **r}
        for r in records
    ]
    return rest(
        f"/services/data/v{V}/query/",
        {"totalSize": len(rows), "done": True, "records": rows},
        params={"q": query},
    )


def tooling(query: str, records: Sequence[dict[str, Any]], sobject: str) -> Interaction:
    rows = [
        {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{V}/tooling/sobjects/{sobject}/x",
            },
            **r,
        }
        for r in records
    ]
    return rest(
        f"/services/data/v{V}/tooling/query/",
        {
            "size": len(rows),
            "totalSize": len(rows),
            "done": True,
            "records": rows,
            "entityTypeName": sobject,
        },
        params={"q": query},
    )


def tooling_write(method: str, path: str, body: dict[str, Any] | None) -> Interaction:
    request = Request(
        method,
        f"https://{LIVE_HOST}/services/data/v{V}/tooling/{path}",
        json.dumps(body) if body is not None else None,
        {"Authorization": "Bearer " + LIVE_SESSION},
    )
    return request, _response("", 204)


def _soap(action: str, body: bytes, answer: str, status: int = 200) -> Interaction:
    request = Request(
        "POST",
        f"https://{LIVE_HOST}/services/Soap/m/{V}",
        body,
        {"SOAPAction": action, "Content-Type": "text/xml; charset=UTF-8"},
    )
    default_ns = f'xmlns="{MD_NS}"' if status == 200 else f'xmlns:sf="{MD_NS}"'
    envelope = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        f"{default_ns}><soapenv:Body>{answer}</soapenv:Body></soapenv:Envelope>"
    )
    return request, _response(envelope, status, "text/xml")


def deploy_call(
    files: dict[str, bytes], *, check_only: bool = False, ignore_warnings: bool = False
) -> Interaction:
    body = render_deploy(
        LIVE_SESSION, zip_package(files), check_only=check_only, ignore_warnings=ignore_warnings
    )
    answer = (
        f"<deployResponse><result><done>false</done><id>{DEPLOY_ID}</id>"
        "<state>Queued</state></result></deployResponse>"
    )
    return _soap("deploy", body, answer)


def _message(
    component_type: str,
    full_name: str,
    file_name: str,
    *,
    success: bool,
    problem: str | None = None,
    problem_type: str = "Error",
    line: int | None = None,
    column: int | None = None,
    created: bool = True,
    deleted: bool = False,
) -> str:
    parts = ["<changed>true</changed>"]
    if column is not None:
        parts.append(f"<columnNumber>{column}</columnNumber>")
    parts += [
        f"<componentType>{component_type}</componentType>",
        f"<created>{str(created).lower()}</created>",
        f"<createdDate>{STAMP}</createdDate>",
        f"<deleted>{str(deleted).lower()}</deleted>",
        f"<fileName>{file_name}</fileName>",
        f"<fullName>{full_name}</fullName>",
    ]
    if line is not None:
        parts.append(f"<lineNumber>{line}</lineNumber>")
    if problem is not None:
        parts += [f"<problem>{problem}</problem>", f"<problemType>{problem_type}</problemType>"]
    parts.append(f"<success>{str(success).lower()}</success>")
    return "".join(parts)


def success(component: str, file_name: str, *, deleted: bool = False) -> str:
    type_name, full_name = component.split(":", 1)
    return (
        "<componentSuccesses>"
        + _message(
            type_name, full_name, file_name, success=True, created=not deleted, deleted=deleted
        )
        + "</componentSuccesses>"
    )


def failure(
    component: str,
    file_name: str,
    problem: str,
    *,
    problem_type: str = "Error",
    line: int | None = None,
    column: int | None = None,
) -> str:
    type_name, full_name = component.split(":", 1)
    return (
        "<componentFailures>"
        + _message(
            type_name,
            full_name,
            file_name,
            success=False,
            problem=problem,
            problem_type=problem_type,
            line=line,
            column=column,
            created=False,
        )
        + "</componentFailures>"
    )


def status_call(
    status: str,
    *,
    done: bool,
    ok: bool = False,
    check_only: bool = False,
    details: Iterable[str] = (),
    error: tuple[str, str] | None = None,
    deployed: int = 0,
    total: int = 0,
    errors: int = 0,
) -> Interaction:
    body = render_check_deploy_status(LIVE_SESSION, DEPLOY_ID)
    parts = [f"<checkOnly>{str(check_only).lower()}</checkOnly>"]
    if done:
        parts.append(f"<completedDate>{STAMP}</completedDate>")
    parts += [
        "<createdBy>005000000000001AAA</createdBy><createdByName>Acme Admin</createdByName>",
        f"<createdDate>{STAMP}</createdDate>",
        "<details>" + "".join(details) + "<runTestResult><numFailures>0</numFailures>"
        "<numTestsRun>0</numTestsRun><totalTime>0.0</totalTime></runTestResult></details>",
        f"<done>{str(done).lower()}</done>",
    ]
    if error:
        parts.append(
            f"<errorMessage>{error[1]}</errorMessage><errorStatusCode>{error[0]}</errorStatusCode>"
        )
    parts += [
        f"<id>{DEPLOY_ID}</id><ignoreWarnings>false</ignoreWarnings>",
        f"<lastModifiedDate>{STAMP}</lastModifiedDate>",
        f"<numberComponentErrors>{errors}</numberComponentErrors>",
        f"<numberComponentsDeployed>{deployed}</numberComponentsDeployed>",
        f"<numberComponentsTotal>{total}</numberComponentsTotal>",
        "<numberTestErrors>0</numberTestErrors><numberTestsCompleted>0</numberTestsCompleted>"
        "<numberTestsTotal>0</numberTestsTotal><rollbackOnError>true</rollbackOnError>"
        "<runTestsEnabled>false</runTestsEnabled>",
        f"<startDate>{STAMP}</startDate><status>{status}</status>",
        f"<success>{str(ok).lower()}</success>",
    ]
    answer = (
        "<checkDeployStatusResponse><result>"
        + "".join(parts)
        + "</result></checkDeployStatusResponse>"
    )
    return _soap("checkDeployStatus", body, answer)


def fault_call(action: str, code: str, message: str) -> Interaction:
    body = render_check_deploy_status(LIVE_SESSION, DEPLOY_ID)
    answer = (
        f"<soapenv:Fault><faultcode>sf:{code}"
        f"</faultcode><faultstring>{code}: {message}</faultstring></soapenv:Fault>"
    )
    return _soap(action, body, answer, status=500)


def token_call() -> Interaction:
    request = Request(
        "POST",
        f"https://{LIVE_HOST}/services/oauth2/token",
        urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": "3MVG9FakeConsumerKey",
                "client_secret": "FakeConsumerSecret123",
            }
        ),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    payload = {
        "access_token": LIVE_SESSION,
        "signature": "c2lnbmF0dXJl",
        "scope": "api",
        "instance_url": f"https://{LIVE_HOST}",
        "id": f"https://login.salesforce.com/id/{ORG_ID}/005000000000001AAA",
        "token_type": "Bearer",
        "issued_at": "1794052800000",
    }
    return request, _response(json.dumps(payload))


# --- preflight -------------------------------------------------------------------------

PERMISSIONS = (
    "PermissionsApiEnabled",
    "PermissionsModifyMetadata",
    "PermissionsModifyAllData",
    "PermissionsCustomizeApplication",
)


def preflight_calls(
    *,
    org_id: str = ORG_ID,
    sandbox: bool = False,
    permissions: dict[str, bool] | None = None,
    described_permissions: Sequence[str] = PERMISSIONS,
    call_centers: int = 1,
    user_active: bool = True,
    existing_om_endpoint: str | None = None,
) -> list[Interaction]:
    granted = permissions or {p: True for p in described_permissions}
    queried = [p for p in PERMISSIONS if p in described_permissions]
    om_rows = (
        []
        if existing_om_endpoint is None
        else [
            {
                "Id": "04k000000000001AAA",
                "Name": OUTBOUND_MESSAGE_NAME,
                "Metadata": {
                    "endpointUrl": existing_om_endpoint,
                    "integrationUser": INTEGRATION_USER,
                },
            }
        ]
    )
    return [
        rest(
            "/services/data/",
            [
                {"label": "Winter '25", "url": f"/services/data/v{V}", "version": V},
            ],
        ),
        soql(
            "SELECT Id, IsSandbox, OrganizationType FROM Organization",
            [
                {
                    "Id": org_id,
                    "IsSandbox": sandbox,
                    "OrganizationType": "Developer Edition"
                    if not sandbox
                    else "Enterprise Edition",
                }
            ],
            "Organization",
        ),
        rest(
            "/services/oauth2/userinfo",
            {
                "sub": f"https://login.salesforce.com/id/{org_id}/005000000000001AAA",
                "user_id": "005000000000001AAA",
                "organization_id": org_id,
                "preferred_username": DEPLOYING_USER,
            },
        ),
        rest(
            f"/services/data/v{V}/sobjects/UserPermissionAccess/describe",
            {
                "name": "UserPermissionAccess",
                "fields": [{"name": "Id", "type": "id"}]
                + [{"name": p, "type": "boolean"} for p in described_permissions],
            },
        ),
        soql(
            f"SELECT {', '.join(queried)} FROM UserPermissionAccess",
            [{p: granted.get(p, False) for p in queried}],
            "UserPermissionAccess",
        ),
        soql(
            f"SELECT Id, Username, IsActive FROM User WHERE Username = '{INTEGRATION_USER}'",
            [{"Id": "005000000000002AAA", "Username": INTEGRATION_USER, "IsActive": user_active}],
            "User",
        ),
        soql(
            "SELECT Id, Name FROM CallCenter LIMIT 1",
            [{"Id": "04v000000000001AAA", "Name": "Acme Dialer"}][:call_centers],
            "CallCenter",
        ),
        tooling(
            f"SELECT Id, Name, Metadata FROM WorkflowOutboundMessage WHERE Name = '{OUTBOUND_MESSAGE_NAME}'",
            om_rows,
            "WorkflowOutboundMessage",
        ),
        rest(
            f"/services/data/v{V}/sobjects/User/describe",
            {
                "name": "User",
                "fields": [
                    {"name": "Id", "type": "id", "custom": False, "length": 18},
                    {"name": "Username", "type": "string", "custom": False, "length": 80},
                    {
                        "name": "Badge__c",
                        "type": "string",
                        "custom": True,
                        "length": 40,
                        "encrypted": False,
                    },
                    {"name": "Short_Note__c", "type": "textarea", "custom": True, "length": 255},
                    {"name": "Long_Notes__c", "type": "textarea", "custom": True, "length": 32768},
                    {
                        "name": "Tax_Id__c",
                        "type": "encryptedstring",
                        "custom": True,
                        "length": 20,
                        "encrypted": True,
                    },
                ],
            },
        ),
    ]


def spec(trigger: str, retire: tuple[str, ...] = ()) -> PackageSpec:
    return PackageSpec(
        trigger=Trigger(trigger),
        api_version=V,
        endpoint_url=WEBHOOK,
        integration_user=INTEGRATION_USER,
        custom_fields=("Badge__c", "Short_Note__c"),
        retire=retire,
    )


WF = "workflows/User.workflow"
FLOW_FILE = f"flows/{FLOW_NAME}.flow"
WORKFLOW_OK = [
    success("Workflow:User", WF),
    success(OUTBOUND_MESSAGE, WF),
    success(WORKFLOW_RULE, WF),
    success(":package.xml", "package.xml"),
]
FLOW_OK = [
    success(FLOW, FLOW_FILE),
    success("Workflow:User", WF),
    success(OUTBOUND_MESSAGE, WF),
    success(":package.xml", "package.xml"),
]


def flow_definition(active: str | None, latest: str = FLOW_V1) -> Interaction:
    return tooling(
        "SELECT Id, DeveloperName, ActiveVersionId, LatestVersionId FROM FlowDefinition "
        f"WHERE DeveloperName = '{FLOW_NAME}'",
        [
            {
                "Id": FLOW_DEF_ID,
                "DeveloperName": FLOW_NAME,
                "ActiveVersionId": active,
                "LatestVersionId": latest,
            }
        ],
        "FlowDefinition",
    )


def scenarios() -> dict[str, list[Interaction]]:
    wf_files = render_deploy_package(spec("workflow"))
    flow_files = render_deploy_package(spec("flow"))
    switch_files = render_deploy_package(spec("flow", retire=(WORKFLOW_RULE,)))
    removal = render_removal_package([WORKFLOW_RULE, OUTBOUND_MESSAGE], V)
    done_wf = status_call("Succeeded", done=True, ok=True, details=WORKFLOW_OK, deployed=3, total=3)
    return {
        "check_ok": preflight_calls(),
        "deploy_workflow": [
            *preflight_calls(),
            deploy_call(wf_files),
            status_call("Pending", done=False),
            status_call("InProgress", done=False, deployed=1, total=3),
            done_wf,
        ],
        "deploy_check_only": [
            *preflight_calls(),
            deploy_call(wf_files, check_only=True),
            status_call(
                "Succeeded",
                done=True,
                ok=True,
                check_only=True,
                details=WORKFLOW_OK,
                deployed=3,
                total=3,
            ),
        ],
        "deploy_flow": [
            *preflight_calls(),
            deploy_call(flow_files),
            status_call("InProgress", done=False, deployed=1, total=3),
            status_call("Succeeded", done=True, ok=True, details=FLOW_OK, deployed=3, total=3),
            flow_definition(active=FLOW_V1),
        ],
        "deploy_flow_inactive": [
            *preflight_calls(),
            deploy_call(flow_files),
            status_call("Succeeded", done=True, ok=True, details=FLOW_OK, deployed=3, total=3),
            flow_definition(active=None),
        ],
        "deploy_component_failure": [
            *preflight_calls(),
            deploy_call(wf_files),
            status_call(
                "Failed",
                done=True,
                errors=1,
                total=3,
                details=[
                    success(OUTBOUND_MESSAGE, WF),
                    failure(
                        WORKFLOW_RULE,
                        WF,
                        "You can&apos;t create new workflow rules. Use Flow Builder instead.",
                        line=35,
                        column=12,
                    ),
                ],
            ),
        ],
        "deploy_component_failures_list": [
            *preflight_calls(),
            deploy_call(flow_files),
            status_call(
                "Failed",
                done=True,
                errors=2,
                total=3,
                details=[
                    failure(
                        FLOW,
                        FLOW_FILE,
                        "We can&apos;t find an action with "
                        "the name and action type that you specified.",
                        line=3,
                        column=18,
                    ),
                    failure(
                        OUTBOUND_MESSAGE,
                        WF,
                        f"In field: integrationUser - no User named {INTEGRATION_USER} found",
                        line=29,
                        column=26,
                    ),
                ],
            ),
        ],
        "deploy_error_message_only": [
            *preflight_calls(),
            deploy_call(wf_files),
            status_call(
                "Failed",
                done=True,
                error=(
                    "UNKNOWN_EXCEPTION",
                    "UNKNOWN_EXCEPTION: An unexpected error "
                    "occurred. Please include this ErrorId if you contact support: "
                    "1220744558-7618 (-824679420)",
                ),
            ),
        ],
        "deploy_timeout": [
            *preflight_calls(),
            deploy_call(wf_files),
            status_call("InProgress", done=False, deployed=1, total=3),
            status_call("InProgress", done=False, deployed=1, total=3),
            status_call("InProgress", done=False, deployed=2, total=3),
        ],
        "preflight_missing_permission": preflight_calls(
            described_permissions=(
                "PermissionsApiEnabled",
                "PermissionsModifyAllData",
                "PermissionsCustomizeApplication",
            ),
            permissions={
                "PermissionsApiEnabled": True,
                "PermissionsModifyAllData": False,
                "PermissionsCustomizeApplication": False,
            },
        ),
        "preflight_no_call_center": preflight_calls(call_centers=0),
        "preflight_other_org": preflight_calls(org_id=OTHER_ORG_ID, sandbox=True),
        "expired_session_refresh": [
            token_call(),
            *preflight_calls(),
            deploy_call(wf_files),
            status_call("InProgress", done=False, deployed=1, total=3),
            fault_call(
                "checkDeployStatus",
                "INVALID_SESSION_ID",
                "Invalid Session ID found in SessionHeader: Illegal Session",
            ),
            token_call(),
            done_wf,
        ],
        "expired_session_direct": [
            rest(
                "/services/data/",
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                status=401,
            )
        ],
        # Salesforce took the deploy, then checkDeployStatus failed: how it ended is unknown
        "deploy_status_fault": [
            *preflight_calls(),
            deploy_call(wf_files),
            status_call("InProgress", done=False, deployed=1, total=3),
            fault_call("checkDeployStatus", "UNKNOWN_EXCEPTION", "An unexpected error occurred"),
        ],
        # the rule is already gone (deleted in Setup): ignoreWarnings turns Salesforce's
        # "No WorkflowRule named" into a warning (reference metadata-deploy-bugs.md #5)
        "switch_workflow_to_flow_rule_gone": [
            *preflight_calls(),
            deploy_call(switch_files, ignore_warnings=True),
            status_call(
                "Succeeded",
                done=True,
                ok=True,
                deployed=3,
                total=4,
                details=[
                    *FLOW_OK,
                    failure(
                        WORKFLOW_RULE,
                        "destructiveChangesPost.xml",
                        f"No WorkflowRule named: User.{WORKFLOW_RULE.split('.', 1)[1]} found",
                        problem_type="Warning",
                    ),
                ],
            ),
            flow_definition(active=FLOW_V2, latest=FLOW_V2),
        ],
        "switch_workflow_to_flow": [
            *preflight_calls(),
            deploy_call(switch_files, ignore_warnings=True),
            status_call(
                "Succeeded",
                done=True,
                ok=True,
                deployed=4,
                total=4,
                details=[*FLOW_OK, success(WORKFLOW_RULE, WF, deleted=True)],
            ),
            flow_definition(active=FLOW_V2, latest=FLOW_V2),
        ],
        "undeploy": [
            rest("/services/data/", [{"version": V, "url": f"/services/data/v{V}"}]),
            soql(
                "SELECT Id, IsSandbox, OrganizationType FROM Organization",
                [{"Id": ORG_ID, "IsSandbox": False, "OrganizationType": "Developer Edition"}],
                "Organization",
            ),
            flow_definition(active=FLOW_V2, latest=FLOW_V2),
            tooling(
                f"SELECT Id, VersionNumber FROM Flow WHERE Id = '{FLOW_V2}'",
                [{"Id": FLOW_V2, "VersionNumber": 2}],
                "Flow",
            ),
            tooling_write(
                "PATCH",
                f"sobjects/FlowDefinition/{FLOW_DEF_ID}",
                {"Metadata": {"activeVersionNumber": 0}},
            ),
            tooling(
                f"SELECT Id FROM Flow WHERE Definition.DeveloperName = '{FLOW_NAME}'",
                [{"Id": FLOW_V1}, {"Id": FLOW_V2}],
                "Flow",
            ),
            tooling_write("DELETE", f"sobjects/Flow/{FLOW_V1}", None),
            tooling_write("DELETE", f"sobjects/Flow/{FLOW_V2}", None),
            deploy_call(removal, ignore_warnings=True),
            status_call(
                "Succeeded",
                done=True,
                ok=True,
                deployed=2,
                total=2,
                details=[
                    success(WORKFLOW_RULE, "destructiveChanges.xml", deleted=True),
                    success(OUTBOUND_MESSAGE, "destructiveChanges.xml", deleted=True),
                ],
            ),
        ],
        "undeploy_rerun": [
            rest("/services/data/", [{"version": V, "url": f"/services/data/v{V}"}]),
            soql(
                "SELECT Id, IsSandbox, OrganizationType FROM Organization",
                [{"Id": ORG_ID, "IsSandbox": False, "OrganizationType": "Developer Edition"}],
                "Organization",
            ),
            tooling(
                "SELECT Id, DeveloperName, ActiveVersionId, LatestVersionId FROM FlowDefinition "
                f"WHERE DeveloperName = '{FLOW_NAME}'",
                [],
                "FlowDefinition",
            ),
            tooling(
                f"SELECT Id FROM Flow WHERE Definition.DeveloperName = '{FLOW_NAME}'", [], "Flow"
            ),
            deploy_call(removal, ignore_warnings=True),
            status_call(
                "Succeeded",
                done=True,
                ok=True,
                deployed=0,
                total=2,
                details=[
                    failure(
                        WORKFLOW_RULE,
                        "destructiveChanges.xml",
                        f"No WorkflowRule named: User.{WORKFLOW_RULE.split('.', 1)[1]} found",
                        problem_type="Warning",
                    ),
                    failure(
                        OUTBOUND_MESSAGE,
                        "destructiveChanges.xml",
                        f"No WorkflowOutboundMessage named: User.{OUTBOUND_MESSAGE_NAME} found",
                        problem_type="Warning",
                    ),
                ],
            ),
        ],
    }


def build(names: Iterable[str] | None = None) -> list[str]:
    """Write the cassettes (all, or ``names``); return the file names written."""
    written = []
    all_scenarios = scenarios()
    for name in names or sorted(all_scenarios):
        scrubber = Scrubber()
        requests = []
        responses = []
        for request, response in all_scenarios[name]:
            requests.append(scrubber.request(request))
            responses.append(scrubber.response(response))
        text = serialize({"requests": requests, "responses": responses}, yamlserializer)
        path = CASSETTES / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        written.append(path.name)
    return written


if __name__ == "__main__":
    for written_name in build():
        print(written_name)  # noqa: T201
