"""The e-mail fast path agrees with email-validator (the username rule of CONTRACT
section 2)."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from sf_metadata._email import _FAST, MAX_EMAIL_LENGTH, is_email_address


def _library_says(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.from_regex(_FAST, fullmatch=True))
def test_the_fast_path_accepts_only_what_the_library_accepts(value: str) -> None:
    assert is_email_address(value) == _library_says(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='aZ0._+-@.äß"xn-', max_size=40))
def test_any_string_gets_the_library_answer(value: str) -> None:
    assert is_email_address(value) == _library_says(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane@acme.com", True),
        ("jane.doe+agents@acme.co.uk", True),
        ("jane@acme.com.uat", True),  # sandbox username suffix
        ("jane@acme.com.invalid", False),  # special-use domain
        ("jane@localhost", False),
        ("jane@acme.test", False),
        ("jane@acme", False),
        ("jane..doe@acme.com", False),
        (".jane@acme.com", False),
        ("jürgen@acme.de", True),  # Unicode local part: the library decides
        ("jane@ACME.com", True),  # upper case domain: the library decides
        ("not an e-mail", False),
        ("0@00--0.aa", False),  # "00--" label: reserved for Punycode (found by hypothesis)
        ("jane@acm--e.com", True),  # dashes further into a label are fine
        ("a" * 65 + "@acme.com", True),  # the library is lenient on the local length
    ],
)
def test_examples(value: str, expected: bool) -> None:
    assert is_email_address(value) is expected
    assert _library_says(value) is expected


def test_over_the_length_limit_is_never_an_address() -> None:
    value = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"
    assert len(value) > MAX_EMAIL_LENGTH
    assert is_email_address(value) is False
