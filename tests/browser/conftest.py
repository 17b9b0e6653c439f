"""A live ``agent-provision serve`` on a free loopback port and a headless Chromium
(Debian's ``/usr/bin/chromium`` driven by Playwright; ``.ci/run`` installs it).

- ``live``: the server (SQLite store in ``tmp_path``, a copy of the migrated template
  ``tests/sqlite_template.py``), one organization ``acme`` (feature
  disabled) and one operator ``ops``; ``live.url``, ``live.webhook``, ``live.post(xml)``.
- ``page``: a Playwright page at a laptop size (1366x768), in a new context of a Chromium
  shared by the browser tests that run in a row (``browser``); ``shot(page, name)`` saves a
  full-page screenshot in ``$AGENT_PROVISION_SCREENSHOT_DIR`` (default: the test's tmp dir).

Without Chromium the tests are skipped, except with ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from receiver.dashboard.operators import use_hasher
from tests.in_process_cli import run_cli
from tests.serve_process import free_port, serve_process
from tests.sqlite_template import copy_migrated_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser test password"
ORG_ID = "00D000000000001EAA"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test drives real Chromium against a real ``serve``: ``slow``, so
    ``scripts/test -m "not slow"`` leaves them out while you work (CI runs them)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.slow)


@dataclass
class Live:
    """The running server: ``url`` (http://127.0.0.1:PORT), ``webhook`` (token included)."""

    url: str
    webhook: str
    env: dict[str, str]

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(
            self.webhook,
            content=body,
            headers={"content-type": "text/xml; charset=UTF-8", "soapaction": '""'},
            timeout=30,
        )

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return run_cli(self.env, *args, stdin=stdin)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PROVISION_")}
    env["AGENT_PROVISION_DATABASE_URL"] = f"sqlite:///{copy_migrated_store(tmp_path / 'store.db')}"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    run_cli(
        env,
        "org",
        "add",
        "acme",
        "--salesforce-org-id",
        ORG_ID,
        "--base-url",
        f"http://127.0.0.1:{port}",
    )
    webhook = run_cli(env, "org", "url", "acme")
    run_cli(env, "operator", "add", "ops", "--password-stdin", stdin=PASSWORD + "\n")
    log_path = tmp_path / "serve.log"
    with serve_process(env, port, cwd=tmp_path, log_path=log_path):
        yield Live(f"http://127.0.0.1:{port}", webhook, env)
    text = log_path.read_text()
    assert webhook.split("token=")[1] not in text  # the token never reaches the log


@pytest.fixture(autouse=True)
def _cheap_password_hashes() -> None:
    """Operators added here get argon2's CHEAPEST profile (as in the dashboard tests): the
    server verifies a hash with the parameters in its PHC string, so a sign-in costs the
    live server no 0.2 s of CPU."""
    use_hasher(PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium (and one Playwright driver) for the browser tests that run one after
    another in this process: starting both costs about 1 s of CPU. Package-scoped, not
    session-scoped: while Playwright's sync API runs, it marks its event loop as running in
    this thread, which breaks tests that call ``asyncio.run``; pytest stops it as soon as
    the next test of this process is not a browser test. Each test gets its own context
    (``page``): no cookies or storage carry over."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing: .ci/run installs the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a new browser context (1366x768, 15 s default timeout), closed after the
    test."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shot(tmp_path: Path) -> Any:
    folder = Path(os.environ.get("AGENT_PROVISION_SCREENSHOT_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)

    def save(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
