"""Pure parts of preflight: API version choice and custom User fields."""

from __future__ import annotations

import pytest

from deployer.preflight import choose_api_version, custom_user_fields, soql_quote
from sf_metadata.errors import UsageError


def test_pinned_version_capped_at_org_max() -> None:
    assert choose_api_version(None, "63.0", "workflow") == ("62.0", [])
    assert choose_api_version(None, "58.0", "flow") == ("58.0", [])
    version, problems = choose_api_version(None, "52.0", "flow")
    assert version == "52.0" and "53.0" in problems[0]


def test_requested_version_must_exist_in_org() -> None:
    assert choose_api_version("60.0", "63.0", "flow") == ("60.0", [])
    _, problems = choose_api_version("66.0", "63.0", "workflow")
    assert "maximum is 63.0" in problems[0]
    with pytest.raises(UsageError):
        choose_api_version("sixty", "63.0", "workflow")


def test_custom_fields_leave_out_long_text_and_encrypted() -> None:
    describe = {"fields": [
        {"name": "Email", "custom": False, "type": "email"},
        {"name": "Z__c", "custom": True, "type": "string", "length": 10},
        {"name": "A__c", "custom": True, "type": "textarea", "length": 255},
        {"name": "Long__c", "custom": True, "type": "textarea", "length": 256},
        {"name": "Enc__c", "custom": True, "type": "string", "encrypted": True},
        {"name": "Enc2__c", "custom": True, "type": "encryptedstring"},
    ]}
    assert custom_user_fields(describe) == ("A__c", "Z__c")


def test_soql_quote_escapes() -> None:
    assert soql_quote("o'brien\\x@example.com") == "'o\\'brien\\\\x@example.com'"
