"""Dashboard session lifetimes at their edges (receiver.settings, receiver.dashboard.auth)
and the pruning of what sign-in leaves in the store (receiver.maintenance)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import select

from receiver.cli import main
from receiver.dashboard.tables import OperatorSession, SignInFailure
from receiver.dashboard.throttle import LONGEST_WINDOW
from receiver.db import transaction
from receiver.maintenance import run_maintenance
from receiver.settings import Settings
from tests.receiver.dashboard._harness import Dash, MakeDash


@pytest.mark.parametrize("minutes", ["0.5", "0", "-3", "nan", "inf"])
def test_an_idle_lifetime_under_a_minute_is_a_clear_setting_error(minutes: str) -> None:
    with pytest.raises(ValidationError, match="idle lifetime is in minutes and must be at least 1"):
        Settings(dashboard_idle_minutes=minutes)  # type: ignore[arg-type]


@pytest.mark.parametrize("hours", ["0", "-1", "inf"])
def test_a_session_lifetime_must_be_positive_and_finite(hours: str) -> None:
    with pytest.raises(ValidationError, match="session lifetime is in hours"):
        Settings(dashboard_session_hours=hours)  # type: ignore[arg-type]


def test_the_cli_refuses_a_sub_minute_idle_lifetime_with_exit_2(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_PROVISION_DASHBOARD_IDLE_MINUTES", "0.5")
    out = CliRunner().invoke(main, ["org", "list", "--database-url", database_url])
    assert out.exit_code == 2
    assert "dashboard_idle_minutes" in out.output
    assert "must be at least 1" in out.output


def test_a_one_minute_idle_lifetime_keeps_a_session_in_use_alive(make_dash: MakeDash) -> None:
    d = make_dash(dashboard_idle_minutes=1)
    d.sign_in()
    for _ in range(6):  # a page every 40 seconds for 4 minutes
        d.clock.advance(seconds=40)
        assert d.client.get("/", follow_redirects=False).status_code == 200
    d.clock.advance(seconds=61)
    assert d.client.get("/", follow_redirects=False).status_code == 303


def _count(d: Dash, model: type) -> int:
    with transaction(d.engine, read_only=True) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _maintain(d: Dash) -> tuple[int, int]:
    result = run_maintenance(
        d.engine,
        now=d.clock(),
        processed_retention=timedelta(days=7),
        log_retention=timedelta(days=90),
        session_idle=timedelta(minutes=60),
        session_absolute=timedelta(hours=12),
    )
    return result.sign_in_failures, result.dashboard_sessions


def test_maintenance_prunes_old_failed_sign_ins_and_dead_sessions(dash: Dash) -> None:
    dash.sign_in(password="wrong password!!")  # 3 failure rows
    dash.sign_in()  # session 1 (its pair row forgiven), then signed out
    dash.post_form("/logout", {}, page="/")
    dash.sign_in()  # session 2: left idle
    assert _count(dash, SignInFailure) == 2 and _count(dash, OperatorSession) == 2
    assert _maintain(dash) == (0, 1)  # the signed-out one; the failures still count
    dash.clock.advance(minutes=61)
    assert _maintain(dash) == (2, 1)  # failures older than the longest window; idle
    assert LONGEST_WINDOW <= timedelta(minutes=61)
    assert _count(dash, SignInFailure) == 0 and _count(dash, OperatorSession) == 0
    dash.sign_in()  # a live session is kept
    assert _maintain(dash) == (0, 0)
    assert dash.client.get("/").status_code == 200


def test_the_request_path_does_not_prune_failures(dash: Dash) -> None:
    dash.sign_in(password="wrong password!!")
    dash.clock.advance(hours=2)
    dash.sign_in(password="wrong password!!")
    assert _count(dash, SignInFailure) == 6  # the old three wait for maintenance
