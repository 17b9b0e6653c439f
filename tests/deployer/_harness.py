"""Running the CLI against a cassette: a temporary store, one registered organization,
session credentials for the scrubbed host, and an instant clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from click.testing import CliRunner, Result

from deployer.client import retrying_session
from deployer.credentials import CREDENTIAL_OPTIONS
from deployer.deploy import Timing
from receiver.cli import main
from receiver.cli._options import CliState
from tests.deployer._vcr import HOST, live_args, make_vcr
from tests.sqlite_template import copy_migrated_store

SESSION_ARGS = ["--instance-url", f"https://{HOST}", "--access-token", "test-access-token"]
CLIENT_CREDENTIAL_ARGS = [
    "--consumer-key",
    "test-consumer-key",
    "--consumer-secret",
    "test-consumer-secret",
    "--domain",
    "orgname.my",
]
ORG = "acme"
REGISTERED_ORG_ID = "00D000000000001"
INTEGRATION_USER = "integration@acme.example.com"


def _no_pause() -> requests.Session:
    """The client's retrying session without the backoff pauses (the retries still run)."""
    return retrying_session(requests.Session(), backoff_factor=0)


@dataclass
class FakeClock:
    """Monotonic clock advanced only by :meth:`sleep`."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class Harness:
    """One store and one organization; ``run`` invokes ``agent-provision``."""

    tmp_path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    timeout: float = 600.0

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.tmp_path / 'store.db'}"

    def env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {name: None for name in CREDENTIAL_OPTIONS.values()}
        env["AGENT_PROVISION_DATABASE_URL"] = self.db_url
        env["AGENT_PROVISION_SECRET_KEY"] = None
        return env

    def invoke(self, args: list[str]) -> Result:
        timing = Timing(timeout=self.timeout, sleep=self.clock.sleep, clock=self.clock.clock)
        return CliRunner().invoke(
            main,
            live_args(args, REGISTERED_ORG_ID),
            obj=CliState(extra={"deploy_timing": timing, "salesforce_http": _no_pause()}),
            env=self.env(),
            catch_exceptions=False,
        )

    def add_org(
        self, *, base_url: str = "https://hooks.example.com", org_id: str = REGISTERED_ORG_ID
    ) -> str:
        """``org add acme --json`` (on a copy of the migrated template store when there is
        no store yet: these tests are not about making one); the webhook URL."""
        store = self.tmp_path / "store.db"
        if not store.exists():
            copy_migrated_store(store)
        result = self.invoke(
            ["org", "add", ORG, "--salesforce-org-id", org_id, "--base-url", base_url, "--json"]
        )
        assert result.exit_code == 0, result.output
        return str(json.loads(result.stdout)["webhookUrl"])

    def run(self, cassette: str, args: list[str], *, all_played: bool = True) -> Result:
        """Invoke with the cassette; assert every recorded exchange was used, in order."""
        with make_vcr().use_cassette(f"{cassette}.yaml") as cass:
            result = self.invoke(args)
        if all_played:
            assert cass.all_played, (
                f"{cassette}: {cass.play_count} of {len(cass)} interactions played\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def deployments(self) -> list[dict[str, Any]]:
        from receiver.db import make_engine
        from receiver.deployments import latest_deployments

        engine = make_engine(self.db_url)
        try:
            from sqlmodel import Session

            with Session(engine) as session:
                return [d.model_dump() for d in reversed(latest_deployments(session, ORG))]
        finally:
            engine.dispose()
