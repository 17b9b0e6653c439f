from __future__ import annotations

from typing import Any

import pytest

from sf_metadata.errors import NotificationError
from sf_metadata.ids import to_18
from sf_metadata.mapping import AgentRecord, agent_username, map_user, parse_boolean
from tests.factories import CALL_CENTER_ID, PROFILE_ID, USER_ROLE_ID, make_user_fields, sf_id

USER_ID = sf_id("005", 900)


def mapped(**overrides: Any) -> AgentRecord:
    return map_user(USER_ID, make_user_fields(**overrides))


def test_full_record_json_has_contract_keys_and_values() -> None:
    fields = make_user_fields(
        Username="jane@acme.com",
        Email="jane.doe@acme.com",
        Name="Jane Doe",
        MobilePhone="+1 555 0101",
        Phone="+1 555 0199",
        Region__c="EMEA",
    )
    data = map_user(USER_ID, fields).to_json()
    assert list(data) == [
        "username",
        "crmId",
        "crmUser",
        "name",
        "pictureUrl",
        "disabled",
        "inboundEnabled",
        "phoneNumbers",
        "crm",
    ]
    assert list(data["crm"]) == [
        "callCenterId",
        "email",
        "language",
        "profileId",
        "userRoleId",
        "userType",
        "customFields",
    ]
    assert data == {
        "username": "jane@acme.com",
        "crmId": USER_ID,
        "crmUser": "jane@acme.com",
        "name": "Jane Doe",
        "pictureUrl": "https://acme.file.force.com/profilephoto/005/T",
        "disabled": False,
        "inboundEnabled": True,
        "phoneNumbers": [
            {"type": "mobile", "number": "+1 555 0101"},
            {"type": "other", "number": "+1 555 0199"},
        ],
        "crm": {
            "callCenterId": CALL_CENTER_ID,
            "email": "jane.doe@acme.com",
            "language": "en_US",
            "profileId": PROFILE_ID,
            "userRoleId": USER_ROLE_ID,
            "userType": "Standard",
            "customFields": {"Region__c": "EMEA"},
        },
    }
    assert AgentRecord.from_json(data) == map_user(USER_ID, fields)


def test_crm_id_and_related_ids_are_canonical_18() -> None:
    record = map_user(
        "005xx000001Sv6e",
        make_user_fields(
            CallCenterId="04vxx0000000001",
            ProfileId="00exx0000000001ZZZ",
            UserRoleId="00Exx0000000001",
        ),
    )
    assert record.crm_id == to_18("005xx000001Sv6e")
    assert record.call_center_id == to_18("04vxx0000000001")
    assert record.profile_id == to_18("00exx0000000001")
    assert record.user_role_id == to_18("00Exx0000000001")


@pytest.mark.parametrize("bad", ["00Dxx0000001gPF", "short", "005xx000001Sv6-"])
def test_crm_id_must_be_a_user_id(bad: str) -> None:
    with pytest.raises(NotificationError, match="Id"):
        map_user(bad, make_user_fields())


def test_invalid_related_id_fails_the_notification() -> None:
    with pytest.raises(NotificationError, match="ProfileId"):
        mapped(ProfileId="not-an-id")


@pytest.mark.parametrize(
    ("username", "email", "expected"),
    [
        ("jane@acme.com", "other@acme.com", "jane@acme.com"),
        ("jane@acme.com.uat", "jane@acme.com", "jane@acme.com.uat"),
        ("jane@acme.com.invalid", "jane@acme.com", "jane@acme.com"),
        ("jane@acme.test", "jane@acme.com", "jane@acme.com"),
        ("not-an-email", "jane@acme.com", "jane@acme.com"),
        (None, "jane@acme.com", "jane@acme.com"),
        ("", "jane@acme.com", "jane@acme.com"),
        ("not-an-email", None, "not-an-email"),
        # a refreshed sandbox: every Email ends in .invalid, the Username is kept
        ("jane@acme.com.invalid", "jane@acme.com.invalid", "jane@acme.com.invalid"),
        ("jane.uat", "jane@acme.com.invalid", "jane.uat"),
        ("not-an-email", "not-one-either", "not-an-email"),
        (None, "not-an-email", None),
        (None, None, None),
    ],
)
def test_username_rule(username: str | None, email: str | None, expected: str | None) -> None:
    fields = make_user_fields(Username=username, Email=email)
    assert agent_username(fields) == expected
    record = map_user(USER_ID, fields)
    assert record.username == expected
    assert record.crm_user == (username or None)
    assert record.email == email


@pytest.mark.parametrize(
    ("is_active", "call_center", "disabled", "inbound"),
    [
        ("true", CALL_CENTER_ID, False, True),
        ("true", None, True, False),
        ("true", "", True, False),
        ("false", CALL_CENTER_ID, True, False),
        ("false", None, True, False),
        ("TRUE", CALL_CENTER_ID, False, True),
        ("1", CALL_CENTER_ID, False, True),
        ("0", CALL_CENTER_ID, True, False),
        (" False ", CALL_CENTER_ID, True, False),
    ],
)
def test_disabled_and_inbound_enabled(
    is_active: str, call_center: str | None, disabled: bool, inbound: bool
) -> None:
    record = mapped(IsActive=is_active, CallCenterId=call_center)
    assert (record.disabled, record.inbound_enabled) == (disabled, inbound)


@pytest.mark.parametrize("value", [None, "", "yes", "t", "False!", "2"])
def test_is_active_missing_or_not_boolean_fails(value: str | None) -> None:
    with pytest.raises(NotificationError, match="IsActive"):
        mapped(IsActive=value)


def test_parse_boolean_never_treats_text_as_truthy() -> None:
    assert parse_boolean("X", "False") is False
    assert parse_boolean("X", "true") is True


@pytest.mark.parametrize(
    ("name", "first", "last", "expected"),
    [
        ("Jane Doe", "J", "D", "Jane Doe"),
        (None, "Jane", "Doe", "Jane Doe"),
        ("", "Jane", "Doe", "Jane Doe"),
        (None, None, "Doe", "Doe"),
        (None, "Jane", None, "Jane"),
        (None, None, None, None),
        (None, " ", None, None),
    ],
)
def test_name_falls_back_to_first_and_last(
    name: str | None, first: str | None, last: str | None, expected: str | None
) -> None:
    assert mapped(Name=name, FirstName=first, LastName=last).name == expected


@pytest.mark.parametrize(
    ("mobile", "phone", "expected"),
    [
        ("1", "2", [("mobile", "1"), ("other", "2")]),
        (None, "2", [("other", "2")]),
        ("1", None, [("mobile", "1")]),
        ("", "", []),
        (None, None, []),
    ],
)
def test_phone_numbers_mobile_then_other_nulls_left_out(
    mobile: str | None, phone: str | None, expected: list[tuple[str, str]]
) -> None:
    record = mapped(MobilePhone=mobile, Phone=phone)
    assert [(p.type, p.number) for p in record.phone_numbers] == expected
    assert record.to_json()["phoneNumbers"] == [{"type": t, "number": n} for t, n in expected]


def test_absent_and_empty_standard_fields_are_null() -> None:
    record = mapped(
        SmallPhotoUrl=None,
        LanguageLocaleKey="",
        UserType=None,
        ProfileId=None,
        UserRoleId="",
        Email=None,
    )
    data = record.to_json()
    assert data["pictureUrl"] is None
    assert data["crm"]["language"] is None
    assert data["crm"]["userType"] is None
    assert data["crm"]["profileId"] is None
    assert data["crm"]["userRoleId"] is None
    assert data["crm"]["email"] is None


def test_custom_fields_are_kept_as_sent() -> None:
    record = mapped(EmployeeNumber__c="00123", Empty__c="", Nil__c=None, Note__c="a & b ü")
    assert record.custom_fields == {
        "EmployeeNumber__c": "00123",
        "Empty__c": "",
        "Note__c": "a & b ü",
    }
    assert mapped().custom_fields == {}
    nil = map_user(USER_ID, {**make_user_fields(), "Gone__c": None})
    assert nil.custom_fields == {"Gone__c": None}


def test_username_over_254_characters_is_not_validated_as_an_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sf_metadata._email as email_module

    calls: list[str] = []

    def spy(value: str, **kwargs: Any) -> Any:
        calls.append(value)
        raise AssertionError("the validator must not see an over-long Username")

    monkeypatch.setattr(email_module, "validate_email", spy)
    email_module._validate.cache_clear()
    fields = make_user_fields(Username="a" * 250 + "@acme.com", Email="jane@acme.com")
    assert agent_username(fields) == "jane@acme.com"
    assert calls == []


def test_username_of_254_characters_is_still_an_address() -> None:
    username = "a" * 64 + "@" + ".".join(["b" * 60, "b" * 60, "b" * 63]) + ".com"
    assert len(username) == 254
    assert agent_username(make_user_fields(Username=username, Email="x@acme.com")) == username


@pytest.mark.parametrize(
    "username",
    [
        "a" * 300 + "@" + "b" * 60 + ".com",  # 365 characters: too long to be an address
        "\u00df" * 200 + "@acme",  # 205 characters, casefolds to 405; no dot in the domain
    ],
)
def test_username_longer_than_the_store_holds_is_a_notification_error(username: str) -> None:
    with pytest.raises(NotificationError, match="320"):
        mapped(Username=username, Email="not an e-mail either")


def test_an_overlong_email_is_no_address_so_the_username_is_kept() -> None:
    email = "a" * 300 + "@" + "b" * 60 + ".com"
    assert mapped(Username="not an e-mail", Email=email).username == "not an e-mail"


def test_username_of_320_characters_is_kept() -> None:
    username = "a" * 320
    assert mapped(Username=username, Email="jane@acme.com.invalid").username == username
