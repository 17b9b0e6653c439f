"""Pure parts of preflight: API version choice and custom User fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployer.client import OrgApi
from deployer.kinds import Trigger
from deployer.preflight import (
    _check_call_center,
    choose_api_version,
    custom_user_fields,
    soql_quote,
)
from sf_metadata.errors import AuthenticationError, SalesforceError, UsageError


def test_pinned_version_capped_at_org_max() -> None:
    assert choose_api_version(None, "63.0", Trigger.WORKFLOW) == ("62.0", [])
    assert choose_api_version(None, "58.0", Trigger.FLOW) == ("58.0", [])
    version, problems = choose_api_version(None, "52.0", Trigger.FLOW)
    assert version == "52.0" and "53.0" in problems[0]


def test_requested_version_must_exist_in_org() -> None:
    assert choose_api_version("60.0", "63.0", Trigger.FLOW) == ("60.0", [])
    _, problems = choose_api_version("66.0", "63.0", Trigger.WORKFLOW)
    assert "maximum is 63.0" in problems[0]
    with pytest.raises(UsageError):
        choose_api_version("sixty", "63.0", Trigger.WORKFLOW)


def test_custom_fields_leave_out_long_text_and_encrypted() -> None:
    describe = {
        "fields": [
            {"name": "Email", "custom": False, "type": "email"},
            {"name": "Z__c", "custom": True, "type": "string", "length": 10},
            {"name": "A__c", "custom": True, "type": "textarea", "length": 255},
            {"name": "Long__c", "custom": True, "type": "textarea", "length": 256},
            {"name": "Enc__c", "custom": True, "type": "string", "encrypted": True},
            {"name": "Enc2__c", "custom": True, "type": "encryptedstring"},
        ]
    }
    assert custom_user_fields(describe) == ("A__c", "Z__c")


def test_soql_quote_escapes() -> None:
    assert soql_quote("o'brien\\x@example.com") == "'o\\'brien\\\\x@example.com'"


def test_dry_run_version_has_no_org_maximum() -> None:
    assert choose_api_version("64.0", None, Trigger.FLOW) == ("64.0", [])
    assert choose_api_version(None, None, Trigger.WORKFLOW) == ("62.0", [])
    _, problems = choose_api_version("52.0", None, Trigger.FLOW)
    assert "53.0" in problems[0]


class _Failing:
    """An :class:`OrgApi` whose every call raises ``error``."""

    api_version = "62.0"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def use_version(self, api_version: str) -> None:
        raise self.error

    def query(self, soql: str) -> list[dict[str, Any]]:
        raise self.error

    def tooling_query(self, soql: str) -> list[dict[str, Any]]:
        raise self.error

    def tooling_patch(self, path: str, data: dict[str, Any]) -> None:
        raise self.error

    def tooling_delete(self, path: str) -> bool:
        raise self.error

    def describe(self, sobject: str) -> dict[str, Any]:
        raise self.error

    def userinfo(self) -> dict[str, Any]:
        raise self.error

    def max_api_version(self) -> str:
        raise self.error

    def metadata_call(self, action: str, render: Callable[[str], bytes]) -> bytes:
        raise self.error


def _failing(error: Exception) -> OrgApi:
    return _Failing(error)


def test_call_center_check_lets_an_expired_session_through() -> None:
    with pytest.raises(AuthenticationError):
        _check_call_center(_failing(AuthenticationError("expired")))
    [problem] = _check_call_center(_failing(SalesforceError("HTTP 403")))
    assert "PermissionsViewSetup" in problem
