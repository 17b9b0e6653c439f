"""The deploy and removal packages: what goes in the Metadata API zip.

Shapes (reference ``metadata-deploy.md`` section 1, ``metadata-examples/``):

- workflow trigger: ``package.xml`` naming the child types only (``WorkflowOutboundMessage``
  ``User.<om>``, ``WorkflowRule`` ``User.<rule>``; never the whole ``Workflow`` type, so other
  User rules are untouched) and ``workflows/User.workflow`` holding only those two children;
- flow trigger: ``Flow`` ``<flow>`` + ``WorkflowOutboundMessage`` ``User.<om>``, the flow
  record-triggered on User (after save, create and update, active);
- removal: ``package.xml`` with only ``<version>`` and ``destructiveChanges.xml`` naming
  the child types, see
  https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_deploy_deleting_files.htm

Components are named ``"Type:FullName"`` strings everywhere (the store keeps them so).
No I/O except :func:`write_package`.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deployer._render import render_template
from deployer.kinds import Trigger
from sf_metadata.errors import Problem, Setting, UsageError
from sf_metadata.metadata_names import (
    FLOW_NAME,
    OUTBOUND_MESSAGE_FIELDS,
    OUTBOUND_MESSAGE_NAME,
    SOBJECT_TYPE,
    WORKFLOW_RULE_NAME,
)

__all__ = [
    "FLOW",
    "MIN_FLOW_API_VERSION",
    "OUTBOUND_MESSAGE",
    "PINNED_API_VERSION",
    "WORKFLOW_RULE",
    "PackageSpec",
    "Trigger",
    "component_name",
    "deploy_components",
    "flow_version_problem",
    "outbound_message_fields",
    "parse_component",
    "render_deploy_package",
    "render_removal_package",
    "validate_api_version",
    "write_package",
    "zip_package",
]


#: The API version we deploy with unless told otherwise (capped at the org's maximum).
#: Outbound Message actions in flows need 53.0+ (reference ``metadata-deploy-bugs.md`` #6).
PINNED_API_VERSION = "62.0"
MIN_FLOW_API_VERSION = 53.0

#: Components, as ``"Type:FullName"``.
OUTBOUND_MESSAGE = f"WorkflowOutboundMessage:{SOBJECT_TYPE}.{OUTBOUND_MESSAGE_NAME}"
WORKFLOW_RULE = f"WorkflowRule:{SOBJECT_TYPE}.{WORKFLOW_RULE_NAME}"
FLOW = f"Flow:{FLOW_NAME}"

_OM_LABEL = "Agent Auto Provision Outbound Message"
_OM_DESCRIPTION = "Sends User changes to the agent-auto-provision receiver"
_RULE_DESCRIPTION = "Agent auto provision: fires on create and on every edit, deactivation included"
_FLOW_LABEL = "Agent Auto Provision User Sync"
_FLOW_DESCRIPTION = "Agent auto provision: sends the User Outbound Message after every save"
_FLOW_ACTION = "Send_Agent_Auto_Provision_Outbound_Message"
_FLOW_ACTION_LABEL = "Send Agent Auto Provision Outbound Message"

_CUSTOM_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")
_API_VERSION = re.compile(r"^[1-9][0-9]*\.0$")
_SUPPORTED_TYPES = ("Flow", "WorkflowOutboundMessage", "WorkflowRule")


def validate_api_version(version: str) -> str:
    """Return ``version`` (``"NN.0"``) or raise :class:`UsageError` naming the format."""
    if not _API_VERSION.match(version):
        raise UsageError(
            f"{version!r} is not an API version such as 62.0", setting=Setting.API_VERSION
        )
    return version


def flow_version_problem(trigger: Trigger, version: str) -> Problem | None:
    """The problem with deploying ``trigger`` at API ``version`` (``"NN.0"``), or ``None``:
    Outbound Message actions in flows need API 53.0 or later (reference
    ``metadata-deploy-bugs.md`` #6)."""
    if trigger == "flow" and float(version) < MIN_FLOW_API_VERSION:
        return Problem(
            "a record-triggered flow needs API version 53.0 or later (Outbound Message "
            f"actions in flows), but {version} would be used",
            Setting.API_VERSION,
        )
    return None


def component_name(type_name: str, full_name: str) -> str:
    """``"Type:FullName"``, the form the store keeps."""
    return f"{type_name}:{full_name}"


def parse_component(component: str) -> tuple[str, str]:
    """Split ``"Type:FullName"``; raise :class:`UsageError` for anything else."""
    type_name, sep, full_name = component.partition(":")
    if not sep or type_name not in _SUPPORTED_TYPES or not full_name:
        raise UsageError(f"not a component this deployer manages: {component!r}")
    return type_name, full_name


def deploy_components(trigger: Trigger) -> tuple[str, ...]:
    """The components one deploy of ``trigger`` creates or updates."""
    if trigger == "workflow":
        return (OUTBOUND_MESSAGE, WORKFLOW_RULE)
    return (OUTBOUND_MESSAGE, FLOW)


def outbound_message_fields(custom_fields: Iterable[str] = ()) -> tuple[str, ...]:
    """The Outbound Message ``fields``: ``Id``, ``SystemModstamp``, ``LastModifiedDate``,
    every mapped User field (``metadata_names.OUTBOUND_MESSAGE_FIELDS``), then the custom
    fields sorted, without duplicates.

    Raises :class:`UsageError` for a custom field that is not an API name ending in ``__c``.
    """
    extra: set[str] = set()
    for name in custom_fields:
        if not _CUSTOM_FIELD.match(name):
            raise UsageError(
                f"{name!r} is not a custom User field API name (such as Badge__c)",
                setting=Setting.CUSTOM_FIELD,
            )
        extra.add(name)
    return (*OUTBOUND_MESSAGE_FIELDS, *sorted(extra - set(OUTBOUND_MESSAGE_FIELDS)))


@dataclass(frozen=True)
class PackageSpec:
    """What one deploy package holds.

    ``api_version`` ``"NN.0"``; ``endpoint_url`` the organization's webhook URL with its
    token; ``integration_user`` a Username; ``retire`` components of the other trigger to
    delete after the deploy in the same run (``destructiveChangesPost.xml``).
    """

    trigger: Trigger
    api_version: str
    endpoint_url: str
    integration_user: str
    custom_fields: tuple[str, ...] = ()
    retire: tuple[str, ...] = ()


def _manifest(components: Iterable[str], version: str | None) -> bytes:
    by_type: dict[str, set[str]] = {}
    for component in components:
        type_name, full_name = parse_component(component)
        by_type.setdefault(type_name, set()).add(full_name)
    types = [(name, sorted(members)) for name, members in sorted(by_type.items())]
    return render_template("package.xml.j2", types=types, version=version)


def render_deploy_package(spec: PackageSpec) -> dict[str, bytes]:
    """Render the deploy package: ``{zip path: file bytes}``.

    Raises :class:`UsageError` for a bad API version, a flow below API 53.0 or a bad
    custom field name.
    """
    version = validate_api_version(spec.api_version)
    problem = flow_version_problem(spec.trigger, version)
    if problem is not None:
        raise UsageError(problem, setting=problem.setting)
    om = {
        "name": OUTBOUND_MESSAGE_NAME,
        "label": _OM_LABEL,
        "description": _OM_DESCRIPTION,
        "endpoint_url": spec.endpoint_url,
        "fields": outbound_message_fields(spec.custom_fields),
        "integration_user": spec.integration_user,
    }
    rule = None
    if spec.trigger == "workflow":
        rule = {"name": WORKFLOW_RULE_NAME, "active": True, "description": _RULE_DESCRIPTION}
    files: dict[str, bytes] = {
        "package.xml": _manifest(deploy_components(spec.trigger), version),
        f"workflows/{SOBJECT_TYPE}.workflow": render_template(
            "workflow.xml.j2", om=om, rule=rule, api_version=version
        ),
    }
    if spec.trigger == "flow":
        files[f"flows/{FLOW_NAME}.flow"] = render_template(
            "flow.xml.j2",
            action_name=_FLOW_ACTION,
            action_label=_FLOW_ACTION_LABEL,
            sobject=SOBJECT_TYPE,
            om_name=OUTBOUND_MESSAGE_NAME,
            api_version=version,
            description=_FLOW_DESCRIPTION,
            label=_FLOW_LABEL,
            status="Active",
        )
    if spec.retire:
        files["destructiveChangesPost.xml"] = _manifest(spec.retire, None)
    return files


def render_removal_package(components: Iterable[str], api_version: str) -> dict[str, bytes]:
    """Render a removal package: ``package.xml`` with only ``<version>`` and
    ``destructiveChanges.xml`` naming ``components`` by child type (listing ``Workflow``
    fails: "Cannot delete a workflow object", reference ``metadata-deploy-bugs.md`` #4).
    """
    version = validate_api_version(api_version)
    return {
        "package.xml": _manifest((), version),
        "destructiveChanges.xml": _manifest(components, None),
    }


def zip_package(files: Mapping[str, bytes]) -> bytes:
    """A deterministic in-memory zip (sorted names, fixed timestamps), ``package.xml`` at
    the root (singlePackage=true)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


#: Files a package of ours may hold, relative to its root: removed from ``--out`` before a
#: dry run writes there, so a package for the other trigger leaves nothing stale behind.
_OWN_FILES = (
    "package.xml",
    "destructiveChanges.xml",
    "destructiveChangesPre.xml",
    "destructiveChangesPost.xml",
    f"flows/{FLOW_NAME}.flow",
    f"workflows/{SOBJECT_TYPE}.workflow",
)


def write_package(files: Mapping[str, bytes], out_dir: Path) -> list[Path]:
    """Write the package unzipped under ``out_dir`` (created if needed); return the paths.

    Files an earlier package of ours left there (``package.xml``, ``destructiveChanges*.xml``,
    our flow and ``workflows/User.workflow``) are removed first, and ``flows/`` /
    ``workflows/`` too when that leaves them empty; nothing else in ``out_dir`` is touched.
    Each file is created with mode 0600 (owner only): the Outbound Message's endpoint URL
    holds the organization's webhook token.
    """
    for name in _OWN_FILES:
        out_dir.joinpath(*name.split("/")).unlink(missing_ok=True)
    for folder in ("flows", "workflows"):
        path = out_dir / folder
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    written: list[Path] = []
    for name in sorted(files):
        path = out_dir.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
            os.write(fd, files[name])
        finally:
            os.close(fd)
        written.append(path)
    return written
