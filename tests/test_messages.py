"""Messages from the core and the deployer say the problem, not a CLI flag (issue 7
"Structure" item 3): the dashboard shows the same problems. The CLI adds its flag hints
where it maps errors (``receiver/cli/_errors.py``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import simple_salesforce.api
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from deployer.credentials import Credentials, login, resolve_credentials
from receiver.cli._errors import error_lines
from sf_metadata.errors import (
    AuthenticationError,
    CredentialsError,
    ReconcileHeld,
    Setting,
)
from sf_metadata.reconcile import DeletionGuard

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
#: (file, why it may name a flag).
ALLOWED = {
    # the foreground first reconcile is run by ``org enable`` only (the dashboard's runs in
    # the background and links to the Reconcile page)
    "receiver/reconcile/on_enable.py",
}


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_message_of_the_core_or_the_deployer_names_a_cli_flag() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text[:80]!r}"
        for folder in ("deployer", "sf_metadata", "receiver/reconcile")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ALLOWED
        for line, text in _strings(path)
        if FLAG.search(text)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("given", "missing", "flags"),
    [
        ({"username": "u", "consumer_key": "c"}, ("private_key_file",), ["--private-key-file"]),
        ({"consumer_key": "c"}, ("consumer_secret",), ["--consumer-secret"]),
        (
            {"username": "u"},
            ("consumer_key", "private_key_file"),
            ["--consumer-key", "--private-key-file"],
        ),
    ],
)
def test_a_partial_credential_set_names_its_pieces_and_the_cli_their_flags(
    given: dict[str, str | None], missing: tuple[str, ...], flags: list[str]
) -> None:
    with pytest.raises(CredentialsError) as raised:
        resolve_credentials(given, {})
    assert raised.value.missing == missing
    assert not FLAG.search(raised.value.message) and "SF_" not in raised.value.message
    [line] = error_lines(raised.value)
    for flag in flags:
        env = "SF_" + flag[2:].replace("-", "_").upper()
        assert f"{flag} (or {env})" in line


@pytest.mark.parametrize(
    ("options", "setting", "flag"),
    [
        (
            {"instance_url": "http://x.my.salesforce.com", "access_token": "t"},
            Setting.INSTANCE_URL,
            "--instance-url",
        ),
        (
            {"username": "u", "consumer_key": "c", "private_key_file": "/nonexistent/k.pem"},
            Setting.PRIVATE_KEY_FILE,
            "--private-key-file",
        ),
        ({"consumer_key": "c", "consumer_secret": "s"}, Setting.LOGIN_DOMAIN, "--domain"),
        ({}, Setting.CREDENTIALS, "--security-token"),
    ],
)
def test_an_unusable_credential_names_its_input_and_the_cli_its_flag(
    options: dict[str, str | None], setting: Setting, flag: str
) -> None:
    with pytest.raises(CredentialsError) as raised:
        resolve_credentials(options, {})
    assert raised.value.setting is setting
    assert not FLAG.search(raised.value.message)
    assert flag in error_lines(raised.value)[0]


def test_a_refused_login_keeps_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = SalesforceAuthenticationFailed("INVALID_LOGIN", "invalid grant")

    def refuse(**_kwargs: object) -> None:
        raise refused

    # login() imports the class from simple_salesforce.api when it is called
    monkeypatch.setattr(simple_salesforce.api, "Salesforce", refuse)
    creds = Credentials(kind="client-credentials", consumer_key="c", consumer_secret="s")
    with pytest.raises(AuthenticationError) as raised:
        login(creds, api_version="62.0")
    assert raised.value.__cause__ is refused


def test_a_held_plan_says_approve_or_reject_and_the_cli_names_the_commands() -> None:
    reason = DeletionGuard(max_deletions=2).hold_reason(3, 100)
    assert reason is not None and not FLAG.search(reason)
    held = ReconcileHeld(
        f"reconcile plan 7 is held: {reason}; approve its deletions to apply it, or reject it",
        plan_id="7",
        setting=Setting.APPROVAL,
    )
    [line] = error_lines(held)
    assert "--approve-deletions" in line and "reconcile reject" in line
