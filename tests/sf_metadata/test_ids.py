from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sf_metadata.errors import InvalidSalesforceId
from sf_metadata.ids import (
    ORGANIZATION,
    USER,
    canonical_id,
    checksum_suffix,
    is_salesforce_id,
    same_org_id,
    to_15,
    to_18,
    typed_id,
)

# Verified vectors: reference outbound-wire-format.md section 4.
VECTORS = [
    ("70130000001tcyI", "AAQ"),
    ("a0BA0000000L2ZC", "MA0"),
    ("00558000001N0Ke", "AAK"),
    ("AaaAABbbBBCccCC", "ZZZ"),
    ("AAaAAbbBBBCcCCC", "123"),
    ("005xx000001Sv6e", "AAC"),
    ("005xx000001Sv6E", "AAS"),
    ("a0D30000001n7Pi", "EAI"),
]


@pytest.mark.parametrize(("id15", "suffix"), VECTORS)
def test_checksum_suffix_matches_verified_vectors(id15: str, suffix: str) -> None:
    assert checksum_suffix(id15) == suffix
    assert to_18(id15) == id15 + suffix


def test_public_gist_vector_is_wrong() -> None:
    assert to_18("a0D30000001n7Pi") != "a0D30000001n7PiEAC"


def test_to_18_recomputes_a_wrong_suffix() -> None:
    assert to_18("005xx000001Sv6eZZZ") == "005xx000001Sv6eAAC"
    assert canonical_id("00Dxx0000001gPFEAY") == "00Dxx0000001gPF" + checksum_suffix(
        "00Dxx0000001gPF"
    )


def test_an_18_character_id_typed_in_one_case_is_the_id_its_suffix_says() -> None:
    """Salesforce reads 18-character ids case-insensitively (the suffix restores the case,
    ``outbound-wire-format.md`` section 4): an id a person typed or pasted lower- or
    upper-cased (attack finding: it named another user) is that user; one whose suffix
    does not fit keeps its 15 characters (the suffix is recomputed, as for every id). Ids
    Salesforce sends keep canonical_id's rule: the suffix is never applied."""
    assert typed_id(" 005be0000000001iaa ") == "005Be0000000001IAA"
    assert typed_id("005BE0000000001IAA") == "005Be0000000001IAA"
    assert typed_id("005DN00000XSSD1IAJ", "005") == "005Dn00000XssD1IAJ"
    assert canonical_id("005BE0000000001IAA") == "005BE0000000001YAA"  # as sent: as it is
    # a suffix setting a bit on a digit does not fit: recomputed
    assert typed_id("005BE0000000001ZZZ") == "005BE0000000001" + checksum_suffix("005BE0000000001")
    # mixed case is taken as typed (a wrong suffix is corrected, never applied)
    assert typed_id("005Be0000000001XYZ") == "005Be0000000001IAA"
    assert typed_id("005be0000000001") == canonical_id("005be0000000001")  # 15: as is
    with pytest.raises(InvalidSalesforceId):
        typed_id("005be000000001iaa")  # 17 characters: not an id


@given(st.text(alphabet=string.ascii_letters + string.digits, min_size=15, max_size=15))
def test_any_18_character_id_typed_lower_or_upper_cased_is_itself(id15: str) -> None:
    id18 = to_18(id15)
    assert typed_id(id18.lower()) == id18
    assert typed_id(id18.upper()) == id18
    assert typed_id(id18) == id18


def test_case_variants_are_distinct_users() -> None:
    assert to_18("005xx000001Sv6e") != to_18("005xx000001Sv6E")
    assert to_18("005xx000001Sv6e").lower() != to_18("005xx000001Sv6E").lower()


def test_to_15_truncates_keeping_case() -> None:
    assert to_15("005xx000001Sv6EAAS") == "005xx000001Sv6E"
    assert to_15("005xx000001Sv6E") == "005xx000001Sv6E"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "005",
        "005xx000001Sv6",
        "005xx000001Sv6eAA",
        "005xx000001Sv6eAAAA",
        "005xx000001Sv6-",
        "005xx000001Sv6é",
        "005xx000001Sv6e\n",
        None,
        5,
    ],
)
def test_invalid_ids_are_rejected(value: object) -> None:
    assert not is_salesforce_id(value)
    with pytest.raises(InvalidSalesforceId, match="not a Salesforce id"):
        canonical_id(value)


def test_prefix_is_checked_case_sensitively() -> None:
    assert is_salesforce_id("00Dxx0000001gPF", ORGANIZATION)
    assert not is_salesforce_id("00dxx0000001gPF", ORGANIZATION)
    with pytest.raises(InvalidSalesforceId, match="Organization id"):
        canonical_id("005xx000001Sv6e", ORGANIZATION)
    assert canonical_id("005xx000001Sv6e", USER) == "005xx000001Sv6eAAC"


def test_to_15_rejects_non_ids() -> None:
    with pytest.raises(InvalidSalesforceId):
        to_15("nope")
    with pytest.raises(InvalidSalesforceId):
        checksum_suffix("005xx000001Sv6eAAC")


def test_same_org_id_compares_first_15_case_sensitively() -> None:
    assert same_org_id("00Dxx0000001gPF", "00Dxx0000001gPFEAY")
    assert same_org_id("00Dxx0000001gPFEAY", "00Dxx0000001gPFXXX")
    assert not same_org_id("00Dxx0000001gPF", "00DXX0000001GPFEAY")
    assert not same_org_id("00Dxx0000001gPF", "00Dxx0000001gPG")
    assert not same_org_id("00Dxx0000001gPF", "not an id")
