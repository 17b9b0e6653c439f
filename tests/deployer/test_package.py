"""The deploy / removal packages: Metadata API schema validity (lxml XMLSchema built from
the schema inside simple-salesforce's bundled ``metadata.wsdl``), element order, escaping,
lowercase booleans, child types only, deterministic zip."""

from __future__ import annotations

import copy
import importlib.resources
import io
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
from lxml import etree

from deployer.kinds import Trigger
from deployer.package import (
    FLOW,
    OUTBOUND_MESSAGE,
    WORKFLOW_RULE,
    PackageSpec,
    outbound_message_fields,
    render_deploy_package,
    render_removal_package,
    zip_package,
)
from sf_metadata.errors import UsageError
from sf_metadata.metadata_names import OUTBOUND_MESSAGE_FIELDS
from tests.deployer._harness import INTEGRATION_USER, ORG, Harness

XSD = "http://www.w3.org/2001/XMLSchema"
MD = "http://soap.sforce.com/2006/04/metadata"
URL = "https://hooks.example.com/v2/x/webhook?token=a&b=<c>"


@lru_cache(maxsize=1)
def metadata_schema() -> etree.XMLSchema:
    """The WSDL's xsd:schema plus global elements for the file roots we write."""
    wsdl_path = importlib.resources.files("simple_salesforce").joinpath("metadata.wsdl")
    wsdl = etree.parse(str(wsdl_path))
    source = wsdl.find(f".//{{{XSD}}}schema")
    assert source is not None
    root = etree.Element(
        f"{{{XSD}}}schema", nsmap={"xsd": XSD, "tns": MD}, attrib=dict(source.attrib)
    )
    for child in source:
        root.append(copy.copy(child))
    declared = {e.get("name") for e in source.findall(f"{{{XSD}}}element")}
    for name in ("Package", "Workflow", "Flow"):
        if name not in declared:
            etree.SubElement(root, f"{{{XSD}}}element", name=name, type=f"tns:{name}")
    return etree.XMLSchema(etree.fromstring(etree.tostring(root)))


def assert_schema_valid(name: str, content: bytes) -> None:
    schema = metadata_schema()
    document = etree.fromstring(content)
    assert schema.validate(document), f"{name}: {schema.error_log}"


def _spec(trigger: str, **kw: object) -> PackageSpec:
    return PackageSpec(
        trigger=trigger,  # type: ignore[arg-type]
        api_version="62.0",
        endpoint_url=URL,
        integration_user=INTEGRATION_USER,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("trigger", ["workflow", "flow"])
def test_dry_run_output_is_schema_valid(tmp_path: Path, trigger: str) -> None:
    harness = Harness(tmp_path)
    harness.add_org()
    out = tmp_path / "out"
    result = harness.invoke(
        [
            "deploy",
            ORG,
            "--dry-run",
            "--out",
            str(out),
            "--trigger",
            trigger,
            "--integration-user",
            INTEGRATION_USER,
            "--custom-field",
            "Badge__c",
        ]
    )
    assert result.exit_code == 0, result.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == (3 if trigger == "flow" else 2)
    for path in files:
        assert_schema_valid(path.name, path.read_bytes())


def test_every_rendered_file_is_schema_valid_except_destructive_manifests() -> None:
    packages = [
        render_deploy_package(_spec("workflow")),
        render_deploy_package(_spec("flow", retire=(WORKFLOW_RULE,))),
        render_removal_package([WORKFLOW_RULE, OUTBOUND_MESSAGE, FLOW], "62.0"),
    ]
    for files in packages:
        for name, content in files.items():
            if name.startswith("destructiveChanges"):
                continue  # Salesforce takes it without <version>, which the schema requires
            assert_schema_valid(name, content)


def test_schema_check_catches_element_order() -> None:
    content = render_deploy_package(_spec("workflow"))["workflows/User.workflow"]
    swapped = content.replace(b"<protected>false</protected>", b"").replace(
        b"<includeSessionId>", b"<protected>false</protected><includeSessionId>"
    )
    with pytest.raises(AssertionError, match="protected"):
        assert_schema_valid("User.workflow", swapped)


def _tree(content: bytes) -> etree._Element:
    return etree.fromstring(content)


def test_workflow_package_names_child_types_only() -> None:
    files = render_deploy_package(_spec("workflow"))
    assert sorted(files) == ["package.xml", "workflows/User.workflow"]
    manifest = _tree(files["package.xml"])
    types = {
        t.findtext(f"{{{MD}}}name"): [m.text for m in t.findall(f"{{{MD}}}members")]
        for t in manifest.findall(f"{{{MD}}}types")
    }
    assert types == {
        "WorkflowOutboundMessage": ["User.Agent_Auto_Provision_Outbound_Message"],
        "WorkflowRule": ["User.Agent_Auto_Provision_User_Sync"],
    }
    workflow = _tree(files["workflows/User.workflow"])
    assert [etree.QName(c).localname for c in workflow] == ["outboundMessages", "rules"]
    rule = workflow.find(f"{{{MD}}}rules")
    assert rule is not None
    assert rule.findtext(f"{{{MD}}}active") == "true"
    assert rule.findtext(f"{{{MD}}}triggerType") == "onAllChanges"
    assert rule.findtext(f"{{{MD}}}formula") == "true"
    assert rule.findtext(f"{{{MD}}}actions/{{{MD}}}type") == "OutboundMessage"


def test_outbound_message_content() -> None:
    files = render_deploy_package(_spec("workflow", custom_fields=("Zeta__c", "Badge__c")))
    om = _tree(files["workflows/User.workflow"]).find(f"{{{MD}}}outboundMessages")
    assert om is not None
    assert om.findtext(f"{{{MD}}}endpointUrl") == URL  # escaped on the wire, same value
    assert b"token=a&amp;b=&lt;c&gt;" in files["workflows/User.workflow"]
    assert om.findtext(f"{{{MD}}}includeSessionId") == "false"
    assert om.findtext(f"{{{MD}}}integrationUser") == INTEGRATION_USER
    fields = [f.text for f in om.findall(f"{{{MD}}}fields")]
    assert fields[:3] == ["Id", "SystemModstamp", "LastModifiedDate"]
    assert {"FirstName", "LastName", "IsActive", "CallCenterId"} <= set(fields)
    assert fields == [*OUTBOUND_MESSAGE_FIELDS, "Badge__c", "Zeta__c"]


def test_flow_is_record_triggered_after_save_and_active() -> None:
    files = render_deploy_package(_spec("flow"))
    manifest = files["package.xml"].decode()
    assert "<name>Flow</name>" in manifest and "<name>WorkflowRule</name>" not in manifest
    flow = _tree(files["flows/Agent_Auto_Provision_User_Sync_Flow.flow"])
    start = flow.find(f"{{{MD}}}start")
    assert start is not None
    assert start.findtext(f"{{{MD}}}object") == "User"
    assert start.findtext(f"{{{MD}}}triggerType") == "RecordAfterSave"
    assert start.findtext(f"{{{MD}}}recordTriggerType") == "CreateAndUpdate"
    assert flow.findtext(f"{{{MD}}}status") == "Active"
    assert flow.findtext(f"{{{MD}}}processType") == "AutoLaunchedFlow"
    assert flow.findtext(f"{{{MD}}}actionCalls/{{{MD}}}actionType") == "outboundMessage"
    assert flow.findtext(f"{{{MD}}}actionCalls/{{{MD}}}actionName") == (
        "User.Agent_Auto_Provision_Outbound_Message"
    )
    workflow = _tree(files["workflows/User.workflow"])
    assert [etree.QName(c).localname for c in workflow] == ["outboundMessages"]


def test_no_python_booleans_anywhere() -> None:
    for files in (render_deploy_package(_spec("workflow")), render_deploy_package(_spec("flow"))):
        for content in files.values():
            assert b">True<" not in content and b">False<" not in content
            assert b"None" not in content


def test_retiring_the_rule_goes_in_destructive_changes_post() -> None:
    files = render_deploy_package(_spec("flow", retire=(WORKFLOW_RULE,)))
    post = files["destructiveChangesPost.xml"].decode()
    assert "<members>User.Agent_Auto_Provision_User_Sync</members>" in post
    assert "<name>WorkflowRule</name>" in post and "<version>" not in post


def test_removal_package_lists_child_types_never_workflow() -> None:
    files = render_removal_package([WORKFLOW_RULE, OUTBOUND_MESSAGE], "62.0")
    assert b"<types>" not in files["package.xml"]
    destructive = files["destructiveChanges.xml"].decode()
    assert "<name>Workflow</name>" not in destructive
    assert "<name>WorkflowRule</name>" in destructive
    with pytest.raises(UsageError):
        render_removal_package(["Workflow:User"], "62.0")


def test_zip_is_deterministic_with_package_xml_at_root() -> None:
    files = render_deploy_package(_spec("flow"))
    first = zip_package(files)
    assert first == zip_package(dict(reversed(list(files.items()))))
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert "package.xml" in archive.namelist()
        assert archive.read("package.xml") == files["package.xml"]


def test_bad_inputs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="Badge"):
        outbound_message_fields(["Badge"])
    with pytest.raises(UsageError, match="53.0"):
        render_deploy_package(PackageSpec(Trigger.FLOW, "52.0", URL, INTEGRATION_USER))
    with pytest.raises(UsageError, match="API version"):
        render_deploy_package(PackageSpec(Trigger.WORKFLOW, "v62", URL, INTEGRATION_USER))
