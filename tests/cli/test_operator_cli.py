"""``agent-provision operator add|list|remove|set-password`` (CONTRACT section 5)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from click.testing import CliRunner
from sqlmodel import select

from receiver.cli import main
from receiver.dashboard.operators import use_hasher
from receiver.dashboard.tables import Operator
from receiver.db import make_engine, transaction

PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def _cheap() -> None:
    use_hasher(PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture
def run(database_url: str) -> Iterator[object]:
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> object:
        return runner.invoke(main, [*args, "--database-url", database_url], input=stdin)

    yield invoke


def test_add_list_remove(run, database_url: str) -> None:
    assert run("org", "add", "acme", "--salesforce-org-id", "00D000000000001EAA").exit_code == 0
    out = run("operator", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert out.exit_code == 0, out.output
    assert "every organization" in out.output and PASSWORD not in out.output
    out = run(
        "operator", "add", "bob", "--organization", "acme", "--password-stdin", stdin=PASSWORD
    )
    assert out.exit_code == 0, out.output
    listed = run("operator", "list", "--json")
    data = json.loads(listed.output)
    assert [(o["username"], o["organizations"]) for o in data] == [
        ("alice", "all"),
        ("bob", ["acme"]),
    ]
    assert PASSWORD not in listed.output and "argon2" not in listed.output
    engine = make_engine(database_url)
    with transaction(engine) as session:
        hashes = session.exec(select(Operator.password_hash)).all()
    engine.dispose()
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert run("operator", "remove", "bob").exit_code == 0
    assert [o["username"] for o in json.loads(run("operator", "list", "--json").output)] == [
        "alice"
    ]


def test_the_password_is_prompted_twice_without_echo(run) -> None:
    out = run("operator", "add", "carol", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert out.exit_code == 0, out.output
    assert PASSWORD not in out.output


@pytest.mark.parametrize(
    ("args", "stdin", "code", "text"),
    [
        (("operator", "add", "dave", "--password-stdin"), "short\n", 2, "at least 12 characters"),
        (("operator", "add", "dave", "--password-stdin"), "", 2, "standard input is empty"),
        (
            ("operator", "add", "dave", "--organization", "nope", "--password-stdin"),
            PASSWORD,
            4,
            "nope",
        ),
        (("operator", "remove", "nobody"), None, 4, "does not exist"),
        (("operator", "set-password", "nobody", "--password-stdin"), PASSWORD, 4, "does not exist"),
        (("operator", "add", "has space", "--password-stdin"), PASSWORD, 2, "without spaces"),
    ],
)
def test_problems_exit_with_one_line_naming_the_fix(
    run, args: tuple[str, ...], stdin: str | None, code: int, text: str
) -> None:
    out = run(*args, stdin=stdin)
    assert out.exit_code == code, out.output
    assert text in out.output
    assert "Traceback" not in out.output


def test_a_username_is_taken_once_casefolded(run) -> None:
    assert run("operator", "add", "Erin", "--password-stdin", stdin=PASSWORD).exit_code == 0
    out = run("operator", "add", "erin", "--password-stdin", stdin=PASSWORD)
    assert out.exit_code == 2 and "already exists" in out.output


def test_set_password_reports_ended_sessions(run) -> None:
    run("operator", "add", "frank", "--password-stdin", stdin=PASSWORD)
    out = run(
        "operator", "set-password", "frank", "--password-stdin", stdin="another good password"
    )
    assert out.exit_code == 0 and "0 session(s) ended" in out.output
